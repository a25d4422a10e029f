"""Each notebook's presets table, in its first markdown cell: what every knob left at None resolves to, per preset.

    python scripts/preset_tables.py            # print the tables
    python scripts/preset_tables.py --write    # put each into its notebook, between the two table markers

tests/test_parameters.py checks that every notebook holds exactly its table, so the values a reader sees are the
values ssl_core.presets.PRESETS sets.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ssl_core.presets import NOTEBOOKS, PRESETS  # noqa: E402

BEGIN, END = "<!-- presets table: scripts/preset_tables.py -->", "<!-- end of the presets table -->"
SHOWN = 4   # list values shown in full up to this length, else their first SHOWN and the count


def cell_text(value) -> str:
    if isinstance(value, list):
        items = [f"{v:g}" if isinstance(v, float) else str(v) for v in value]
        return ", ".join(items) if len(items) <= SHOWN else ", ".join(items[:SHOWN]) + f", ... ({len(items)})"
    return f"{value:g}" if isinstance(value, float) else str(value)


def table(notebook: str) -> str:
    presets = PRESETS[notebook]
    lines = [f"| knob | {' | '.join(f'`{p}`' for p in presets)} |", "|---" * (len(presets) + 1) + "|"]
    for knob in next(iter(presets.values())):
        lines.append(f"| `{knob}` | " + " | ".join(cell_text(values[knob]) for values in presets.values()) + " |")
    return "\n".join(lines)


def with_table(source: str, notebook: str) -> str:
    head, _, rest = source.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head.rstrip()}\n\n{BEGIN}\n{table(notebook)}\n{END}{tail}"


def first_markdown(notebook: str) -> tuple[dict, dict]:
    """(the notebook's JSON, its first markdown cell)."""
    nb = json.loads((NOTEBOOKS / f"{notebook}.ipynb").read_text())
    return nb, next(cell for cell in nb["cells"] if cell["cell_type"] == "markdown")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write each table into its notebook")
    args = parser.parse_args()
    for notebook in PRESETS:
        if not args.write:
            print(f"{notebook}\n{table(notebook)}\n")
            continue
        nb, cell = first_markdown(notebook)
        cell["source"] = with_table("".join(cell["source"]), notebook).splitlines(keepends=True)
        (NOTEBOOKS / f"{notebook}.ipynb").write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
