"""Does a fresh `make figures` print the committed numbers? Compares every output of the cells marked
NBVAL_CHECK_OUTPUT (the tables and verdicts each notebook prints) in the executed notebooks with their committed
copies, and each verdict file with its committed copy. Run it after `make figures`.

    python scripts/same_numbers.py                 # figures/executed/*.ipynb and figures/*_verdict.json against git HEAD
    python scripts/same_numbers.py --rev main~3    # against another commit

Timings and plans are printed by other cells, so they may differ; a number in a checked cell or a verdict file
may not. Exits 1 and names the notebook and cell, or the verdict file, where they differ.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "NBVAL_CHECK_OUTPUT"


def checked_outputs(nb: dict) -> list[str]:
    """The text each checked cell printed (streams and plain-text results), one string per cell."""
    texts = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and MARK in "".join(cell["source"]):
            texts.append("".join("".join(out.get("text") or out.get("data", {}).get("text/plain", ""))
                                 for out in cell.get("outputs", [])))
    return texts


def committed(path: Path, rev: str) -> str | None:
    """The file's text at `rev`, or None where it was not committed there."""
    out = subprocess.run(["git", "show", f"{rev}:{path.relative_to(ROOT).as_posix()}"], cwd=ROOT,
                         capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else None


def differences(path: Path, rev: str) -> list[str]:
    """What differs between the file on disk and at `rev`, in words (empty: the same numbers)."""
    then = committed(path, rev)
    if then is None:
        return [f"{path.name}: not committed at {rev}"]
    if path.suffix == ".json":
        return [] if json.loads(path.read_text()) == json.loads(then) else [f"{path.name}: the verdict differs"]
    now, before = checked_outputs(json.loads(path.read_text())), checked_outputs(json.loads(then))
    if len(now) != len(before):
        return [f"{path.name}: {len(now)} checked cells, {len(before)} at {rev}"]
    return [f"{path.name}: checked cell {i + 1} of {len(now)} prints other numbers"
            for i, (a, b) in enumerate(zip(now, before)) if a != b]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="the commit to compare with (default: HEAD)")
    args = parser.parse_args(argv)
    paths = sorted((ROOT / "figures" / "executed").glob("*.ipynb")) + sorted((ROOT / "figures").glob("*_verdict.json"))
    if not paths:
        raise SystemExit("no executed notebooks in figures/executed/: run `make figures` first")
    found = [line for path in paths for line in differences(path, args.rev)]
    for line in found:
        print(line)
    print(f"{len(paths)} files against {args.rev}: " + ("the same numbers" if not found else f"{len(found)} differences"))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
