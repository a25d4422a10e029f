"""The regime check: have the methods a claim compares learned, and stopped learning, where its verdict is taken?

Every notebook trains each compared method at its verdict budget B and at B/2 (and evaluates random init), and
reads off, per method, the linear-probe and kNN accuracy at B and the gain of the last doubling,
    gain = acc(B) - acc(B/2)     (points, mean over the seeds that have both).
A method still gaining more than PLATEAU_GAIN points is climbing: a verdict read off it describes a young
network, so the notebook's verdict becomes "unconverged" (ssl_core.stats.UNCONVERGED) and says which method
and by how much. A method flat within PLATEAU_GAIN points of random init has not learned at all: the notebook
prints it beside the verdict.
"""
from __future__ import annotations

import pandas as pd

from ssl_core.config import RunConfig
from ssl_core.plots import METHOD_COLORS

PLATEAU_GAIN = 3.0   # points of linear accuracy over the last budget doubling


def regime_grid(base: RunConfig, methods: list[str], budget: float, seeds: int) -> list[RunConfig]:
    """The runs of the regime check: each method at `budget` and `budget`/2, and random init (epochs 0)."""
    grid = [base.replace(method=m, epochs=float(b), seed=s)
            for m in methods for b in (budget / 2, budget) for s in range(seeds)]
    return grid + [base.replace(method="supervised", epochs=0.0, seed=s) for s in range(seeds)]


def regime_rows(results: pd.DataFrame, methods: list[str], budget: float) -> list[dict]:
    """One row per method: {"method", "budget", "linear", "knn", "random_init_linear", "gain_last_doubling"},
    accuracies in % from tidy rows of run_or_load (metrics linear_acc, knn_acc; epochs 0 = random init)."""
    acc = results[results.metric.isin(["linear_acc", "knn_acc"])].pivot_table(
        index=["method", "epochs", "seed"], columns="metric", values="value").mul(100)
    acc = acc.reindex(columns=["linear_acc", "knn_acc"]).reset_index()        # a notebook without kNN: NaN
    random_init = acc[acc.epochs == 0].linear_acc.mean()
    rows = []
    for m in methods:
        mine = acc[acc.method == m]
        top, half = (mine[mine.epochs == b].set_index("seed") for b in (budget, budget / 2))
        paired = top.linear_acc.sub(half.linear_acc).dropna()
        rows.append({"method": m, "budget": float(budget), "linear": round(float(top.linear_acc.mean()), 2),
                     "knn": round(float(top.knn_acc.mean()), 2),
                     "random_init_linear": round(float(random_init), 2),
                     "gain_last_doubling": round(float(paired.mean()), 2) if len(paired) else float("nan")})
    return rows


def climbing(rows: list[dict]) -> list[dict]:
    """The rows of methods still gaining more than PLATEAU_GAIN points (or with no gain measured)."""
    return [r for r in rows if not r["gain_last_doubling"] <= PLATEAU_GAIN]


def unlearned(rows: list[dict]) -> list[dict]:
    """The rows of methods whose linear accuracy is within PLATEAU_GAIN points of random init's: flat, but never
    learned (a collapse, say); a verdict that compares them says so."""
    return [r for r in rows if r["linear"] - r["random_init_linear"] <= PLATEAU_GAIN]


def regime_line(row: dict) -> str:
    """One line per method, as the README and the notebooks print it."""
    return (f"{row['method']} linear {row['linear']:.1f}% at {row['budget']:g} epochs, "
            f"{row['gain_last_doubling']:+.1f} over the last doubling (random init {row['random_init_linear']:.1f}%)")


def regime_figure(results: pd.DataFrame, methods: list[str], xlabel: str = "pretraining epochs"):
    """The learning-curve panel: linear-probe and kNN accuracy against budget per method (mean and sd over
    seeds; a method named "m (data)" is drawn in m's colour with the line style of its data), random init dashed.
    A readout no trained run has (claim 3 probes no kNN) gets no panel."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    acc = results[results.metric.isin(["linear_acc", "knn_acc"])].assign(value=lambda d: 100 * d.value)
    trained = acc[acc.method.isin(methods) & (acc.epochs > 0)]
    panels = [(m, t) for m, t in (("linear_acc", "linear probe"), ("knn_acc", "kNN")) if (trained.metric == m).any()]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.0), squeeze=False)
    axes = axes[0]
    for ax, (metric, title) in zip(axes, panels):
        data = trained[trained.metric == metric]
        data = data.assign(family=data.method.str.split(" (", regex=False).str[0],            # "simclr (uncurated)"
                           data=data.method.str.extract(r"\((.*)\)", expand=False).fillna(""))
        sns.lineplot(data=data, x="epochs", y="value", hue="family", style="data" if data.data.any() else None,
                     palette={m: METHOD_COLORS.get(m, "k") for m in data.family.unique()}, errorbar="sd",
                     marker="o", ax=ax, legend=ax is axes[0])
        ax.axhline(acc[(acc.metric == metric) & (acc.epochs == 0)].value.mean(), color="grey", linestyle="--",
                   linewidth=1, label="random init")
        budgets = sorted(data.epochs.unique())
        ax.set(xscale="log", xticks=budgets, xticklabels=[f"{b:g}" for b in budgets], xlabel=xlabel,
               ylabel="top-1 accuracy (%)", title=title)
        ax.minorticks_off()
    axes[0].legend(fontsize=8)
    fig.suptitle("regime check: have the compared methods stopped learning?", y=1.03)
    return fig
