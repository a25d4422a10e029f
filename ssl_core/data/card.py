"""The data card: what the embedded world, its variants, the transfer suite and the corruptions look like.

`data_card()` draws every figure and saves it with `ssl_core.plots.save_figure` (figures/data_*.png
and .pdf); each `*_figure` function only returns a matplotlib figure, so a notebook can show one.
"""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import torch
from torchvision.utils import make_grid

from ssl_core.data import load_dataset
from ssl_core.data import render, suite, world
from ssl_core.data.corruptions import CORRUPTIONS, corrupt
from ssl_core.plots import figures_dir, save_figure, set_style

VARIANTS = ("curated", "uncurated", "scenes", "spurious", "heldout")
PALETTE = torch.tensor(plt.get_cmap("tab20")(np.arange(20))[:, :3], dtype=torch.float32)


def overlay(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mask values tinted in their own colours over the image, the background dimmed.

    Shape: images (N, 3, H, W) uint8; masks (N, H, W) uint8; returns (N, 3, H, W) float in [0, 1].
    """
    x = images.float() / 255
    tint = PALETTE[masks.long() % len(PALETTE)].permute(0, 3, 1, 2)
    on = (masks > 0)[:, None]
    return torch.where(on, 0.3 * x + 0.7 * tint, 0.35 * x)


def _show(ax, images: torch.Tensor, columns: int, title: str = "") -> None:
    """A grid of images (uint8 or float in [0, 1]) on one axis, pixels kept square and sharp."""
    x = images.float() / 255 if images.dtype == torch.uint8 else images
    grid = make_grid(x, nrow=columns, padding=1, pad_value=1.0)
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def variant_figure(name: str, seed: int = 0, image_size: int = 32) -> plt.Figure:
    """Train and test samples of one world variant; the last row overlays the masks of the row above."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
    sets = {split: load_dataset(name, split, seed=seed, image_size=image_size) for split in ("train", "test")}
    for ax, (split, data) in zip(axes, sets.items()):
        shown = torch.cat([data.images[:24].float() / 255, overlay(data.images[16:24], data.masks[16:24])])
        _show(ax, shown, 8, f"{split}: {len(data):,} images, {data.num_classes} classes")
    first = " ".join(sets["train"].meta["description"].split()).split(". ")[0]
    fig.suptitle(textwrap.fill(f"{name}: {first} (last row: the masks of the row above)", 150), fontsize=9)
    fig.tight_layout()
    return fig


def captions_figure(name: str = "uncurated", seed: int = 0, n: int = 8) -> plt.Figure:
    """A few images of a variant with their masks and captions."""
    data = load_dataset(name, "train", seed=seed)
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.4))
    for i in range(n):
        axes[0, i].imshow(data.images[i].permute(1, 2, 0).numpy(), interpolation="nearest")
        axes[1, i].imshow(overlay(data.images[i:i + 1], data.masks[i:i + 1])[0].permute(1, 2, 0).numpy(),
                          interpolation="nearest")
        axes[0, i].set_title(textwrap.fill(data.captions[i], 24), fontsize=7)
        for ax in axes[:, i]:
            ax.axis("off")
    fig.suptitle(f"{name}: images, captions and masks", fontsize=10)
    fig.tight_layout()
    return fig


def backgrounds_figure(seed: int = 0, n: int = 10) -> plt.Figure:
    """The Backgrounds-Challenge splits: the same objects on their own, no, or swapped backgrounds."""
    splits = world.background_splits(seed)
    fig, ax = plt.subplots(figsize=(n * 0.75, 4.4))
    _show(ax, torch.cat([splits[s].images[:n] for s in world.BACKGROUND_SPLITS]), n,
          "rows: " + ", ".join(world.BACKGROUND_SPLITS))
    return fig


def head_share(labels: torch.Tensor, classes: int) -> float:
    """Share of the images held by the most frequent 10% of classes. Shape: labels (N,)."""
    counts = torch.bincount(labels, minlength=classes).sort(descending=True).values
    return float(counts[: max(1, classes // 10)].sum() / counts.sum())


def histogram_figure(seed: int = 0) -> plt.Figure:
    """Images per concept, most frequent first, curated vs uncurated (log scale)."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for name, colour in (("curated", "tab:blue"), ("uncurated", "tab:orange")):
        data = load_dataset(name, "train", seed=seed)
        objects = data.labels[data.labels < len(render.POOL)] if name == "uncurated" else data.labels
        classes = len(render.POOL) if name == "uncurated" else data.num_classes
        counts = torch.bincount(objects, minlength=classes).sort(descending=True).values
        share = head_share(objects, classes)
        ax.plot(np.arange(1, classes + 1), counts.numpy(), color=colour, drawstyle="steps-mid",
                label=f"{name}: {classes} concepts, top 10% hold {share:.0%} of images")
    ax.set(yscale="log", xlabel="concept rank", ylabel="images (train)", title="Class distribution")
    ax.legend(fontsize=8)
    return fig


def suite_figure(seed: int = 0, n: int = 10) -> plt.Figure:
    """One row per transfer task, labelled with its name and a few of its class names."""
    fig, axes = plt.subplots(len(suite.SUITE), 1, figsize=(n * 0.8, len(suite.SUITE) * 1.05))
    for ax, name in zip(axes, suite.SUITE):
        data = suite.load_task(name, "train", seed)
        _show(ax, data.images[:n], n)
        names = ", ".join(data.class_names[k] for k in data.labels[:4].tolist())
        ax.set_title(f"{name} ({data.num_classes} classes): {names}, ...", fontsize=8, loc="left")
    return fig


def corruptions_figure(seed: int = 0) -> plt.Figure:
    """One curated test image under every corruption, severities 1-5 left to right."""
    x = load_dataset("curated", "test", seed=seed).images[:1]
    rows = [torch.cat([corrupt(x, name, s, seed) for s in range(1, 6)]) for name in CORRUPTIONS]
    fig, ax = plt.subplots(figsize=(3.2, len(CORRUPTIONS) * 0.62))
    _show(ax, torch.cat(rows), 5)
    ax.set_yticks([])
    for i, name in enumerate(CORRUPTIONS):
        ax.text(-3, (i + 0.5) * (x.shape[-1] + 1), name, ha="right", va="center", fontsize=7)
    ax.set_title("severity 1 to 5", fontsize=9)
    return fig


def data_card(seed: int = 0, preset: str = "default") -> list:
    """Draw and save every data-card figure (figures/data_*.png and .pdf); return the PNG paths."""

    set_style()
    figures = {f"data_{name}": variant_figure(name, seed) for name in VARIANTS}
    figures.update(data_captions=captions_figure("uncurated", seed),
                   data_scenes_captions=captions_figure("scenes", seed),
                   data_backgrounds=backgrounds_figure(seed), data_class_histogram=histogram_figure(seed),
                   data_suite=suite_figure(seed), data_corruptions=corruptions_figure(seed))
    paths = []
    for name, fig in figures.items():
        paths.append(save_figure(fig, name, figures_dir(preset)))
        plt.close(fig)
    return paths

