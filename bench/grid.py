"""Grid throughput: the same grid of small runs trained one after another and several at a time, side by side.

The sequential case is `run_grid(..., parallel=1, stack=1)`: one run after another in this process, on all its
threads (how every notebook trained before). The parallel case is `run_grid(..., parallel=0)`: the automatic
choice, on a CPU one single-threaded job per core in worker processes (ssl_core.backends.auto_parallel), runs of
one shape stacked into one network (ssl_core.stack). Each case trains every run from nothing in a fresh cache
(the store off), the cases alternate within a round, and the median per-round ratio of runs per hour is the
figure; run alone, the row is written into bench/RESULTS.md.

Run: `python bench/grid.py` (8 SimCLR runs of 1 epoch on 5,000 curated images at the presets' batch of 64, 3 rounds;
`--batch 16` for claim 4's small batch). `python bench/grid.py --probes` times claim 3's work instead: its ViT
runs, each trained from nothing, then probed (segmentation and linear, on the notebook's subsets) by
`budget.probe_grid`, one after another on all threads against the automatic choice.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Callable
from unittest import mock

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run as a script: make `bench` importable
from bench.timing import Target  # noqa: E402
from ssl_core.budget import probe_grid  # noqa: E402
from ssl_core.config import RunConfig  # noqa: E402
from ssl_core.data import cache_dir, load_dataset  # noqa: E402
from ssl_core.grid import run_grid  # noqa: E402

TITLE = "Grid throughput: small runs one after another and several at a time"
PROBE_TITLE = "Probe grid throughput: claim 3's ViT runs trained and probed, one after another and several at a time"
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


def compare(cases: dict[str, Callable[[], float]], runs: int, rounds: int) -> tuple[list[str], float]:
    """Time each case (wall seconds of a grid of `runs` runs) `rounds` times, alternating which goes first: the
    markdown table of runs per hour and the median per-round ratio of the first case's seconds to the second's."""
    seconds = {case: [] for case in cases}
    names = list(cases)
    for r in range(rounds):
        for case in names[r % 2:] + names[:r % 2]:        # alternate which case goes first
            seconds[case].append(cases[case]())
            print(f"  round {r + 1}/{rounds} {case:42s} {3600 * runs / seconds[case][-1]:8.1f} runs/hour", flush=True)
    ratio = statistics.median(s / p for s, p in zip(*(seconds[c] for c in names)))
    lines = ["| case | runs/hour (median) | seconds per grid, each round |", "|---|---:|---|"]
    for case in names:
        lines.append(f"| {case} | {3600 * runs / statistics.median(seconds[case]):.1f} | "
                     + ", ".join(f"{s:.1f}" for s in seconds[case]) + " |")
    return lines, ratio


def measure(runs: int = 8, epochs: float = 1.0, rounds: int = 3, batch: int = 64) -> tuple[str, Target]:
    """The markdown section (command, per-round figures, ratio) and the target row (1.6x on 2 cores)."""
    load_dataset("curated", "train")                      # generated once, outside the timing
    configs = grid(runs, epochs, batch)
    table, ratio = compare({case: partial(timed_grid, configs, *CASES[case]) for case in CASES}, runs, rounds)
    lines = [f"`python bench/grid.py --runs {runs} --epochs {epochs:g} --rounds {rounds} --batch {batch}` "
             f"({os.cpu_count()} CPUs)", "", *table, "", f"grid throughput: {ratio:.2f}x"]
    return "\n".join(lines), Target("grid throughput: several runs at a time / one after another", ratio, 1.6)


def timed_probes(configs: list[RunConfig], parallel: int, train: int, test: int) -> float:
    """Wall seconds to train every run of `configs` from nothing and probe it as notebook 03 does."""
    with fresh_cache():
        t0 = time.perf_counter()
        probe_grid({cfg: [("segmentation", "scenes_shapes"), ("linear", "curated")] for cfg in configs}, train, test,
                   parallel=parallel)
        return time.perf_counter() - t0


def measure_probes(runs: int = 2, epochs: float = 1.0, rounds: int = 2, train: int = 1000,
                   test: int = 500) -> str:
    """The markdown section for claim 3's runs: SimCLR on vit_mini at the default preset's batch of 32, probed on
    `train` / `test` images, one after another (parallel=1) and as automatic (parallel=0), alternating."""
    for name in ("scenes_shapes", "curated"):                 # generated once, outside the timing
        for split in ("train", "test"):
            load_dataset(name, split)
    configs = [RunConfig(method="simclr", dataset="curated", encoder="vit_mini", batch_size=32, lr=3e-3, jitter=0.2,
                         gray_p=0.0, epochs=epochs, seed=s) for s in range(runs)]
    cases = {"one after another (parallel=1)": 1, "several at a time (parallel=0: automatic)": 0}
    table, ratio = compare({case: partial(timed_probes, configs, parallel, train, test)
                            for case, parallel in cases.items()}, runs, rounds)
    lines = [f"`python bench/grid.py --probes --runs {runs} --epochs {epochs:g} --rounds {rounds}` "
             f"({os.cpu_count()} CPUs; probes on {train} / {test} images)", "", *table, "",
             f"probe grid throughput: {ratio:.2f}x"]
    return "\n".join(lines)


def write_section(path: Path, title: str, text: str) -> None:
    """Put `## title` with `text` into the markdown file at `path`, replacing that section if it exists."""
    body = path.read_text() if path.exists() else ""
    head, sep, rest = body.partition(f"## {title}")
    tail = rest[rest.find("\n## "):] if sep and "\n## " in rest else ""
    path.write_text(f"{head.rstrip()}\n\n## {title}\n\n{text}\n{tail}" if sep else f"{body.rstrip()}\n\n## {title}\n\n{text}\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="runs per grid (default 8; with --probes 2)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, help="rounds of both cases (default 3; with --probes 2)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--probes", action="store_true", help="claim 3's ViT runs, trained and probed")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args(argv)
    if args.probes:
        title, text = PROBE_TITLE, measure_probes(args.runs or 2, args.epochs, args.rounds or 2)
    else:
        title, (text, target) = TITLE, measure(args.runs or 8, args.epochs, args.rounds or 3, args.batch)
        print(target)
    print(text)
    write_section(args.output, title, text)
    print(f"wrote the section '{title}' into {args.output}")


if __name__ == "__main__":
    main()
