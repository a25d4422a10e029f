"""A grid of runs: `run_grid` trains and evaluates every config on a backend (ssl_core.backends), `plan` says
beforehand what it will train and roughly how long that takes."""
from __future__ import annotations

from dataclasses import replace

import pandas as pd

from ssl_core import store
from ssl_core.backends import BACKENDS, pool_running, schedule, stack_groups
from ssl_core.checks import at_least, choose, typed
from ssl_core.config import RunConfig, steps_per_epoch
from ssl_core.data import load_dataset
from ssl_core.estimate import (Evaluation, measure_eval_seconds, measure_setup_seconds, measure_step_seconds,
                               measure_worker_start_seconds, observed_step_seconds, step_shape)
from ssl_core.methods.dnc import stage_costs
from ssl_core.preflight import check_evals, check_resources, valid_list, warn_if_busy
from ssl_core.runs import eval_id, finished, has_rows, read_record
from ssl_core.train import resolve_device


def run_grid(configs: list[RunConfig], evals: tuple[str, ...] = ("knn", "linear"),
             eval_dataset: str | None = None, backend: str = "local", eval_size: int = 0, parallel: int = 0,
             **options) -> pd.DataFrame:
    """run_or_load (see there for `eval_dataset` and `eval_size`) over a grid on `backend`: "local" (this
    machine: `parallel` runs at a time in worker processes, 0 = automatic, 1 = one after another in this
    process), "ray" (a Ray cluster) or "torchrun" (each run data-parallel over this machine's GPUs); `options`
    go to the backend (see ssl_core.backends). Every config is validated before any compute. A run that fails
    is reported and the others still finish; the failures are listed in the result's `attrs["failures"]` as
    (config, error) pairs."""
    valid_list("configs", configs)
    choose("backend", backend, BACKENDS)
    check_evals(evals, eval_dataset, eval_size)
    at_least("parallel", typed("parallel", parallel, int), 0)
    if backend != "local" and parallel > 1:
        raise ValueError(f"parallel={parallel} is not allowed with backend={backend!r}: it schedules its own runs "
                         f"(use 0)")
    if backend != "ray":                                # Ray's workers check their own memory and data
        check_resources(configs, finished)
    if backend == "local":
        options["parallel"] = parallel
    outcomes = BACKENDS[backend](configs, evals, eval_dataset, eval_size, **options)
    failures = [(cfg, out) for cfg, out in zip(configs, outcomes) if isinstance(out, str)]
    for _, err in failures:
        print(f"FAILED (diverged, not cached): {err}")
    frames = [out for out in outcomes if not isinstance(out, str)]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    df.attrs["failures"] = failures
    return df


def plan(configs: list[RunConfig], parallel: int = 0, evaluations: list[Evaluation] | None = None,
         stack: int = 0) -> pd.DataFrame:
    """Print and return the plan: each run, whether it is stored or cached, its steps and estimated seconds of
    training and of evaluation (a run the grid lists twice is trained and counted once).

    Training: the seconds per step of finished runs of the same shape on this CPU model with the threads each
    run will get when `parallel` jobs train at once (0: as run_grid's automatic choice), alone or stacked as
    run_grid will (`stack`, backends.stack_groups), else two steps timed on this device with those threads
    (estimate.observed_step_seconds, measure_step_seconds), plus each run's setup, timed once per shape
    (measure_setup_seconds); a stored run with evaluations still to do is counted as trained again, for the
    weights the store does not keep. Evaluation: each of `evaluations` (default: run_grid's, kNN and linear on
    the pretraining set) timed on a sample (estimate.measure_eval_seconds), counted for each run whose rows are
    not there yet (`_evaluated`). Both are divided by the runs at a time (run_grid's and budget.probe_grid's
    schedule over the runs to train or evaluate); the local backend's worker processes,
    where they are not up yet, add their start once (estimate.measure_worker_start_seconds).
    """
    valid_list("configs", configs)
    at_least("parallel", typed("parallel", parallel, int), 0)
    at_least("stack", typed("stack", stack, int), 0)
    evaluations = [Evaluation(tuple(configs))] if evaluations is None else evaluations
    check_resources(configs, finished)
    cached = {cfg: finished(cfg) is not None for cfg in configs}        # stored or cached, read once per run
    todo = [cfg for cfg, done in cached.items() if not done]
    # runs with rows still to compute keep a worker busy too (budget.probe_grid: one job each)
    evaluating = [cfg for cfg, done in cached.items() if done and
                  any(cfg in evaluation.configs and not _evaluated(cfg, evaluation) for evaluation in evaluations)]
    workers, threads = schedule(todo + evaluating, parallel)
    device = resolve_device(configs[0].device) if configs else "-"
    if (todo or evaluating) and device.type == "cpu":
        warn_if_busy()
    jobs = stack_groups(todo, workers, stack) + [[cfg] for cfg in evaluating]
    stacked = {cfg: len(job) for job in jobs for cfg in job if len(job) > 1}   # run -> runs in its stack
    workers = max(1, min(workers, len(jobs)))
    step_seconds: dict[tuple, float] = {}
    setup_seconds: dict[tuple, float] = {}                           # per run, besides its steps
    observed = observed_step_seconds() if todo or evaluating else {}
    eval_seconds: dict[tuple, float] = {}
    sizes: dict[tuple, int] = {}                                    # images per pretraining set, read once
    rows, seen, retrained = [], set(), 0
    for cfg in configs:
        source = (cfg.dataset, cfg.image_size, cfg.dataset_size)
        if source not in sizes:
            sizes[source] = len(load_dataset(cfg.dataset, "train", image_size=cfg.image_size, size=cfg.dataset_size))
        n = sizes[source]
        steps = round(cfg.epochs * steps_per_epoch(cfg, n))
        repeat = cfg.key() in seen                                  # listed twice: trained once
        seen.add(cfg.key())
        to_evaluate = 0.0 if repeat else _eval_seconds(cfg, evaluations, threads, eval_seconds)
        # a stored run with rows still to compute and no weights (cached, or kept by make evidence) trains again
        retrain = cached[cfg] and to_evaluate > 0 and read_record(cfg) is None
        retrained += retrain
        seconds = 0.0
        # DnC trains its base and experts with another method's step before its own (distillation)
        for part, epochs in stage_costs(cfg) if cfg.method == "dnc" else [(cfg, cfg.epochs)]:
            part_steps = round(epochs * steps_per_epoch(part, n))
            members = stacked.get(cfg, 1)
            shape = step_shape(part, threads, "stacked" if members > 1 else "alone")
            if (not cached[cfg] or retrain) and part_steps and (shape, members) not in step_seconds:
                step_seconds[shape, members] = observed.get(shape) or measure_step_seconds(part, threads=threads,
                                                                                           stack=members)
            if (not cached[cfg] or retrain) and not repeat and part_steps:
                if shape not in setup_seconds:
                    setup_seconds[shape] = measure_setup_seconds(part, threads=threads)
                seconds += setup_seconds[shape] + part_steps * step_seconds[shape, members]
        rows.append({"method": cfg.method, "dataset": cfg.dataset, "batch_size": cfg.batch_size, "epochs": cfg.epochs,
                     "seed": cfg.seed, "steps": steps, "cached": cached[cfg], "est_seconds": seconds,
                     "eval_seconds": to_evaluate})
    df = pd.DataFrame(rows)
    compiling = any(cfg.compile for cfg in configs)    # the estimate times eager steps
    training, evaluating = df.est_seconds.sum() / workers, df.eval_seconds.sum() / workers
    starting = measure_worker_start_seconds() if workers > 1 and not pool_running(workers, threads) else 0.0
    print(f"plan: {len(seen)} runs, {len(seen) - len(todo)} stored or cached, {len(todo)} to train"
          f"{f' and {retrained} stored to train again for their weights' if retrained else ''} "
          f"on {device}{f' ({len(stacked)} stacked)' if stacked else ''}, {workers} at a time with {threads} "
          f"thread(s) each; estimated time {duration(starting + training + evaluating)}: "
          f"{f'starting the workers {duration(starting)}, ' if starting else ''}"
          f"training {duration(training)}, evaluation {duration(evaluating)}"
          f"{' (eager steps; torch.compile adds ~45 s per new setting on a CPU)' if compiling else ''}")
    return df


def duration(seconds: float) -> str:
    """`seconds` as people read a wait: "40 s" under two minutes, else "12.5 min"."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _eval_seconds(cfg: RunConfig, evaluations: list[Evaluation], threads: int, measured: dict) -> float:
    """Estimated seconds of the evaluations that name run `cfg`, each measured once per encoder shape and
    evaluation set (memoised in `measured`): a frozen encoder's cost does not depend on how it was trained."""
    total = 0.0
    for evaluation in evaluations:
        if cfg in evaluation.configs and not _evaluated(cfg, evaluation):
            shape = (cfg.encoder, cfg.width, cfg.image_size, cfg.device, threads, evaluation.dataset or cfg.dataset,
                     replace(evaluation, configs=(), dataset=None))
            if shape not in measured:
                measured[shape] = measure_eval_seconds(cfg, evaluation, threads)
            total += measured[shape]
    return total


def _evaluated(cfg: RunConfig, evaluation: Evaluation) -> bool:
    """Whether the rows of `evaluation` on run `cfg` are there. Probes on a train and a test subset
    (budget.probe_rows) are looked up by name, stored or cached: a stored run may lack them (claim 3 stores its
    runs before it probes them). Any other evaluation of a stored run is taken as there; of another run,
    run_grid's (names on whole test splits) are looked up in the cache and the rest counted as to do."""
    dataset = evaluation.dataset or cfg.dataset
    if evaluation.names and evaluation.train and evaluation.test and not evaluation.copies:
        return all(has_rows(cfg, eval_id(name, dataset, evaluation.train, evaluation.test))
                   for name in evaluation.names)
    if store.stored_record(cfg) is not None:
        return True
    return bool(evaluation.names) and not evaluation.test and not evaluation.copies and \
        all(has_rows(cfg, eval_id(name, dataset, evaluation.train)) for name in evaluation.names)
