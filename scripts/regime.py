"""Learning curves of SimCLR and supervised pretraining on `curated`: how the presets' recipe was chosen.

The recipe is chosen on these curves alone (linear probe and kNN on the curated test split), before any
claim's effect is looked at: the regime never licenses tuning toward a verdict. Each variant changes a
few RunConfig fields of the base recipe; each budget is its own run (the cosine schedule ends with it).

    python scripts/regime.py                          # every variant at 32 epochs, SimCLR
    python scripts/regime.py --variants chosen --methods simclr supervised --budgets 8 16 32 64 128
    python scripts/regime.py --variants chosen --methods simclr supervised --encoder vit_mini --batch 32
"""
from __future__ import annotations

import argparse

import pandas as pd

from ssl_core.config import RunConfig
from ssl_core.grid import plan, run_grid
from ssl_core.models import ENCODERS

BASE = RunConfig(method="simclr", dataset="curated", encoder="resnet10", width=8, batch_size=64, lr=1e-3,
                 temperature=0.1)
VARIANTS = {   # name -> the fields it changes (backgrounds at the world's CURATED_CONTRAST; the variants before the
               # recipe ran at 0.6, see ssl_core.presets.RECIPE)
    "base": {},
    "no_grey": dict(gray_p=0.0),
    "no_grey_jitter0.2": dict(gray_p=0.0, jitter=0.2),
    "no_grey_jitter0.2_crop0.4": dict(gray_p=0.0, jitter=0.2, crop_min_scale=0.4),
    "no_grey_jitter0.2_lr3e-3": dict(gray_p=0.0, jitter=0.2, lr=3e-3),
    "no_grey_jitter0.2_t0.2": dict(gray_p=0.0, jitter=0.2, temperature=0.2),
    "no_grey_jitter0.2_w16": dict(gray_p=0.0, jitter=0.2, width=16),
    "no_grey_jitter0.2_w16_lr3e-3": dict(gray_p=0.0, jitter=0.2, width=16, lr=3e-3),
    "no_grey_jitter0.2_w16_lr3e-3_b256": dict(gray_p=0.0, jitter=0.2, width=16, lr=3e-3, batch_size=256),
    "chosen": dict(gray_p=0.0, jitter=0.2, lr=3e-3),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--methods", nargs="+", default=["simclr"])
    parser.add_argument("--budgets", nargs="+", type=float, default=[32.0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--encoder", default=BASE.encoder, choices=sorted(ENCODERS), help="e.g. claim 3's vit_mini")
    parser.add_argument("--batch", type=int, default=BASE.batch_size, help="images per step")
    parser.add_argument("--parallel", type=int, default=0, help="runs at a time (0 = automatic)")
    args = parser.parse_args()
    base = BASE.replace(encoder=args.encoder, batch_size=args.batch)
    grid = [base.replace(method=m, epochs=b, seed=s, **VARIANTS[v])
            for v in args.variants for m in args.methods for b in args.budgets for s in range(args.seeds)]
    names = [v for v in args.variants for _ in args.methods for _ in args.budgets for _ in range(args.seeds)]
    plan(grid)
    df = run_grid(grid, evals=("knn", "linear"), parallel=args.parallel)
    df["variant"] = df["key"].map({c.key(): v for c, v in zip(grid, names)})
    table = (df.pivot_table(index=["variant", "method", "epochs"], columns="metric", values="value", aggfunc="mean")
             .mul(100).round(1).join(df.groupby(["variant", "method", "epochs"]).train_seconds.mean().round(0)))
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(table)


if __name__ == "__main__":
    main()
