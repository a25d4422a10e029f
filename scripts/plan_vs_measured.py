"""Each executed notebook's plan estimate beside the time it took (papermill's records): `make smoke` runs this on
the cold smoke runs and fails when an estimate is off by more than a factor of 2.

    python scripts/plan_vs_measured.py build/smoke/*.ipynb

The estimate is what the notebook prints when it plans (several plans: their sum). It is compared with the time
the notebook took after printing it: the cells after the plan's, whose training, evaluation, figures and
statistics the plan is about. The whole notebook's time (kernel start, imports and the plan itself included)
is printed beside it.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

FACTOR = 2.0
ESTIMATE = re.compile(r"^plan: .*; estimated time ([0-9.]+) (s|min):", re.MULTILINE)


def timings(path: Path) -> tuple[float, float, float]:
    """(estimated seconds, seconds after the first plan, seconds of the whole notebook) of an executed notebook."""
    nb = json.loads(path.read_text())
    estimate, after, planned = 0.0, 0.0, False
    for cell in nb["cells"]:
        text = "".join("".join(out.get("text", "")) for out in cell.get("outputs", []))
        found = ESTIMATE.findall(text)
        estimate += sum(float(value) * (60 if unit == "min" else 1) for value, unit in found)
        if planned:
            after += cell.get("metadata", {}).get("papermill", {}).get("duration") or 0.0
        planned |= bool(found)
    whole = nb["metadata"].get("papermill", {}).get("duration")
    if not planned or whole is None:
        raise ValueError(f"{path} has no plan estimate or no papermill duration: was it executed by papermill?")
    return estimate, after, float(whole)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    failed = False
    print(f"{'notebook':28s} {'estimated s':>11s} {'after plan s':>12s} {'ratio':>6s} {'whole s':>8s}")
    for path in args.notebooks:
        estimated, after, whole = timings(path)
        ratio = estimated / after if after else float("inf")
        off = not 1 / FACTOR <= ratio <= FACTOR
        failed |= off
        print(f"{path.stem:28s} {estimated:11.1f} {after:12.1f} {ratio:6.2f} {whole:8.1f}"
              f"{'  off by more than 2x' if off else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
