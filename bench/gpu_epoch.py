"""SimCLR epoch time and model FLOP utilisation on one accelerator (issue 11's GPU figure).

CIFAR-size data (`--images` 32x32 uint8 images of the embedded curated world, resident on the device),
the trainer's SimCLR step (bench/step.py's ssl_core_step: batched views on the device, channels_last, bf16
autocast, AdamW) on a CIFAR ResNet-18, batch 512 by default. The first epoch warms up (allocator, cuDNN
autotuning, torch.compile's compilation with `--compile`) and is reported apart; the rest are timed one by
one with the device synchronised. MFU = counted FLOPs of a step (ssl_core.budget.step_flops, forward +
backward) x steps / epoch seconds / the device's dense bf16 peak (`--peak-tflops`, or looked up from its name).
The peer: lightly's published 331 minutes for 800 epochs at batch 512 on an A6000, ~25 s per epoch.

Run: `python bench/gpu_epoch.py [--device cuda] [--images 50000] [--batch 512] [--epochs 3] [--compile]`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run as a script: make `bench` importable
from bench.step import ssl_core_step  # noqa: E402
from ssl_core.budget import step_flops  # noqa: E402
from ssl_core.checks import at_least  # noqa: E402
from ssl_core.config import RunConfig  # noqa: E402
from ssl_core.data import load_dataset  # noqa: E402

# dense bf16 tensor peaks (TFLOP/s) from the vendors' data sheets, matched against torch's device name
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "A6000": 155.0, "L40S": 362.0, "L4": 121.0}
LIGHTLY_A6000_IMAGES_S = 50_000 / (331 * 60 / 800)   # CIFAR-10 epochs: ~2,000 images/s


def peak_tflops(name: str) -> float | None:
    """The dense bf16 peak of a device called `name` (torch's name for it), if PEAK_TFLOPS knows it."""
    return next((peak for key, peak in PEAK_TFLOPS.items() if key in name), None)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(device: str, images: int = 50_000, batch: int = 512, epochs: int = 3, encoder: str = "resnet18",
            width: int = 64, compile_model: bool = False, peak: float | None = None) -> str:
    """The figures as a markdown table: warm-up and median epoch seconds, images/s, FLOPs, MFU, the peer's ratio."""
    at_least("epochs", epochs, 2)
    at_least("images", images, batch)
    dev = torch.device(device)
    cfg = RunConfig(encoder=encoder, width=width, batch_size=batch, dataset_size=images, device=device)
    data = load_dataset(cfg.dataset, "train", image_size=cfg.image_size, size=images)
    step, precision = ssl_core_step(cfg, data.num_classes, compile_model=compile_model, device=device)
    x, y = data.images.to(dev), data.labels.to(dev)
    steps = len(x) // batch
    seconds = []
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch)).to(dev)
        sync(dev)
        t0 = time.perf_counter()
        for i in range(steps):
            idx = order[i * batch:(i + 1) * batch]
            step(x[idx], y[idx])
        sync(dev)
        seconds.append(time.perf_counter() - t0)
    epoch_s = sorted(seconds[1:])[len(seconds[1:]) // 2]                       # median of the timed epochs
    flops = step_flops(cfg) * steps
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    peak = peak or peak_tflops(name)
    mfu = f"{100 * flops / epoch_s / (peak * 1e12):.1f}%" if peak else "n/a (pass --peak-tflops)"
    rows = [("device", name),
            ("setting", f"SimCLR {encoder} width {width}, {steps * batch} images of 32x32, batch {batch}, "
                        f"{precision}{', torch.compile' if compile_model else ''}"),
            ("first epoch (warm-up)", f"{seconds[0]:.2f} s"),
            (f"epoch (median of {epochs - 1})", f"{epoch_s:.2f} s ({steps * batch / epoch_s:,.0f} images/s)"),
            ("counted FLOPs per epoch", f"{flops / 1e12:.4g} TFLOP"),
            (f"MFU (dense bf16 peak {peak or '?'} TFLOP/s)", mfu),
            ("images/s, this / lightly's published A6000 run", f"{steps * batch / epoch_s / LIGHTLY_A6000_IMAGES_S:.2f}x")]
    return "| figure | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=3, help="the first warms up; the others are timed")
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--compile", action="store_true", help="torch.compile the method's forward")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak")
    a = parser.parse_args(argv)
    print(measure(a.device, a.images, a.batch, a.epochs, a.encoder, a.width, a.compile, a.peak_tflops))


if __name__ == "__main__":
    main()
