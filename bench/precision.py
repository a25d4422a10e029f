"""bf16 autocast against fp32 after a short run: may the speed figures use bf16 on this CPU?

The step figures train in the precision `resolve_precision("auto")` picks (bf16 autocast where the CPU
computes it natively). That is a fair speed-up only where a run trained in bf16 is as good as one trained
in fp32. Each setting (encoder, width, method) trains the same recipe (RunConfig's defaults, the presets'
batch 64, the curated world) for `epochs` epochs in fp32 and in bf16, seed by seed: one seed gives both
runs the same initialisation, data order and augmentation stream, and the order of the pair alternates
with the seed. The frozen encoders are evaluated in fp32 (kNN k=200 and the linear probe on the curated
test split); a random-initialised encoder (seed 0) shows what the short run learnt: a row whose fp32
accuracy is at the random-init level says nothing about bf16, only that the run was too short.

The effect is the paired difference bf16 - fp32 in accuracy points over seeds. bf16 "matches" fp32 when
the 90% t-interval of the effect lies inside +-MARGIN points (two one-sided tests at 5%); it "differs"
when the 95% interval excludes 0 and equivalence is not shown; otherwise the check is "inconclusive" (no
difference detected, and none ruled out at this many seeds). Beside it, "no worse" asks the question the
speed figures need: is bf16 no worse than fp32 by MARGIN points or more (the 90% interval's lower end above
-MARGIN, a one-sided test at 5%)? The speed-up is the median over seeds of the pair's training seconds,
fp32 / bf16.

Run: `python bench/precision.py [--settings resnet10:8:simclr resnet10:8:supervised resnet18:16:simclr]
[--epochs 2] [--seeds 8] [--dataset-size 0] [--threads 2]`.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from unittest import mock

import pandas as pd
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run as a script: make `bench` importable
from ssl_core.checks import at_least  # noqa: E402
from ssl_core.config import RunConfig  # noqa: E402
from ssl_core.runs import run_or_load  # noqa: E402
from ssl_core.stats import Effect, effect  # noqa: E402

# Set before any run was measured: a bias under 2 points is below the seed-to-seed spread of these short
# runs and of every effect the notebooks read between methods (which, besides, all train in one precision).
MARGIN = 2.0
# 4 seeds left the SimCLR linear rows inconclusive in the 2026-12-03 pass: 90% half-widths of 2.1 and 3.4 points
# (paired SDs ~1.8 at width 8, ~2.9 at width 16) against the 2-point margin; 8 seeds narrow them to ~1.2 and ~1.9
SEEDS = 8
SETTINGS = ("resnet10:8:simclr", "resnet10:8:supervised", "resnet18:16:simclr")   # the presets' encoder, ResNet-18
PRECISIONS = ("fp32", "bf16")
METRICS = {"knn_acc": "kNN", "linear_acc": "linear"}


def parse_setting(spec: str) -> tuple[str, int, str]:
    """'resnet18:16:simclr' -> ('resnet18', 16, 'simclr'), validated as a RunConfig before any compute."""
    parts = spec.split(":")
    if len(parts) != 3 or not parts[1].isdigit():
        raise ValueError(f"settings={spec!r} is not allowed: use encoder:width:method, e.g. resnet10:8:simclr")
    RunConfig(encoder=parts[0], width=int(parts[1]), method=parts[2]).validate()
    return parts[0], int(parts[1]), parts[2]


def measure(settings=SETTINGS, epochs: float = 2.0, seeds: int = SEEDS, dataset_size: int = 0, threads: int = 2,
            verbose: bool = True) -> pd.DataFrame:
    """Tidy rows (setting, precision, seed, metric, value in points, train_seconds) of every run, trained
    now in a private run cache; precision "random init" is the untrained encoder (seed 0)."""
    at_least("seeds", seeds, 2)
    at_least("epochs", epochs, 0)
    parsed = [parse_setting(s) for s in settings]
    torch.set_num_threads(threads)
    frames = []
    with tempfile.TemporaryDirectory(prefix="ssl_core_precision_") as cache, \
            mock.patch.dict(os.environ, {"SSL_CORE_CACHE": cache}):             # fresh runs; the user's cache untouched
        for spec, (encoder, width, method) in zip(settings, parsed):
            base = RunConfig(method=method, encoder=encoder, width=width, epochs=epochs, batch_size=64,
                             dataset_size=dataset_size, device="cpu")
            runs = [("random init", base.replace(epochs=0.0, precision="fp32"))]
            for seed in range(seeds):
                order = PRECISIONS if seed % 2 == 0 else PRECISIONS[::-1]
                runs += [(p, base.replace(seed=seed, precision=p)) for p in order]
            for precision, cfg in runs:
                df = run_or_load(cfg, progress=False).assign(setting=spec, precision=precision)
                frames.append(df)
                if verbose:
                    scores = ", ".join(f"{METRICS[m]} {100 * v:.2f}" for m, v in zip(df.metric, df.value))
                    print(f"  {spec} {precision:11s} seed {cfg.seed}: {scores}, "
                          f"trained {df.train_seconds.iloc[0]:.1f} s", flush=True)
    df = pd.concat(frames, ignore_index=True)
    df["value"] *= 100                                      # accuracy points
    return df[["setting", "precision", "seed", "metric", "value", "train_seconds"]]


def verdict(e90: Effect, e95: Effect, margin: float = MARGIN) -> str:
    """'matches' (90% interval inside +-margin), 'differs' (95% interval excludes 0), else 'inconclusive'."""
    if e90.n >= 2 and -margin < e90.low and e90.high < margin:
        return "matches"
    if e95.n >= 2 and (e95.low > 0 or e95.high < 0):
        return "differs"
    return "inconclusive"


def summarise(df: pd.DataFrame, margin: float = MARGIN) -> pd.DataFrame:
    """One row per (setting, metric): random-init, fp32 and bf16 means, the paired effect, verdict, speed-up."""
    rows = []
    for (setting, metric), part in df.groupby(["setting", "metric"], sort=False):
        wide = part.pivot_table(index="seed", columns="precision", values="value")
        seconds = part.pivot_table(index="seed", columns="precision", values="train_seconds")[list(PRECISIONS)].dropna()
        diff = (wide["bf16"] - wide["fp32"]).dropna()
        e90, e95 = effect(diff, level=0.90), effect(diff)
        rows.append({"setting": setting, "metric": METRICS[metric], "random init": wide["random init"].mean(),
                     "fp32": wide["fp32"].mean(), "bf16": wide["bf16"].mean(), "bf16 - fp32": e90.mean,
                     "90% low": e90.low, "90% high": e90.high, "95% low": e95.low, "95% high": e95.high, "seeds": e90.n,
                     "verdict": verdict(e90, e95, margin), "no worse": bool(e90.low > -margin),
                     "speed-up": statistics.median(seconds["fp32"] / seconds["bf16"])})
    return pd.DataFrame(rows)


def table(summary: pd.DataFrame) -> str:
    lines = ["| setting | metric | random init | fp32 | bf16 | bf16 - fp32 [90% CI] | seeds | verdict | no worse | "
             "bf16 training speed-up |", "|---|---|---:|---:|---:|---:|---:|---|---|---:|"]
    for _, r in summary.iterrows():
        lines.append(f"| {r['setting']} | {r['metric']} | {r['random init']:.2f} | {r['fp32']:.2f} | {r['bf16']:.2f} | "
                     f"{r['bf16 - fp32']:+.2f} [{r['90% low']:+.2f}, {r['90% high']:+.2f}] | {r['seeds']} | "
                     f"{r['verdict']} | {'yes' if r['no worse'] else 'no'} | {r['speed-up']:.2f}x |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), help="encoder:width:method")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--dataset-size", type=int, default=0, help="pretraining images; 0 = the world's default")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    df = measure(args.settings, args.epochs, args.seeds, args.dataset_size, args.threads)
    print(table(summarise(df)))


if __name__ == "__main__":
    main()
