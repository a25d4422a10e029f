"""The papers' real datasets, registered by name in the same uint8 ImageSet contract as the embedded world.

Data lives under `root` (an argument), else $SSL_CORE_DATA, else ~/data, in the layout that
torchvision's dataset classes use (so `download=True` fetches it through torchvision). Nothing is
downloaded unless asked; a missing dataset raises FileNotFoundError saying where it belongs.

The files are read by `ssl_core.data.readers`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ssl_core.checks import choose
from ssl_core.data import ImageSet, register_dataset
from ssl_core.data.readers import (cifar, cifar10c, data_root, fingerprint, folder_set, image_folder, stl10,
                                   stl10_folder, svhn)
from ssl_core.data.world import cached, generator


def resize(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Square uint8 images resized (anti-aliased) to `image_size`, in chunks to bound memory.

    Shape: images (N, 3, H, H) uint8; returns (N, 3, S, S) uint8.
    """
    if images.shape[-1] == image_size:
        return images
    out = torch.empty(len(images), 3, image_size, image_size, dtype=torch.uint8)
    for i in range(0, len(images), 4096):
        x = F.interpolate(images[i:i + 4096].float(), size=(image_size, image_size), mode="bilinear",
                          antialias=True, align_corners=False)
        out[i:i + 4096] = x.round().clamp(0, 255).to(torch.uint8)
    return out


def subsample(data: ImageSet, size: int, seed: int, name: str) -> ImageSet:
    """A seeded random subset of `size` images (size 0 or >= len keeps all)."""
    if not size or size >= len(data):
        return data
    return data.subset(torch.randperm(len(data), generator=generator(name, "subset", seed))[:size].sort().values)


# --- registration -----------------------------------------------------------------------------------
def _register(name: str, load, doc: str) -> None:
    """Register `load(root, split, image_size, download, **kw) -> ImageSet` as dataset `name`."""
    @register_dataset(name)
    def builder(split: str = "train", seed: int = 0, image_size: int = 32, size: int = 0, root=None,
                download: bool = False, **kw) -> ImageSet:
        data = load(root, split, image_size, download, **kw)
        data = ImageSet(resize(data.images, image_size), data.labels, data.class_names, data.masks,
                        data.captions, data.superclass, data.meta)
        return subsample(data, size, seed, name) if split == "train" else data

    builder.__doc__ = doc + " `size` keeps a seeded random subset of the train split."


def _cifar10c(root, split, image_size, download, corruption="gaussian_noise", severity=1):
    choose("split", split, ("test",))                                  # CIFAR-10-C has no train split
    return cifar10c(root, corruption, severity)


def _stl10_unlabeled(root, split, image_size, download):
    if split == "test":
        return stl10(root, "test", download)
    where = fingerprint(stl10_folder(root, download))

    def build():
        parts = [stl10(root, s, download) for s in ("train", "unlabeled")]
        return ImageSet(torch.cat([resize(p.images, image_size) for p in parts]),
                        torch.cat([p.labels for p in parts]), parts[0].class_names)

    return cached(f"stl10_unlabeled-train-{where}-0-{image_size}", build)


_register("cifar10", lambda root, split, image_size, download: cifar(root, split, False, download),
          "CIFAR-10: 50,000 train / 10,000 test, 32x32, 10 classes.")
_register("cifar100", lambda root, split, image_size, download: cifar(root, split, True, download),
          "CIFAR-100: 50,000 train / 10,000 test, 100 classes in 20 superclasses.")
_register("stl10", lambda root, split, image_size, download: stl10(root, split, download),
          "STL-10 labelled: 5,000 train / 8,000 test, 96x96 (resized to image_size).")
_register("stl10_unlabeled", _stl10_unlabeled,
          "STL-10 for self-supervised pretraining: train = train + unlabeled (105,000; label -1 where "
          "unknown), test = the labelled test split.")
_register("svhn", lambda root, split, image_size, download: svhn(root, split, download),
          "SVHN cropped digits: 73,257 train / 26,032 test.")
_register("cifar10c", _cifar10c,
          "CIFAR-10-C, test split only: load_dataset('cifar10c', 'test', corruption=..., severity=1..5).")
for _name, _doc in {"dtd": "Describable Textures (partition 1; train = train + val), 47 classes.",
                    "flowers102": "Oxford Flowers-102 (train = train + val), 102 classes.",
                    "oxford_pets": "Oxford-IIIT Pets (trainval / test), 37 breeds.",
                    "fgvc_aircraft": "FGVC-Aircraft variants (trainval / test), 100 classes.",
                    "food101": "Food-101 (train / test), 101 classes.",
                    "caltech101": "Caltech-101: 30 images per class to train, the rest to test."}.items():
    _register(_name, lambda root, split, image_size, download, _n=_name:
              folder_set(_n, root, split, image_size, download),
              _doc + " Folder of JPEGs, read through torchvision and cached as uint8.")
_register("imagenet100", lambda root, split, image_size, download:
          image_folder(data_root(root) / "imagenet100", split, image_size),
          "ImageNet-100 as an image folder: <root>/imagenet100/{train,val}/<class>/<image>.")
_register("imagefolder", lambda root, split, image_size, download, path: image_folder(path, split, image_size),
          "Any image folder: load_dataset('imagefolder', split, path=...) reads <path>/{train,test or val}/<class>/.")
