"""Datasets behind one function: `load_dataset(name, split, ...) -> ImageSet`.

Every dataset, embedded or real, returns the same contract: uint8 images (N, C, H, W) on the
CPU, int64 labels, and optional per-image extras (masks, captions, superclasses). Builders
register themselves by name with `@register_dataset`; generated sets are cached as uint8 on
disk so a second call costs a file read.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ssl_core.checks import choose, typed, within
from ssl_core.config import RANGES
from ssl_core.registry import registrar

DATASETS: dict[str, Callable[..., "ImageSet"]] = {}
SPLITS = ("train", "test")


@dataclass
class ImageSet:
    """A labelled image set. Shape: images (N, C, H, W) uint8; labels (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    masks: torch.Tensor | None = None          # (N, H, W) uint8, 0 = background, else class + 1
    captions: list[str] | None = None          # one caption per image
    superclass: torch.Tensor | None = None     # (N,) int64, e.g. the shape family
    meta: dict = field(default_factory=dict)   # anything else a builder wants to state

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.labels)} labels for {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, index: torch.Tensor) -> "ImageSet":
        """The images at `index`, extras included."""
        pick = lambda t: None if t is None else t[index]
        return ImageSet(
            self.images[index], self.labels[index], self.class_names, pick(self.masks),
            None if self.captions is None else [self.captions[i] for i in index.tolist()],
            pick(self.superclass), dict(self.meta),
        )


# @register_dataset(name) adds a builder `fn(split, seed, image_size, size, **kw) -> ImageSet`
register_dataset = registrar(DATASETS, "dataset")


def load_dataset(name: str, split: str = "train", seed: int = 0, image_size: int = 32,
                 size: int = 0, **kwargs) -> ImageSet:
    """Build (or read from the cache) split `split` of dataset `name`; size 0 = its default. Bad arguments raise
    ValueError naming the parameter before anything is built."""
    choose("dataset", name, DATASETS)
    choose("split", split, SPLITS)
    within("seed", typed("seed", seed, int), 0, None)
    within("image_size", typed("image_size", image_size, int), *RANGES["image_size"])
    within("size", typed("size", size, int), *RANGES["dataset_size"])
    return DATASETS[name](split=split, seed=seed, image_size=image_size, size=size, **kwargs)


def cache_dir() -> Path:
    """Where generated data and run results live: $SSL_CORE_CACHE, else <repo>/.cache."""
    root = os.environ.get("SSL_CORE_CACHE") or Path(__file__).resolve().parents[2] / ".cache"
    return Path(root)


from ssl_core.data import real, suite, world  # noqa: E402,F401  (register the embedded world, the suite, real sets)
