"""Where torch.compile pays: whole training runs, eager against RunConfig(compile=True), at two lengths.

Each case is `ssl_core.train.train` in a fresh process (so no in-process compilation is reused), its wall
time as the trainer records it (the first step's compilation included, data loading and imports not). The
compiled runs share one inductor cache (TORCHINDUCTOR_CACHE_DIR, empty at the start): the first compiled run
builds its kernels from nothing, as a user's first run of a setting does; the others find them on disk, as
every later run of the same method, encoder and batch size does. A run of n epochs costs about
overhead + n x per-epoch seconds; the two lengths give both terms for eager and for warm compiled runs, and
the break-even length is where their lines cross.

Run: `python bench/compile_payoff.py [--method simclr] [--encoder resnet10] [--width 8] [--batch 64]
[--epochs 1 4] [--threads 2]`.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run as a script: make `bench` importable
from bench.timing import train_in_child
from ssl_core.config import RunConfig

EAGER, COLD, WARM = "eager", "compiled, empty inductor cache", "compiled, warm inductor cache"


@dataclasses.dataclass(frozen=True)
class Line:
    """Seconds of a run of n epochs: overhead + per_epoch * n."""

    overhead: float
    per_epoch: float

    @classmethod
    def through(cls, n1: float, t1: float, n2: float, t2: float) -> "Line":
        per_epoch = (t2 - t1) / (n2 - n1)
        return cls(t1 - per_epoch * n1, per_epoch)

    def __call__(self, n: float) -> float:
        return self.overhead + self.per_epoch * n


def break_even(eager: Line, compiled: Line) -> float:
    """Epochs from which the compiled run is the faster one (inf if its epochs are not faster)."""
    if compiled.per_epoch >= eager.per_epoch:
        return float("inf")
    return max(0.0, (compiled.overhead - eager.overhead) / (eager.per_epoch - compiled.per_epoch))


def measure(cfg: RunConfig, epochs: tuple[float, float] = (1.0, 4.0), threads: int = 2,
            verbose: bool = True) -> str:
    """The runs and the derived figures as markdown."""
    n1, n2 = epochs
    if not 0 < n1 < n2:
        raise ValueError(f"epochs={list(epochs)!r} is not allowed: two lengths, 0 < first < second")
    cfg.validate()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ssl_core_inductor_") as cache:
        env = {"TORCHINDUCTOR_CACHE_DIR": cache}
        for case, n in [(EAGER, n1), (EAGER, n2), (COLD, n1), (WARM, n1), (WARM, n2)]:   # COLD fills the cache
            r = train_in_child(cfg.replace(epochs=n, compile=case != EAGER), threads, env).result()
            rows.append((case, n, r))
            if verbose:
                print(f"  {case}, {n:g} epochs: {r['seconds']:.1f} s, last loss {r['loss']:.4f}", flush=True)
    seconds = {(case, n): r["seconds"] for case, n, r in rows}
    eager = Line.through(n1, seconds[EAGER, n1], n2, seconds[EAGER, n2])
    warm = Line.through(n1, seconds[WARM, n1], n2, seconds[WARM, n2])
    cold = Line(warm.overhead + seconds[COLD, n1] - seconds[WARM, n1], warm.per_epoch)   # same epochs, more overhead
    lines = [f"{cfg.method}, {cfg.encoder} width {cfg.width}, batch {cfg.batch_size}, {cfg.dataset} "
             f"({cfg.dataset_size or 'default size'}), {rows[0][2]['precision']}, {threads} threads", "",
             "| run | epochs | train s | last loss |", "|---|---:|---:|---:|"]
    lines += [f"| {case} | {n:g} | {r['seconds']:.1f} | {r['loss']:.4f} |" for case, n, r in rows]
    lines += ["", "| figure | eager | compiled (warm cache) | compiled (empty cache) |", "|---|---:|---:|---:|",
              f"| seconds per epoch | {eager.per_epoch:.2f} | {warm.per_epoch:.2f} | {cold.per_epoch:.2f} |",
              f"| overhead per run, s | {eager.overhead:.1f} | {warm.overhead:.1f} | {cold.overhead:.1f} |",
              f"| a {n2:g}-epoch run, s | {eager(n2):.1f} | {warm(n2):.1f} | {cold(n2):.1f} |",
              f"| break-even vs eager, epochs | - | {break_even(eager, warm):.1f} | {break_even(eager, cold):.1f} |",
              "", f"Step speed-up once compiled: {eager.per_epoch / warm.per_epoch:.2f}x."]
    return "\n".join(lines)


def parse(argv=None) -> tuple[RunConfig, tuple[float, float], int]:
    """The run to measure, its two lengths and the thread count, from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="simclr")
    parser.add_argument("--encoder", default="resnet10")
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dataset-size", type=int, default=0, help="pretraining images; 0 = the world's default")
    parser.add_argument("--epochs", type=float, nargs=2, default=[1.0, 4.0], help="the two run lengths")
    parser.add_argument("--threads", type=int, default=2)
    a = parser.parse_args(argv)
    cfg = RunConfig(method=a.method, encoder=a.encoder, width=a.width, batch_size=a.batch,
                    dataset_size=a.dataset_size, device="cpu")
    return cfg, tuple(a.epochs), a.threads


def main(argv=None):
    cfg, epochs, threads = parse(argv)
    print(measure(cfg, epochs, threads))


if __name__ == "__main__":
    main()
