"""Stacked runs (ssl_core.stack): their speed against runs one after another, and their accuracy against runs alone.

Speed: seconds per training step of N SimCLR runs (the presets' ResNet-10 width 8, the trainer's step: batched
views, bf16 autocast where the CPU has it, channels last, fused AdamW) stacked into one network, against the same
runs one after another, each timed by ssl_core.estimate.measure_step_seconds; rounds alternate which case goes
first, and the median per-round ratio is the figure.

Accuracy: a stacked run is not bit for bit the run trained alone (grouped kernels sum in another order), so the
same seeds are trained both ways on the curated world and evaluated (kNN and linear probe, in points); the paired
difference stacked - alone over seeds "matches" when its 90% interval lies inside +-MARGIN points (as
bench/precision.py judges bf16). Run alone, the sections are written into bench/RESULTS.md.

Run: `python bench/stacking.py` (4 runs, batches of 16 and 64 images, 3 rounds; 1 and 2 threads) and
`python bench/stacking.py --paired --seeds 8 --epochs 8 --batch 16`; `--method byol` (any stackable method) for
another method's runs.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import pandas as pd
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run as a script: make `bench` importable
from bench.grid import fresh_cache, write_section  # noqa: E402
from bench.precision import MARGIN, METRICS, verdict  # noqa: E402
from ssl_core.config import RunConfig  # noqa: E402
from ssl_core.estimate import measure_step_seconds  # noqa: E402
from ssl_core.grid import run_grid  # noqa: E402
from ssl_core.stats import effect  # noqa: E402
from ssl_core.train import unstackable  # noqa: E402

TITLE = "Stacked runs: N small networks as one grouped network, {method}"
PAIRED_TITLE = "Stacked runs against the same runs alone: a paired accuracy check, {method}"
RUN = RunConfig(method="simclr", dataset="curated", encoder="resnet10", width=8, batch_size=64, lr=3e-3, jitter=0.2,
                gray_p=0.0, device="cpu")     # the presets' encoder and recipe


def step_seconds(batch: int, models: int, threads: int, steps: int = 5, rounds: int = 3,
                 method: str = "simclr") -> dict[str, list[float]]:
    """Seconds per step of one run, each round: alone (a step of each run in turn), then stacked (its share of a
    stacked step), alternating which goes first."""
    cfg = RUN.replace(method=method, batch_size=batch)
    cases = {"one after another": 1, "stacked": models}
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(rounds):
        for name in names[r % 2:] + names[:r % 2]:
            seconds[name].append(measure_step_seconds(cfg, steps, threads, stack=cases[name]))
    return seconds


def measure(models: int = 4, batches=(16, 64), threads=(1, 2), rounds: int = 3, method: str = "simclr") -> str:
    lines = [f"`python bench/stacking.py --models {models} --rounds {rounds} --method {method}`", "",
             "| images per view | threads | one after another, ms per run-step | stacked, ms per run-step | "
             "stacked speed-up |", "|---:|---:|---:|---:|---:|"]
    for batch in batches:
        for t in threads:
            seconds = step_seconds(batch, models, t, rounds=rounds, method=method)
            speedup = statistics.median(a / s for a, s in zip(seconds["one after another"], seconds["stacked"]))
            lines.append(f"| {batch} | {t} | {1000 * statistics.median(seconds['one after another']):.1f} | "
                         f"{1000 * statistics.median(seconds['stacked']):.1f} | {speedup:.2f}x |")
    return "\n".join(lines)


def paired(seeds: int = 8, epochs: float = 8.0, batch: int = 16, dataset_size: int = 0,
           method: str = "simclr") -> pd.DataFrame:
    """Tidy rows (mode, seed, metric, value in points) of `seeds` runs trained alone and the same seeds stacked
    (as the local backend stacks them), in a private cache."""
    configs = [RUN.replace(method=method, batch_size=batch, epochs=epochs, dataset_size=dataset_size, seed=s)
               for s in range(seeds)]
    frames = []
    for mode, stack in (("alone", 1), ("stacked", 0)):
        with fresh_cache():
            frames.append(run_grid(configs, parallel=0, stack=stack).assign(mode=mode))
    df = pd.concat(frames, ignore_index=True)
    df["value"] *= 100
    return df[["mode", "seed", "metric", "value", "train_seconds"]]


def paired_table(df: pd.DataFrame, margin: float = MARGIN) -> str:
    lines = ["| metric | alone | stacked | stacked - alone [90% CI] | 95% CI | seeds | verdict |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for metric, part in df.groupby("metric", sort=False):
        wide = part.pivot_table(index="seed", columns="mode", values="value")
        diff = wide["stacked"] - wide["alone"]
        e90, e95 = effect(diff, level=0.90), effect(diff)
        lines.append(f"| {METRICS[metric]} | {wide['alone'].mean():.2f} | {wide['stacked'].mean():.2f} | "
                     f"{e90.mean:+.2f} [{e90.low:+.2f}, {e90.high:+.2f}] | [{e95.low:+.2f}, {e95.high:+.2f}] | "
                     f"{e90.n} | {verdict(e90, e95, margin)} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--paired", action="store_true", help="the accuracy check instead of the speed")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--epochs", type=float, default=8.0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--method", default="simclr", help="a stackable method (ssl_core.train.unstackable)")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args(argv)
    reason = unstackable(RUN.replace(method=args.method))
    if reason:
        parser.error(f"--method {args.method!r} cannot train stacked: {reason}")
    if args.paired:
        title = PAIRED_TITLE.format(method=args.method)
        text = (f"`python bench/stacking.py --paired --seeds {args.seeds} --epochs {args.epochs:g} --batch "
                f"{args.batch} --method {args.method}` (ResNet-10 width 8, curated; {torch.get_num_threads()} "
                f"threads, the local backend's automatic schedule)\n\n"
                + paired_table(paired(args.seeds, args.epochs, args.batch, method=args.method)))
    else:
        title, text = TITLE.format(method=args.method), measure(args.models, rounds=args.rounds, method=args.method)
    print(text)
    write_section(args.output, title, text)
    print(f"wrote the section '{title}' into {args.output}")


if __name__ == "__main__":
    main()
