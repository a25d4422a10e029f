"""Augmentation throughput, two SimCLR views per image at 32x32: ssl_core's batched `views` vs lightly's
`SimCLRTransform` (PIL, per sample) in a DataLoader with 0 and 2 workers vs torchvision v2 per sample.

Every path runs the same recipe, RunConfig's defaults: random resized crop (area 0.2-1) and flip,
colour jitter 0.4 with hue 0.05 (p 0.8), grayscale (p 0.2), no blur (lightly's CIFAR recipe),
normalisation. Input: the world's curated train images (PIL images for the per-sample peers).

Run: `python bench/augment.py [--quick]`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run as a script: make `bench` importable
from bench.timing import Figure, Target, interleave, ratio, table, timed  # noqa: E402
from ssl_core.config import RunConfig  # noqa: E402
from ssl_core.data import load_dataset  # noqa: E402
from ssl_core.data.views import MEAN, STD, views  # noqa: E402

REFERENCE = "lightly, 2 workers"


def lightly_transform(cfg: RunConfig):
    """lightly's SimCLRTransform with the recipe of `cfg` (two views per call)."""
    from lightly.transforms import SimCLRTransform
    return SimCLRTransform(input_size=cfg.image_size, cj_prob=0.8, cj_strength=1.0, cj_bright=cfg.jitter,
                           cj_contrast=cfg.jitter, cj_sat=cfg.jitter, cj_hue=cfg.hue, min_scale=cfg.crop_min_scale,
                           random_gray_scale=0.2, gaussian_blur=0.0)


def torchvision_transform(cfg: RunConfig):
    """The same recipe with torchvision.transforms.v2 on one uint8 (3, H, W) tensor (one view per call)."""
    from torchvision.transforms import v2
    jitter = v2.ColorJitter(cfg.jitter, cfg.jitter, cfg.jitter, cfg.hue)
    return v2.Compose([v2.RandomResizedCrop(cfg.image_size, scale=(cfg.crop_min_scale, 1.0)),
                       v2.RandomHorizontalFlip(), v2.RandomApply([jitter], p=0.8), v2.RandomGrayscale(0.2),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])


class PerSample(Dataset):
    """Items transformed one at a time, as a DataLoader feeds a per-sample pipeline."""

    def __init__(self, items: list, transform, n_views: int = 1):
        self.items, self.transform, self.n_views = items, transform, n_views

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        if self.n_views == 1:
            return self.transform(self.items[i])          # the transform makes the views itself
        return [self.transform(self.items[i]) for _ in range(self.n_views)]


def to_pil(images: torch.Tensor) -> list:
    """Shape: images (N, 3, H, W) uint8 -> N PIL RGB images."""
    from PIL import Image
    return [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images]


def with_threads(threads: int, fn):
    """`fn` run with `threads` intra-op torch threads (per-sample pipelines run best with one)."""
    def run():
        torch.set_num_threads(threads)
        return fn()
    return run


def measure(images: int = 1024, batch: int = 256, rounds: int = 5, threads: int = 2,
            verbose: bool = True) -> dict[str, Figure]:
    """Source images per second (two views each) of every augmentation path, interleaved over `rounds`.

    Batched paths and lightly with 2 workers see `images` images a round; the single-process
    per-sample paths see a quarter of them (they are 10-100x slower; the rate is per image).
    """
    cfg = RunConfig()
    x = load_dataset("curated", "train", image_size=cfg.image_size).images[:images]
    n, few = len(x) // batch * batch, max(batch, len(x) // 4 // batch * batch)
    recipe = dict(crop_min_scale=cfg.crop_min_scale, jitter=cfg.jitter, hue=cfg.hue)
    g = torch.Generator().manual_seed(0)

    def batched(fn, **kw):
        def one_round():
            return timed(n, lambda: [fn(x[i:i + batch], g, 2, **{**recipe, **kw}) for i in range(0, n, batch)])
        return one_round

    def loader(dataset, workers):
        dl = DataLoader(dataset, batch_size=batch, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0)
        for _ in dl:                                      # start the workers, warm the caches (untimed)
            pass
        return lambda: timed(len(dataset), lambda: [None for _ in dl])   # one whole epoch: workers end idle

    lightly_tf = lightly_transform(cfg)
    cases = {
        "ssl_core views (batched)": with_threads(threads, batched(views)),
        "ssl_core views, 1 thread": with_threads(1, batched(views)),
        "ssl_core views, hue=0": with_threads(threads, batched(views, hue=0.0)),
        "lightly, 0 workers": with_threads(1, loader(PerSample(to_pil(x[:few]), lightly_tf), 0)),
        REFERENCE: with_threads(threads, loader(PerSample(to_pil(x[:n]), lightly_tf), 2)),
        "torchvision v2 per sample": with_threads(
            1, loader(PerSample(list(x[:few]), torchvision_transform(cfg), n_views=2), 0)),
    }
    notes = {"ssl_core views (batched)": f"main process, {threads} torch threads",
             "ssl_core views, hue=0": "diagnostic: the cost of hue",
             "lightly, 0 workers": "PIL per sample, main process, 1 torch thread",
             REFERENCE: "PIL per sample in 2 worker processes (1 torch thread each)",
             "torchvision v2 per sample": "uint8 tensors, main process, 1 torch thread"}
    return interleave(cases, rounds, notes, verbose)


def targets(figures: dict[str, Figure]) -> list[Target]:
    vs = lambda ours, peer=REFERENCE: ratio(figures, ours, peer)
    cpu = lambda ours, peer=REFERENCE: ratio(figures, ours, peer, cpu=True)
    return [Target("augmentation: ssl_core views / lightly 2 workers", vs("ssl_core views (batched)"), 5.0),
            Target("augmentation: ssl_core views / lightly 2 workers, per CPU-second",
                   cpu("ssl_core views (batched)"), 5.0),
            Target("augmentation: ssl_core views 1 thread / lightly 2 workers", vs("ssl_core views, 1 thread"), 5.0),
            Target("augmentation: ssl_core views / torchvision v2 per sample",
                   vs("ssl_core views (batched)", "torchvision v2 per sample"))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="512 images, 3 rounds")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    images, rounds = (512, 3) if args.quick else (args.images, args.rounds)
    figures = measure(images, args.batch, rounds, args.threads)
    print(table(figures, REFERENCE))
    print(*targets(figures), sep="\n")


if __name__ == "__main__":
    main()
