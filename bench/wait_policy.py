"""OpenMP's wait policy: whole training runs under the runtime's default and under OMP_WAIT_POLICY=PASSIVE.

OpenMP reads its wait policy once, when torch loads it, so each case is a training run in a fresh process
(`ssl_core.train.train`, the presets' SimCLR recipe), its seconds as the trainer records them. A policy is
timed alone (one run on the machine) and shared (two runs started together on the same cores, as when two
notebooks or a test run and a notebook meet); the rounds alternate which policy goes first. The default
lets a thread that finished its share of an operation spin a little before it sleeps, so the next small
operation finds it awake; PASSIVE puts it to sleep at once, and every operation pays to wake it.

Run: `python bench/wait_policy.py [--rounds 2] [--dataset-size 2048] [--threads 2]`.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run as a script: make `bench` importable
from bench.timing import train_in_child
from ssl_core.checks import at_least
from ssl_core.config import RunConfig, steps_per_epoch

POLICIES = {"runtime default (unset)": None, "PASSIVE": "PASSIVE"}
SHARINGS = {"alone": 1, "two runs at once": 2}


def measure(cfg: RunConfig, rounds: int = 2, threads: int = 2, verbose: bool = True) -> str:
    """Images/s of each run (median over rounds and concurrent runs) per policy and sharing, as markdown."""
    at_least("rounds", rounds, 1)
    at_least("dataset_size", cfg.dataset_size, cfg.batch_size)   # 0 (the world's default size) is not timed here
    cfg.validate()
    images = round(cfg.epochs * steps_per_epoch(cfg, cfg.dataset_size)) * cfg.batch_size   # what train() steps over
    rates = {(p, s): [] for p in POLICIES for s in SHARINGS}
    for r in range(rounds):
        for sharing, runs in SHARINGS.items():
            for policy in list(POLICIES)[::1 if r % 2 == 0 else -1]:
                env = {"OMP_WAIT_POLICY": POLICIES[policy]}
                children = [train_in_child(cfg, threads, env) for _ in range(runs)]
                seconds = [child.result()["seconds"] for child in children]
                rates[policy, sharing] += [images / s for s in seconds]
                if verbose:
                    print(f"  round {r + 1}/{rounds} {policy:24s} {sharing:16s} "
                          + ", ".join(f"{s:.1f} s" for s in seconds), flush=True)
    lines = [f"{cfg.method}, {cfg.encoder} width {cfg.width}, batch {cfg.batch_size}, {cfg.dataset_size} images, "
             f"{cfg.epochs:g} epoch(s), {threads} threads per run, {rounds} round(s)", "",
             "| run | " + " | ".join(f"{p}, images/s per run" for p in POLICIES) + " | default / PASSIVE |",
             "|---|---:|---:|---:|"]
    for sharing in SHARINGS:
        a, b = (statistics.median(rates[p, sharing]) for p in POLICIES)
        lines.append(f"| {sharing} | {a:,.0f} | {b:,.0f} | {a / b:.2f}x |")
    return "\n".join(lines)


def parse(argv=None) -> tuple[RunConfig, int, int]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dataset-size", type=int, default=2048, help="pretraining images of each run (one epoch)")
    parser.add_argument("--threads", type=int, default=2)
    a = parser.parse_args(argv)
    cfg = RunConfig(method="simclr", encoder="resnet10", width=8, batch_size=64, epochs=1.0,
                    dataset_size=a.dataset_size, device="cpu")
    return cfg, a.rounds, a.threads


def main(argv=None):
    cfg, rounds, threads = parse(argv)
    print(measure(cfg, rounds, threads))


if __name__ == "__main__":
    main()
