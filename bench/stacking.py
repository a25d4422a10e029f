"""Stacked models: N width-8 ResNet-10s trained as one grouped-convolution network, against the same N trained one
after another, side by side (a candidate for the grid-throughput issue; ssl_core does not stack runs yet).

Model i of the stack owns channel group i of every layer, so the stack computes N independent networks (the test
checks its outputs against N separate ones); each step is forward + backward + AdamW under bf16 autocast, channels
last, as the trainer's. Both cases use all of this process's threads; rounds alternate which case goes first and the
median per-round ratio is the figure. Run alone, the section is written into bench/RESULTS.md.

Run: `python bench/stacking.py` (8 models, batches of 16 and 64 images per view, 3 rounds).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run as a script: make `bench` importable
from bench.grid import write_section  # noqa: E402
from ssl_core.models import BatchNorm2d, CifarResNet  # noqa: E402

TITLE = "Stacked models: N small networks as one grouped network"


class GroupedBlock(nn.Module):
    """ssl_core.models.BasicBlock for `groups` networks at once: every convolution grouped, channels stacked."""

    def __init__(self, c_in: int, c_out: int, stride: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in * groups, c_out * groups, 3, stride, 1, bias=False, groups=groups)
        self.bn1 = BatchNorm2d(c_out * groups)
        self.conv2 = nn.Conv2d(c_out * groups, c_out * groups, 3, 1, 1, bias=False, groups=groups)
        self.bn2 = BatchNorm2d(c_out * groups)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in * groups, c_out * groups, 1, stride, bias=False, groups=groups),
                                          BatchNorm2d(c_out * groups))

    def forward(self, x):
        out = torch.relu_(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return torch.relu_(out)


def stacked_resnet10(width: int, groups: int) -> nn.Sequential:
    """`groups` ResNet-10s (ssl_core.models.CifarResNet, blocks 1, 1, 1, 1) as one network, its parameters in the
    same order. Shape: x (B, 3 * groups, H, W) -> spatial features (B, 8 * width * groups, H / 8, W / 8)."""
    layers: list[nn.Module] = [nn.Conv2d(3 * groups, width * groups, 3, 1, 1, bias=False, groups=groups),
                               BatchNorm2d(width * groups), nn.ReLU(inplace=True)]
    c_in = width
    for i in range(4):
        layers.append(GroupedBlock(c_in, width * 2 ** i, 1 if i == 0 else 2, groups))
        c_in = width * 2 ** i
    return nn.Sequential(*layers)


def load_separate(stack: nn.Sequential, models: list[CifarResNet]) -> None:
    """Copy the parameters of `models` into `stack`, model i into channel group i."""
    with torch.no_grad():
        for stacked, parts in zip(stack.parameters(), zip(*(m.parameters() for m in models))):
            stacked.copy_(torch.cat(parts))


def step_seconds(batch: int, models: int, width: int = 8, steps: int = 5, rounds: int = 3) -> dict[str, list[float]]:
    """Seconds per training step of all `models`, each round: separately, then stacked (alternating first)."""
    x = torch.randn(2 * batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)   # two views per image
    separate = [CifarResNet((1, 1, 1, 1), width).to(memory_format=torch.channels_last) for _ in range(models)]
    optimizers = [torch.optim.AdamW(m.parameters()) for m in separate]
    stack = stacked_resnet10(width, models).to(memory_format=torch.channels_last)
    stack_optimizer = torch.optim.AdamW(stack.parameters())
    x_stacked = x.repeat(1, models, 1, 1).contiguous(memory_format=torch.channels_last)

    def one_after_another():
        for model, optimizer in zip(separate, optimizers):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(x).float().square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    def stacked():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = stack(x_stacked).mean((2, 3)).float().square().mean()
        stack_optimizer.zero_grad()
        loss.backward()
        stack_optimizer.step()

    cases = {"one after another": one_after_another, "stacked": stacked}
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(rounds):
        for name in names[r % 2:] + names[:r % 2]:
            cases[name]()                                      # warm-up
            t0 = time.perf_counter()
            for _ in range(steps):
                cases[name]()
            seconds[name].append((time.perf_counter() - t0) / steps)
    return seconds


def measure(models: int = 8, batches=(16, 64), rounds: int = 3) -> str:
    lines = [f"`python bench/stacking.py --models {models} --rounds {rounds}` ({torch.get_num_threads()} threads)", "",
             "| images per view | one after another, ms per step of all | stacked, ms | stacked speed-up |",
             "|---:|---:|---:|---:|"]
    for batch in batches:
        seconds = step_seconds(batch, models, rounds=rounds)
        speedup = statistics.median(a / s for a, s in zip(seconds["one after another"], seconds["stacked"]))
        lines.append(f"| {batch} | {1000 * statistics.median(seconds['one after another']):.0f} | "
                     f"{1000 * statistics.median(seconds['stacked']):.0f} | {speedup:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args(argv)
    text = measure(args.models, rounds=args.rounds)
    print(text)
    write_section(args.output, TITLE, text)
    print(f"wrote the section '{TITLE}' into {args.output}")


if __name__ == "__main__":
    main()
