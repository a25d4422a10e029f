"""Equal-FLOP budgets (Koppula et al. 2022, "Where should I spend my FLOPS?"): every method gets the same
training FLOPs, and its epochs follow from its own FLOPs per step.

The FLOP budget is the FLOPs of `budget` epochs of supervised training on the notebook's `dataset` (DESIGN.md),
the same for every method and every pretraining set.
A method's FLOPs per step are counted on its real training step (`METHODS[m](cfg).forward` and the
backward pass, every view, teacher and head included) by ssl_core.flops on the meta device, never
assumed from the encoder; its steps are the budget divided by them, rounded to whole steps, so the
realised FLOPs (`train_flops`) differ from the target by less than half a step.
"""
from __future__ import annotations

from functools import lru_cache, partial

import pandas as pd
import torch
import torch.fx.experimental._config as fx_config

from ssl_core.backends import run_jobs, schedule
from ssl_core.config import RunConfig, steps_per_epoch
from ssl_core.checks import at_least, choose, positive, typed
from ssl_core.data import DATASETS, load_dataset
from ssl_core.evaluate import EVALS
from ssl_core.flops import footprint, training_step_flops
from ssl_core.methods import METHODS
from ssl_core.runs import cached_rows, eval_id, finished, has_rows, load_encoder
from ssl_core.stats import Effect, blocked_anova, effect, paired_effect
from ssl_core.train import resolve_device

REFERENCE = "supervised"   # the method whose epochs define the budget


def step_flops(cfg: RunConfig) -> int:
    """FLOPs of one training step of `cfg` (its method, encoder, batch size and recipe), forward + backward.

    The method is built on the meta device (nothing is computed) with the class count of its
    pretraining set and fed a uint8 batch of `cfg.batch_size` images, as the trainer does.
    """
    return _step_flops(cfg.replace(seed=0, epochs=1.0, device="cpu"))   # seed and length leave the step alone


@lru_cache(maxsize=None)
def _step_flops(cfg: RunConfig) -> int:
    num_classes = load_dataset(cfg.dataset, "train", image_size=cfg.image_size, size=cfg.dataset_size).num_classes
    with torch.device("meta"):
        model = METHODS[cfg.method](cfg, num_classes).train()
        x = torch.empty(cfg.batch_size, 3, cfg.image_size, cfg.image_size, dtype=torch.uint8)
        y = torch.zeros(cfg.batch_size, dtype=torch.long)       # class 0 (CLIP: its pseudo-caption)
    # DINO's loss drops the same-crop pairs with a boolean index; its size is data-dependent on meta tensors.
    # It is a mean over a (2, V) matrix after the counted einsum, so assuming all entries kept changes no count.
    with fx_config.patch(meta_nonzero_assume_all_nonzero=True):
        return training_step_flops(lambda x, y: model(x, y, None), x, y)   # no generator: meta draws nothing


def equal_flop_epochs(target_flops: float, flops_per_step: int, per_epoch: int) -> float:
    """Epochs that spend `target_flops` at `flops_per_step`, in whole steps (at least one):
    epochs = round(target / (FLOPs per step)) / steps per epoch."""
    positive("target_flops", target_flops)
    positive("flops_per_step", flops_per_step)
    at_least("per_epoch", per_epoch, 1)
    return max(1, round(target_flops / flops_per_step)) / per_epoch


def flop_grid(base: RunConfig, methods: list[str], datasets: list[str], levels: list[float],
              seeds: int) -> tuple[list[RunConfig], pd.DataFrame]:
    """The equal-FLOP grid: the budget is the FLOPs of `base.epochs` supervised epochs on `base.dataset`
    (the reference run); `levels` are fractions of it; every method on every dataset gets level x budget
    FLOPs, so a larger dataset is seen for fewer epochs and a costlier step takes fewer steps.

    Returns the configs and one row per config: method, dataset, level, seed, target_flops,
    step_flops, steps, epochs, train_flops (realised = steps x step_flops) and the config key.
    """
    for level in levels:
        if not 0 < level <= 1:
            raise ValueError(f"levels={levels!r} is not allowed: each must be in (0, 1] (a fraction of the budget)")
    positive("budget", base.epochs)
    at_least("seeds", seeds, 1)
    per_epoch = lambda cfg: steps_per_epoch(cfg, len(load_dataset(cfg.dataset, "train", image_size=cfg.image_size,
                                                                  size=cfg.dataset_size)))
    reference = base.replace(method=REFERENCE)
    budget = base.epochs * per_epoch(reference) * step_flops(reference)
    configs, rows = [], []
    for dataset in datasets:
        at = base.replace(dataset=dataset)
        steps_per = per_epoch(at)
        for method in methods:
            per_step = step_flops(at.replace(method=method))
            for level in levels:
                epochs = equal_flop_epochs(level * budget, per_step, steps_per)
                steps = round(epochs * steps_per)
                for seed in range(seeds):
                    cfg = at.replace(method=method, epochs=epochs, seed=seed)
                    configs.append(cfg)
                    rows.append(dict(method=method, dataset=dataset, level=level, seed=seed, target_flops=level * budget,
                                     step_flops=per_step, steps=steps, epochs=epochs, train_flops=steps * per_step,
                                     key=cfg.key()))
    return configs, pd.DataFrame(rows)


def probe_rows(cfg: RunConfig, name: str, dataset: str, train_size: int, test_size: int) -> list[dict]:
    """Rows of evaluation `name` (an EVALS key) of run `cfg` (trained now if not cached) on a
    `train_size`-image train split of `dataset` and its first `test_size` test images, with the run's
    method, dataset, seed, epochs, steps, train_seconds and key.

    run_or_load evaluates on whole splits; a ViT's features and the segmentation probe cost seconds
    per hundred images on a 2-core CPU, so this grid of ~100 runs probes on subsets, cached beside
    run_or_load's evaluations under a name that carries the sizes.
    """
    at_least("train_size", train_size, 2)
    at_least("test_size", test_size, 1)

    def compute() -> list[dict]:
        train = load_dataset(dataset, "train", image_size=cfg.image_size, size=train_size)
        test = load_dataset(dataset, "test", image_size=cfg.image_size)
        test = test.subset(torch.arange(min(test_size, len(test))))
        return EVALS[name](load_encoder(cfg), train, test, resolve_device(cfg.device), cache={})

    rows = cached_rows(cfg, eval_id(name, dataset, train_size, test_size), compute)
    record = finished(cfg)
    run = dict(method=cfg.method, dataset=cfg.dataset, seed=cfg.seed, epochs=cfg.epochs, steps=record["steps"],
               train_seconds=record["train_seconds"], key=cfg.key(), eval_dataset=dataset)
    return [dict(row, **run) for row in rows]


def probe_grid(probes: dict[RunConfig, list[tuple[str, str]]], train_size: int, test_size: int,
               parallel: int = 0) -> dict[str, dict[str, list[dict]]]:
    """probe_rows of every run's probes, (evaluation, dataset) pairs on subsets of `train_size` / `test_size`
    images, as {run key: {evaluation: rows}}. A run whose rows are all there is read here; every other run is one
    job (trained again first when stored without weights: runs.read_record), its probes back to back on one loaded
    encoder, `parallel` runs at a time in worker processes (0: backends.auto_parallel, 1: one after another here).
    """
    at_least("parallel", typed("parallel", parallel, int), 0)
    for cfg, pairs in probes.items():
        for name, dataset in pairs:
            choose("probes", name, EVALS)
            choose("probes", dataset, DATASETS)
    wanted = {cfg.key(): pairs for cfg, pairs in probes.items()}
    pending = [cfg for cfg, pairs in probes.items()
               if not all(has_rows(cfg, eval_id(name, dataset, train_size, test_size)) for name, dataset in pairs)]
    workers, threads = schedule(pending, parallel)
    workers = min(workers, len(pending))
    jobs = [[cfg] for cfg in pending]
    task = partial(_probe_job, wanted=wanted, train_size=train_size, test_size=test_size)
    desc = f"runs probed, {workers} at a time x {threads} thread(s) ({len(probes) - len(pending)} done)"
    done = {job[0].key(): found for job, (found,) in zip(jobs, run_jobs(task, jobs, workers, threads, desc))}
    return {cfg.key(): done.get(cfg.key()) or _probe_job([cfg], wanted, train_size, test_size)[0] for cfg in probes}


def _probe_job(job: list[RunConfig], wanted: dict[str, list[tuple[str, str]]], train_size: int,
               test_size: int) -> list[dict[str, list[dict]]]:
    return [{name: probe_rows(cfg, name, dataset, train_size, test_size) for name, dataset in wanted[cfg.key()]}
            for cfg in job]


def footprint_table(runs: pd.DataFrame, device_kind: str, country: str, pue: float = 1.0) -> pd.DataFrame:
    """One row per run: its FLOPs, wall time and the energy / CO2 estimates of ssl_core.flops.footprint.

    `runs` needs train_seconds (from run_grid's rows) and the columns of flop_grid's table; one row per
    key is kept. Adds achieved GFLOP/s (counted FLOPs over wall time) beside the estimates.
    """
    table = runs.drop_duplicates("key")[["method", "dataset", "level", "seed", "steps", "train_flops",
                                         "train_seconds"]].reset_index(drop=True)
    estimates = pd.DataFrame([footprint(s, device_kind, country, pue=pue) for s in table.train_seconds])
    table["gflop_per_s"] = table.train_flops / table.train_seconds.clip(lower=1e-9) / 1e9
    return pd.concat([table, estimates], axis=1)


def method_spread(df: pd.DataFrame) -> tuple[str, str, Effect, float]:
    """Best and worst method by mean `value` over seeds, best minus worst paired over seeds, and the
    p-value of a blocked ANOVA (ssl_core.stats.blocked_anova, seeds as blocks) that the methods differ.

    The best-minus-worst effect is chosen by its own data, so it is positive by construction: it says
    how large the spread is, the p-value whether it is more than seed noise.
    Shape: df has one row per (method, seed) with a `value` column (one dataset, one budget).
    """
    means = df.groupby("method").value.mean()
    best, worst = means.idxmax(), means.idxmin()
    return best, worst, paired_effect(df, "method", best, worst), blocked_anova(df, "method")[1]


def dataset_gap(df: pd.DataFrame, a: str, b: str) -> tuple[dict[str, Effect], Effect]:
    """Value on dataset `a` minus on dataset `b` at equal FLOPs: per method (paired over seeds), and
    pooled over every (method, seed) pair present on both.

    Shape: df has one row per (method, dataset, seed) with a `value` column (one budget).
    """
    per_method = {m: paired_effect(part, "dataset", a, b) for m, part in df.groupby("method")}
    wide = df[df.dataset.isin([a, b])].pivot_table(index=["method", "seed"], columns="dataset", values="value")
    pooled = effect((wide[a] - wide[b]).dropna()) if a in wide and b in wide else effect([])
    return per_method, pooled
