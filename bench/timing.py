"""Side-by-side timing: every case runs once per round, rounds interleave, the median round counts.

The CPU this runs on may be shared, so wall-clock speed drifts from minute to minute; interleaving
the cases (and rotating which goes first) exposes them to the same drift, and the median of the
per-round ratios is the figure to quote. Each round also records the CPU time of this process and
its live children (DataLoader workers): on a shared CPU a pipeline with more processes gets a larger
share of the machine, so images per CPU-second is the fairer measure of work, wall time the measure
of what a user waits for.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

from ssl_core.config import RunConfig


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads) and of its live child processes."""
    total, me, tick = time.process_time(), str(os.getpid()), os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()   # after "pid (comm)": state, ppid, ...
        except OSError:                                           # the process ended meanwhile
            continue
        if fields[1] == me:
            total += (int(fields[11]) + int(fields[12])) / tick   # utime, stime
    return total


@dataclass
class Sample:
    """One round of one case."""

    images: int
    wall: float     # seconds
    cpu: float      # CPU seconds, this process and its children


def timed(images: int, fn: Callable[[], object]) -> Sample:
    """Wall and CPU time of one call of `fn`, which processes `images` images."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    fn()
    return Sample(images, time.perf_counter() - wall, cpu_seconds() - cpu)


@dataclass
class Figure:
    """One measured case over its rounds."""

    case: str
    samples: list[Sample] = field(default_factory=list)
    note: str = ""

    def rates(self, cpu: bool = False) -> list[float]:
        """Images per wall second (or per CPU second) in each round."""
        return [s.images / (s.cpu if cpu else s.wall) for s in self.samples]

    def median(self, cpu: bool = False) -> float:
        return statistics.median(self.rates(cpu))

    def spread(self) -> str:
        rates = self.rates()
        return f"{min(rates):,.1f}-{max(rates):,.1f}" if len(rates) > 1 else "-"


def interleave(cases: dict[str, Callable[[], Sample]], rounds: int, notes: dict[str, str] | None = None,
               verbose: bool = True) -> dict[str, Figure]:
    """Run every case once per round (round r starts at case r mod len) and collect its samples."""
    figures = {name: Figure(name, note=(notes or {}).get(name, "")) for name in cases}
    names = list(cases)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            figures[name].samples.append(cases[name]())
            if verbose:
                s = figures[name].samples[-1]
                print(f"  round {r + 1}/{rounds} {name:38s} {s.images / s.wall:10,.1f} images/s "
                      f"{s.images / s.cpu:10,.1f} images/CPU-s", flush=True)
    return figures


class Target(NamedTuple):
    """One row of bench/RESULTS.md's target table: a measured ratio, issue 11's target for it (None: reported
    only) and, where ssl_core's side trains in bf16, the bench/precision.py setting ("encoder:width:method")
    whose accuracy check must find bf16 matching fp32 before the figure counts (the issue's condition)."""

    what: str
    value: float
    target: float | None = None
    bf16: str | None = None

    def __str__(self) -> str:
        return f"{self.what}: {self.value:.2f}x" + (f" (target {self.target:g}x)" if self.target else "")


def ratio(figures: dict[str, Figure], ours: str, peer: str, cpu: bool = False) -> float:
    """Median over rounds of the per-round ratio ours/peer (one round's cases ran back to back)."""
    return statistics.median(a / b for a, b in zip(figures[ours].rates(cpu), figures[peer].rates(cpu)))


def table(figures: dict[str, Figure], reference: str) -> str:
    """A markdown table of the figures, each with its median per-round ratio to `reference`."""
    lines = [f"| case | images/s | range over rounds | x {reference} | images/CPU-s | x {reference}, CPU | note |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for f in figures.values():
        lines.append(f"| {f.case} | {f.median():,.1f} | {f.spread()} | {ratio(figures, f.case, reference):.2f} | "
                     f"{f.median(cpu=True):,.1f} | {ratio(figures, f.case, reference, cpu=True):.2f} | {f.note} |")
    return "\n".join(lines)


CHILD = """
import json, sys, tempfile
from pathlib import Path
import torch
from ssl_core.config import RunConfig
from ssl_core.train import train
torch.set_num_threads({threads})
with tempfile.TemporaryDirectory() as workdir:
    r = train(RunConfig(**json.loads(sys.argv[1])), Path(workdir), progress=False)
print(json.dumps({{"seconds": r.seconds, "loss": r.losses[-1], "precision": r.precision}}))
"""


@dataclass
class ChildRun:
    """A training run started in a fresh process (nothing compiled or initialised in this one is reused)."""

    process: subprocess.Popen

    def result(self) -> dict:
        """Wait for it: its training seconds (as the trainer records them), last loss and precision."""
        out, err = self.process.communicate()
        if self.process.returncode:
            raise RuntimeError(f"the training run failed:\n{err[-2000:]}")
        return json.loads(out.strip().splitlines()[-1])


def train_in_child(cfg: RunConfig, threads: int, env: dict[str, str | None] | None = None) -> ChildRun:
    """Start `ssl_core.train.train(cfg)` in a fresh process with `threads` threads, its environment this
    one's with `env` over it (a value None unsets that variable)."""
    env = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    return ChildRun(subprocess.Popen([sys.executable, "-c", CHILD.format(threads=threads),
                                      json.dumps(asdict(cfg))], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
