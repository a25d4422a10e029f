"""Where the runs of a grid execute: BACKENDS maps a name to
`backend(configs, evals, eval_dataset, eval_size, **options)` (the arguments of ssl_core.runs.run_or_load).

    local     one run after another in this process
    ray       one Ray task per run on a Ray cluster ($RAY_ADDRESS, else a local one started here)
    torchrun  one run after another, each trained data-parallel over this machine's GPUs

A backend returns one outcome per config, in order: the run's tidy rows (a DataFrame), or the
message of a run that diverged (the others still finish; any other error is raised). All of them
read and write the same content-addressed cache, so they mix freely: a run finished by one is
cached for all. `runs.run_grid` is the entry point; these are its engines.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from typing import Callable

import pandas as pd
import torch

from ssl_core.config import RunConfig, at_least
from ssl_core.data import cache_dir
from ssl_core.io import read_json, write_json
from ssl_core.progress import progress
from ssl_core.runs import eval_path, read_record, run_dir, run_or_load
from ssl_core.train import Diverged

Outcome = pd.DataFrame | str
DIVERGED = f"{Diverged.__module__}.{Diverged.__qualname__}: "   # how the traceback of a diverged run ends


def run_local(configs: list[RunConfig], evals: tuple[str, ...], eval_dataset: str | None,
              eval_size: int = 0) -> list[Outcome]:
    """run_or_load of each config in turn, in this process."""
    outcomes = []
    for cfg in progress(configs, desc="runs"):
        try:
            outcomes.append(run_or_load(cfg, evals, eval_dataset, True, eval_size))
        except Diverged as err:
            outcomes.append(str(err))
    return outcomes


def fully_cached(cfg: RunConfig, evals: tuple[str, ...], eval_dataset: str | None, eval_size: int = 0) -> bool:
    """Whether run_or_load(cfg, evals, eval_dataset, eval_size=eval_size) would only read the cache."""
    eval_dataset = eval_dataset or cfg.dataset
    return read_record(cfg) is not None and all(
        read_json(eval_path(cfg, name, eval_dataset, eval_size)) is not None for name in evals)


def run_ray(configs: list[RunConfig], evals: tuple[str, ...], eval_dataset: str | None, eval_size: int = 0,
            num_cpus: int | None = None, cpus_per_run: float = 1, gpus_per_run: float | None = None) -> list[Outcome]:
    """run_or_load of each config as one Ray task, `cpus_per_run` CPUs and `gpus_per_run` GPUs each
    (default: 1 GPU when the cluster has GPUs; Ray hides the GPUs from a task that asks for none).

    Connects to the cluster at $RAY_ADDRESS (`ray start --head` prints it), else starts a local one
    with `num_cpus` CPUs (default: all) and shuts it down at the end; a Ray session the caller
    already opened with ray.init is used as it is. Runs already in the cache are read here and never
    submitted; workers write to this process's cache directory ($SSL_CORE_CACHE, passed to them),
    which must be on a filesystem that every node sees.
    """
    import ray   # an optional dependency: pip install ssl_core[scale]

    at_least("cpus_per_run", cpus_per_run, 0)
    at_least("gpus_per_run", gpus_per_run or 0, 0)
    outcomes: list[Outcome | None] = [None] * len(configs)
    todo: dict[str, list[int]] = {}                      # run key -> indices of its configs: one task per run
    for i, cfg in enumerate(configs):
        if fully_cached(cfg, evals, eval_dataset, eval_size):
            outcomes[i] = run_or_load(cfg, evals, eval_dataset, False, eval_size)
        else:
            todo.setdefault(cfg.key(), []).append(i)
    if not todo:
        return outcomes

    started = not ray.is_initialized()
    if started:
        address = os.environ.get("RAY_ADDRESS")
        ray.init(address=address or "local", num_cpus=None if address else num_cpus, log_to_driver=False)
    if gpus_per_run is None:
        gpus_per_run = 1 if ray.cluster_resources().get("GPU", 0) else 0
    env = {"SSL_CORE_CACHE": str(cache_dir().resolve())} | (
        {"SSL_CORE_DATA": os.environ["SSL_CORE_DATA"]} if "SSL_CORE_DATA" in os.environ else {})
    task = ray.remote(run_or_load).options(num_cpus=cpus_per_run, num_gpus=gpus_per_run,
                                           runtime_env={"env_vars": env})
    pending: dict = {}                                   # ObjectRef -> indices of the configs it answers
    try:
        pending = {task.remote(configs[i[0]], evals, eval_dataset, False, eval_size): i for i in todo.values()}
        with progress(total=len(pending), desc=f"runs on ray ({len(configs) - len(todo)} cached)") as bar:
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                try:
                    outcome = ray.get(ref)
                except Diverged as err:                    # Ray re-raises the task's own exception type
                    outcome = str(getattr(err, "cause", err))
                for i in pending.pop(ref):
                    outcomes[i] = outcome
                bar.update()
    finally:
        for ref in pending:                              # left only when a run raised: stop the others
            ray.cancel(ref)
        if started:
            ray.shutdown()
    return outcomes


def run_torchrun(configs: list[RunConfig], evals: tuple[str, ...], eval_dataset: str | None, eval_size: int = 0,
                 nproc_per_node: int | None = None) -> list[Outcome]:
    """Each uncached run pretrained by `torchrun --nproc_per_node=N -m ssl_core.distributed` (N: this
    machine's GPUs by default), then evaluated here with run_or_load from the cache."""
    n = nproc_per_node or max(1, torch.cuda.device_count())
    at_least("nproc_per_node", n, 1)
    outcomes = []
    for cfg in progress(configs, desc=f"runs (torchrun x{n})"):
        if read_record(cfg) is None:
            path = run_dir(cfg) / "config.json"
            write_json(dataclasses.asdict(cfg), path)
            proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                   f"--nproc_per_node={n}", "-m", "ssl_core.distributed", str(path)],
                                  capture_output=True, text=True, env=dict(os.environ, SSL_CORE_CACHE=str(cache_dir())))
            if proc.returncode:
                diverged = [line.split(DIVERGED, 1)[1] for line in proc.stderr.splitlines() if DIVERGED in line]
                if not diverged:
                    raise RuntimeError(f"torchrun failed on run {cfg.key()}:\n{proc.stderr[-4000:]}")
                outcomes.append(diverged[0])
                continue
        outcomes.append(run_or_load(cfg, evals, eval_dataset, False, eval_size))
    return outcomes


BACKENDS: dict[str, Callable[..., list[Outcome]]] = {"local": run_local, "ray": run_ray, "torchrun": run_torchrun}
