"""The README's claims table, written from the verdict files the notebooks save (figures/<notebook>_verdict.json).

    python scripts/claims_table.py            # print the table
    python scripts/claims_table.py --write    # put it into README.md between its two table markers

tests/test_readme.py checks that README.md holds exactly this table, so a verdict, its primary effect and the
regime line are never written by hand.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- claims table: scripts/claims_table.py -->", "<!-- end of the claims table -->"
CLAIMS = {   # notebook -> (number, the claim in a line, the paper)
    "01_small_budget": (1, "small budgets favour supervised; supervised is more robust", "Karthik et al. 2021"),
    "02_curation_gap": (2, "contrastive learning suffers on uncurated data; DnC helps", "Tian et al. 2021"),
    "03_flop_budget": (3, "at equal FLOPs, methods and datasets differ widely", "Koppula et al. 2022"),
    "04_dcl_batch_size": (4, "DCL removes InfoNCE's batch-size sensitivity", "Yeh et al. 2022"),
    "05_mlp_projector": (5, "an MLP projector makes supervised pretraining transfer", "Wang et al. 2022"),
}


def effect_text(name: str, e: dict) -> str:
    if not math.isfinite(e["low"]):
        return f"{name}: {e['mean']:+.2f} (n={e['n']})"
    return f"{name}: {e['mean']:+.2f} [{e['low']:+.2f}, {e['high']:+.2f}], n={e['n']}"


def regime_text(rows: list[dict]) -> str:
    if not rows:
        return "not checked (previous preset)"
    parts = [f"{r['method']} {r['linear']:.1f} ({r['gain_last_doubling']:+.1f})" for r in rows]
    return ", ".join(parts) + f" at {rows[0]['budget']:g}; random init {rows[0]['random_init_linear']:.1f}"


def table() -> str:
    lines = ["| # | claim | paper | notebook | figures | primary effect, 95% CI | regime: linear % (gain over the "
             "last doubling) at the verdict's budget | verdict |", "|---|---|---|---|---|---|---|---|"]
    for notebook, (number, claim, paper) in CLAIMS.items():
        record = json.loads((ROOT / "figures" / f"{notebook}_verdict.json").read_text())
        figures = sorted((ROOT / "figures").glob(f"{notebook[:2]}[a-z]_*.png"))
        links = " ".join(f"[{p.name[2]}](figures/{p.name})" for p in figures)
        effects = record["effects"]
        primary = record.get("primary") or next(iter(effects))
        lines.append(f"| {number} | {claim} | {paper} | [`{notebook}`](notebooks/{notebook}.ipynb) | {links} | "
                     f"{effect_text(primary, effects[primary])} | {regime_text(record.get('regime', []))} | "
                     f"{record['verdict']} |")
    return "\n".join(lines)


def readme_with_table(readme: str) -> str:
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the table into README.md")
    args = parser.parse_args()
    if args.write:
        path = ROOT / "README.md"
        path.write_text(readme_with_table(path.read_text()))
    else:
        print(table())


if __name__ == "__main__":
    main()
