"""Claim 1 of Karthik et al. 2021 (Fig. 1 and the robustness tables): budget sweeps and robustness over a grid.

budget_grid         each method at a sweep of budgets and seeds, plus the random initialisation once per seed
spread_random_init  the random-init rows under every method, so each budget curve starts at 0
crossover           the budget where two mean curves cross (linear interpolation)
budget_gaps         per task: method a minus b at the smallest nonzero budget (paired over seeds), and the crossover
check_corruptions   fail early on a corruption or severity the chosen benchmark does not have
corruption_benchmark  the -C protocol's probe-train set and (corruption, severity) -> test sets
corruption_eval     corruption_rows as an `evaluate` for encoder_rows
encoder_rows        an evaluation of every pretrained encoder of a grid, cached beside each run
transfer_rows       linear-probe transfer of every encoder of a grid to one task, on fewer train images if asked
corruption_summary  per run: clean accuracy, mean corrupted accuracy, and their ratio
"""
from __future__ import annotations

import hashlib
import json
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from ssl_core.config import RunConfig
from ssl_core.checks import at_least, choose
from ssl_core.data import ImageSet, load_dataset
from ssl_core.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from ssl_core.data.readers import CIFAR10C
from ssl_core.evaluate import EVALS
from ssl_core.evaluate.shifts import corruption_rows
from ssl_core.runs import RUN_COLUMNS, cached_rows, eval_id, load_encoder
from ssl_core.stats import paired_effect
from ssl_core.train import resolve_device

CLEAN = ("clean", 0)   # the key of the uncorrupted test subset among the corrupted sets


# --- the budget sweep ---------------------------------------------------------------------------------

def budget_grid(base: RunConfig, methods, budget: float, fractions, seeds: int) -> list[RunConfig]:
    """Each method at budgets `fraction * budget` epochs for each seed, plus one random-init run
    (epochs 0) per seed under methods[0]: every method seeds torch and then builds its encoder
    first, so a seed's random initialisation is one encoder whatever the method.
    """
    at_least("budget", budget, 0)
    at_least("seeds", seeds, 1)
    for f in fractions:
        if not 0 < f <= 1:
            raise ValueError(f"fractions={list(fractions)!r} is not allowed: each must be in (0, 1]")
    budgets = sorted({float(f * budget) for f in fractions})            # float: the run key hashes 4.0, not 4
    grid = [base.replace(method=methods[0], epochs=0.0, seed=s) for s in range(seeds)]
    grid += [base.replace(method=m, epochs=b, seed=s) for m in methods for b in budgets for s in range(seeds)]
    return list(dict.fromkeys(grid))


def spread_random_init(df: pd.DataFrame, methods) -> pd.DataFrame:
    """The rows of `df` with the random-init rows (epochs 0) repeated under every method in `methods`."""
    random = df[df.epochs == 0]
    return pd.concat([df[df.epochs > 0]] + [random.assign(method=m) for m in methods], ignore_index=True)


def crossover(budgets, a, b) -> float:
    """The first budget at which curve a - b reaches or passes zero after its sign at budgets[0],
    linearly interpolated between the two budgets around the change; nan if it never does.

    Shape: budgets, a, b (K,), budgets increasing.
    """
    x, d = np.asarray(budgets, dtype=float), np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(d) == 0 or d[0] == 0:
        return float(x[0]) if len(d) else float("nan")
    for i in range(1, len(d)):
        if d[i] * np.sign(d[0]) <= 0:
            return float(x[i - 1] + (x[i] - x[i - 1]) * d[i - 1] / (d[i - 1] - d[i]))
    return float("nan")


def budget_gaps(df: pd.DataFrame, a: str, b: str, by: str = "eval_dataset") -> pd.DataFrame:
    """Per value of `by` (a task): method a minus method b at the smallest nonzero budget, paired over
    seeds (mean and 95% t-interval), and the crossover budget of their mean curves over nonzero budgets.

    `df`: tidy rows with columns method, epochs, seed, value and `by`.
    """
    rows = []
    for task, part in df[df.epochs > 0].groupby(by, sort=False):
        smallest = part.epochs.min()
        e = paired_effect(part[part.epochs == smallest], "method", a, b)
        means = part.pivot_table(index="epochs", columns="method", values="value")
        rows.append({by: task, "budget": smallest, "gap": e.mean, "low": e.low, "high": e.high, "n": e.n,
                     "crossover": crossover(means.index, means[a], means[b])})
    return pd.DataFrame(rows)


# --- robustness -----------------------------------------------------------------------------------------

def _subset(data: ImageSet, images: int, seed: int) -> tuple[ImageSet, torch.Tensor]:
    at_least("images", images, 0)
    if not images or images >= len(data):
        index = torch.arange(len(data))
    else:
        index = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:images].sort().values
    return data.subset(index), index


def corruption_benchmark(dataset: str, corruptions, severities, images: int = 0, image_size: int = 32,
                         size: int = 0, seed: int = 0) -> tuple[ImageSet, dict]:
    """The -C protocol (Hendrycks & Dietterich 2019): the clean train split a probe is fitted on, and
    a dict (corruption, severity) -> test set, the clean test subset included under CLEAN.

    `dataset` "cifar10c" reads CIFAR-10 train and the released CIFAR-10-C arrays (which hold the
    CIFAR-10 test images in order, so one index subset picks the same images in every set); any
    other dataset's test split is corrupted here with ssl_core.data.corruptions.corrupt. `images`
    test images are kept (0: all), the same seeded subset for every set; `size` overrides train.
    """
    if dataset == "cifar10c":
        train = load_dataset("cifar10", "train", seed, image_size, size)
        clean, index = _subset(load_dataset("cifar10", "test", seed, image_size), images, seed)
        sets = {(c, s): load_dataset("cifar10c", "test", seed, image_size, corruption=c, severity=s).subset(index)
                for c in corruptions for s in severities}
    else:
        train = load_dataset(dataset, "train", seed, image_size, size)
        clean, _ = _subset(load_dataset(dataset, "test", seed, image_size), images, seed)
        sets = {(c, s): ImageSet(corrupt(clean.images, c, s, seed), clean.labels, clean.class_names)
                for c in corruptions for s in severities}
    return train, {CLEAN: clean, **sets}


def corruption_eval(train: ImageSet, sets: dict) -> Callable[[nn.Module, torch.device], list[dict]]:
    """`evaluate(encoder, device)` for encoder_rows: corruption_rows' one row per set of
    corruption_benchmark (its mean row is dropped: it would average the clean set in)."""
    return lambda encoder, device: [row for row in corruption_rows(encoder, train, sets, device)
                                    if row["metric"] == "linear_acc"]


def encoder_rows(configs: list[RunConfig], evaluate: Callable[[nn.Module, torch.device], list[dict]],
                 name: str, dataset: str, **spec) -> pd.DataFrame:
    """`evaluate(encoder, device) -> rows` for each run's pretrained encoder (trained now if not
    cached), with the run's columns. Rows are stored and cached (runs.cached_rows) as evaluation
    `name` on `dataset`, under a digest of `spec` (what else fixes the rows: corruptions, image counts).
    """
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:8]
    frames = []
    for cfg in configs:
        device = resolve_device(cfg.device)
        rows = cached_rows(cfg, eval_id(f"{name}-{digest}", dataset),
                           lambda cfg=cfg: evaluate(load_encoder(cfg, device), device))
        frames.append(pd.DataFrame(rows).assign(**{c: getattr(cfg, c) for c in RUN_COLUMNS},
                                                eval_dataset=dataset, key=cfg.key()))
    return pd.concat(frames, ignore_index=True)


def transfer_rows(configs: list[RunConfig], task: str, train_images: int = 0, image_size: int = 32) -> pd.DataFrame:
    """The "linear" evaluation of each run's encoder on dataset `task`: probe fitted on its train split
    (`train_images` of them through load_dataset's `size`; 0: all), scored on its whole test split.
    Fewer train images than run_or_load's default make a sweep's many probes cheaper (feature
    extraction dominates their cost); rows are cached by encoder_rows.
    """
    train = load_dataset(task, "train", image_size=image_size, size=train_images)
    test = load_dataset(task, "test", image_size=image_size)
    return encoder_rows(configs, lambda encoder, device: EVALS["linear"](encoder, train, test, device),
                        "linear", task, train_images=train_images)


def corruption_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per run (method, seed): clean accuracy, mean accuracy over the corrupted sets, and relative
    robustness = corrupted / clean (1 = corruption costs nothing).

    `df`: corruption_rows' "linear_acc" rows over corruption_benchmark's sets (clean under CLEAN).
    """
    acc = df[df.metric == "linear_acc"]
    is_clean = acc.corruption == CLEAN[0]
    for name, part in (("clean", acc[is_clean]), ("corrupted", acc[~is_clean])):
        if part.empty:
            raise ValueError(f"df has no {name} linear_acc rows: pass corruption_rows over corruption_benchmark's sets")
    clean = acc[is_clean].groupby(["method", "seed"]).value.mean()
    corrupted = acc[~is_clean].groupby(["method", "seed"]).value.mean()
    out = pd.DataFrame({"clean": clean, "corrupted": corrupted})
    out["relative"] = out.corrupted / out.clean
    return out.reset_index()


def check_corruptions(dataset: str, corruptions, severities) -> None:
    """Fail before any compute on a corruption or severity the benchmark of `dataset` does not have."""
    for c in corruptions:
        choose("corruptions", c, CIFAR10C if dataset == "cifar10c" else CORRUPTIONS)
    for s in severities:
        choose("severities", s, SEVERITIES)
