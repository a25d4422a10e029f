"""A grid of runs: `run_grid` trains and evaluates every config on a backend (ssl_core.backends), `plan` says
beforehand what it will train and roughly how long that takes."""
from __future__ import annotations

import time

import pandas as pd
import torch

from ssl_core.backends import BACKENDS, schedule
from ssl_core.checks import at_least, choose, typed
from ssl_core.config import RunConfig, steps_per_epoch
from ssl_core.data import load_dataset
from ssl_core.methods import METHODS
from ssl_core.methods.dnc import stage_costs
from ssl_core.preflight import check_evals, check_resources, valid_list
from ssl_core.runs import finished
from ssl_core.train import make_optimizer, resolve_device, resolve_precision


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


def measure_step_seconds(cfg: RunConfig, steps: int = 2, threads: int | None = None) -> float:
    """Seconds per training step of `cfg` on its device (with `threads` CPU threads; default: this process's),
    timed on random data after one warm-up step."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        return _step_seconds(cfg, steps)
    finally:
        torch.set_num_threads(before)


def _step_seconds(cfg: RunConfig, steps: int) -> float:
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    torch.manual_seed(0)
    model = METHODS[cfg.method](cfg, 10).to(device, memory_format=torch.channels_last).train()
    optimizer = make_optimizer(cfg, model)
    x = torch.randint(0, 256, (cfg.batch_size, 3, cfg.image_size, cfg.image_size), dtype=torch.uint8, device=device)
    y = torch.zeros(cfg.batch_size, dtype=torch.long, device=device)   # class (DnC: cluster) 0 suits every method
    g = torch.Generator(device=device).manual_seed(0)
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(x, y, g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def plan(configs: list[RunConfig], parallel: int = 0) -> pd.DataFrame:
    """Print and return the plan: each run, whether it is stored or cached, its steps and estimated seconds
    (a run the grid lists twice is trained and counted once).

    The estimate times two steps of every distinct (method, encoder, width, batch) uncached shape on this
    device, with the threads each run will get when `parallel` runs train at once (0: as run_grid's
    automatic choice), and divides the total by the runs at a time; evaluation time is not included.
    """
    valid_list("configs", configs)
    at_least("parallel", typed("parallel", parallel, int), 0)
    check_resources(configs, finished)
    todo = [cfg for cfg in dict.fromkeys(configs) if finished(cfg) is None]
    workers, threads = schedule(todo, parallel)
    workers = max(1, min(workers, len(todo)))
    step_seconds: dict[tuple, float] = {}
    sizes: dict[tuple, int] = {}                                    # images per pretraining set, read once
    rows, seen = [], set()
    for cfg in configs:
        source = (cfg.dataset, cfg.image_size, cfg.dataset_size)
        if source not in sizes:
            sizes[source] = len(load_dataset(cfg.dataset, "train", image_size=cfg.image_size, size=cfg.dataset_size))
        n = sizes[source]
        steps = round(cfg.epochs * steps_per_epoch(cfg, n))
        cached = finished(cfg) is not None
        repeat = cfg.key() in seen                                  # listed twice: trained once
        seen.add(cfg.key())
        seconds = 0.0
        # DnC trains its base and experts with another method's step before its own (distillation)
        for part, epochs in stage_costs(cfg) if cfg.method == "dnc" else [(cfg, cfg.epochs)]:
            part_steps = round(epochs * steps_per_epoch(part, n))
            shape = (part.method, part.encoder, part.width, part.batch_size, part.image_size, part.device, part.precision)
            if not cached and part_steps and shape not in step_seconds:
                step_seconds[shape] = measure_step_seconds(part, threads=threads)
            seconds += 0.0 if cached or repeat or not part_steps else part_steps * step_seconds[shape]
        rows.append({"method": cfg.method, "dataset": cfg.dataset, "batch_size": cfg.batch_size, "epochs": cfg.epochs,
                     "seed": cfg.seed, "steps": steps, "cached": cached, "est_seconds": seconds})
    df = pd.DataFrame(rows)
    device = resolve_device(configs[0].device) if configs else "-"
    compiling = any(cfg.compile for cfg in configs)    # the estimate times eager steps
    print(f"plan: {len(seen)} runs, {len(seen) - len(todo)} stored or cached, {len(todo)} to train "
          f"on {device}, {workers} at a time with {threads} thread(s) each; estimated training time "
          f"{df.est_seconds.sum() / workers / 60:.1f} min (+ evaluation"
          f"{', eager steps; torch.compile adds ~45 s per new setting on a CPU' if compiling else ''})")
    return df
