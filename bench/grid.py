"""Grid throughput: the same grid of small runs trained one after another and several at a time, side by side.

The sequential case is `run_grid(..., parallel=1, stack=1)`: one run after another in this process, on all its
threads (how every notebook trained before). The parallel case is `run_grid(..., parallel=0)`: the automatic
choice, on a CPU one single-threaded job per core in worker processes (ssl_core.backends.auto_parallel), runs of
one shape stacked into one network (ssl_core.stack). Each case trains every run from nothing in a fresh cache
(the store off), the cases alternate within a round, and the median per-round ratio of runs per hour is the
figure; run alone, the row is written into bench/RESULTS.md.

Run: `python bench/grid.py` (8 SimCLR runs of 1 epoch on 5,000 curated images at the presets' batch of 64, 3 rounds;
`--batch 16` for claim 4's small batch).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run as a script: make `bench` importable
from bench.timing import Target  # noqa: E402
from ssl_core.config import RunConfig  # noqa: E402
from ssl_core.data import cache_dir, load_dataset  # noqa: E402
from ssl_core.grid import run_grid  # noqa: E402

TITLE = "Grid throughput: small runs one after another and several at a time"
CASES = {"one after another (parallel=1, stack=1)": (1, 1),
         "several at a time (parallel=0, stack=0: automatic)": (0, 0)}


def grid(runs: int, epochs: float, batch: int = 64) -> list[RunConfig]:
    """The presets' encoder and recipe (ResNet-10 width 8) on curated, one run per seed."""
    return [RunConfig(method="simclr", dataset="curated", encoder="resnet10", width=8, batch_size=batch, lr=3e-3,
                      jitter=0.2, gray_p=0.0, epochs=epochs, seed=s) for s in range(runs)]


@contextmanager
def fresh_cache():
    """A private, empty run cache (its generated data shared with the user's), the store off and bars hidden."""
    with tempfile.TemporaryDirectory(prefix="ssl_core_bench_") as tmp:
        (Path(tmp) / "data").symlink_to((cache_dir() / "data").resolve(), target_is_directory=True)
        with mock.patch.dict(os.environ, {"SSL_CORE_CACHE": tmp, "SSL_CORE_STORE": "off", "TQDM_DISABLE": "1"}):
            yield Path(tmp)


def timed_grid(configs: list[RunConfig], parallel: int, stack: int) -> float:
    """Wall seconds to train every run of `configs` from nothing (a fresh cache sharing the generated data)."""
    with fresh_cache():
        t0 = time.perf_counter()
        run_grid(configs, evals=(), parallel=parallel, stack=stack)
        return time.perf_counter() - t0


def measure(runs: int = 8, epochs: float = 1.0, rounds: int = 3, batch: int = 64) -> tuple[str, Target]:
    """The markdown section (command, per-round figures, ratio) and the target row (1.6x on 2 cores)."""
    load_dataset("curated", "train")                      # generated once, outside the timing
    configs = grid(runs, epochs, batch)
    seconds = {case: [] for case in CASES}
    names = list(CASES)
    for r in range(rounds):
        for case in names[r % 2:] + names[:r % 2]:        # alternate which case goes first
            seconds[case].append(timed_grid(configs, *CASES[case]))
            print(f"  round {r + 1}/{rounds} {case:42s} {3600 * runs / seconds[case][-1]:8.1f} runs/hour", flush=True)
    sequential, parallel = (seconds[c] for c in names)
    ratio = statistics.median(s / p for s, p in zip(sequential, parallel))
    lines = [f"`python bench/grid.py --runs {runs} --epochs {epochs:g} --rounds {rounds} --batch {batch}` "
             f"({os.cpu_count()} CPUs)", "",
             "| case | runs/hour (median) | seconds per grid, each round |", "|---|---:|---|"]
    for case in names:
        lines.append(f"| {case} | {3600 * runs / statistics.median(seconds[case]):.1f} | "
                     + ", ".join(f"{s:.1f}" for s in seconds[case]) + " |")
    lines += ["", f"grid throughput: {ratio:.2f}x"]
    return "\n".join(lines), Target("grid throughput: several runs at a time / one after another", ratio, 1.6)


def write_section(path: Path, title: str, text: str) -> None:
    """Put `## title` with `text` into the markdown file at `path`, replacing that section if it exists."""
    body = path.read_text() if path.exists() else ""
    head, sep, rest = body.partition(f"## {title}")
    tail = rest[rest.find("\n## "):] if sep and "\n## " in rest else ""
    path.write_text(f"{head.rstrip()}\n\n## {title}\n\n{text}\n{tail}" if sep else f"{body.rstrip()}\n\n## {title}\n\n{text}\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args(argv)
    text, target = measure(args.runs, args.epochs, args.rounds, args.batch)
    print(text)
    write_section(args.output, TITLE, text)
    print(f"wrote the section '{TITLE}' into {args.output}: {target}")


if __name__ == "__main__":
    main()
