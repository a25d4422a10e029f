"""Where the runs of a grid execute: BACKENDS maps a name to
`backend(configs, evals, eval_dataset, eval_size, **options)` (the arguments of ssl_core.runs.run_or_load).

    local     one run after another in this process, or several at once in worker processes (`parallel`)
    ray       one Ray task per run on a Ray cluster ($RAY_ADDRESS, else a local one started here)
    torchrun  one run after another, each trained data-parallel over this machine's GPUs

A backend returns one outcome per config, in order: the run's tidy rows (a DataFrame), or the
message of a run that diverged (the others still finish; any other error is raised). All of them
read and write the same content-addressed cache, so they mix freely: a run finished by one is
cached for all. `grid.run_grid` is the entry point; these are its engines.
"""
from __future__ import annotations

import atexit
import dataclasses
import multiprocessing
import os
import signal
import subprocess
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from functools import partial
from typing import Callable

import pandas as pd
import torch

from ssl_core.config import RunConfig
from ssl_core.checks import at_least
from ssl_core.data import cache_dir
from ssl_core.io import write_json
from ssl_core.lifetime import watch_parent
from ssl_core.preflight import usable_cores
from ssl_core.progress import progress
from ssl_core.runs import eval_id, finished, has_rows, pretrain_group, run_dir, run_or_load
from ssl_core.train import Diverged, resolve_device, unstackable

Outcome = pd.DataFrame | str
DIVERGED = f"{Diverged.__module__}.{Diverged.__qualname__}: "   # how the traceback of a diverged run ends


def run_local(configs: list[RunConfig], evals: tuple[str, ...], eval_dataset: str | None,
              eval_size: int = 0, parallel: int = 0, stack: int = 0) -> list[Outcome]:
    """run_or_load of each config: one after another in this process (`parallel=1`), or `parallel` jobs
    at a time, each in its own worker process with its share of the CPU threads (0 = `auto_parallel`). A job is
    one run, or up to `stack` runs of one shape trained as one stacked network (`stack_groups`; 0 = automatic,
    1 = never stacked).

    A run's result does not depend on its neighbours: each worker trains a job with a fixed thread count, which
    the run's record keeps (`threads`), and a stacked run's bits do not depend on which runs share its stack, only
    on being stacked, which its record keeps (`mode`). Runs already cached are read here.
    """
    at_least("parallel", parallel, 0)
    at_least("stack", stack, 0)
    outcomes, todo = split_cached(configs, evals, eval_dataset, eval_size)
    pending = [configs[i[0]] for i in todo.values()]
    workers, threads = schedule(pending, parallel)
    jobs = stack_groups(pending, workers, stack)
    workers = min(workers, len(jobs))
    desc = f"runs, {workers} at a time x {threads} thread(s) ({len(configs) - len(todo)} cached)"
    task = partial(_run_job, evals=evals, eval_dataset=eval_dataset, eval_size=eval_size, progress_bar=workers <= 1)
    for job, outcomes_of in zip(jobs, run_jobs(task, jobs, workers, threads, desc)):
        for cfg, outcome in zip(job, outcomes_of):
            for i in todo[cfg.key()]:
                outcomes[i] = outcome
    return outcomes


def run_jobs(task: Callable[[list[RunConfig]], list], jobs: list[list[RunConfig]], workers: int, threads: int,
             desc: str) -> list[list]:
    """task(job) of each job (runs; the task answers one outcome per run), in job order: one after another in this
    process when `workers` <= 1, else `workers` at a time in worker processes of `threads` threads each
    (worker_pool). A progress bar counts the runs and names those in progress. An error or an interrupt stops the
    runs in progress (to resume from their checkpoints) and is raised."""
    results: list[list] = [[] for _ in jobs]
    with progress(total=sum(map(len, jobs)), desc=desc) as bar:
        if workers <= 1:
            for i, job in enumerate(jobs):
                bar.set_postfix_str(_label(job))
                results[i] = task(job)
                bar.update(len(job))
            return results
        pool = worker_pool(workers, threads)
        try:
            running = {pool.submit(task, job): i for i, job in enumerate(jobs)}
            while running:
                bar.set_postfix_str(", ".join(_label(jobs[i]) for i in list(running.values())[:workers]))
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    i = running.pop(future)
                    results[i] = future.result()             # a task's error is raised here
                    bar.update(len(jobs[i]))
        except BaseException:
            close_pool(kill=True)      # a failed or interrupted grid: its runs stop (to resume from their checkpoints)
            raise
    return results


STACK_MAX = 4   # runs per stack on a CPU: 4 stacked gain 1.30x at batch 16, 1.28x at 64 (1 thread, bench/stacking.py)


def stack_groups(configs: list[RunConfig], workers: int, stack: int = 0) -> list[list[RunConfig]]:
    """The uncached runs `configs` as jobs: runs of one stackable shape (equal but for the seed) in stacks of at
    most `stack` (0: STACK_MAX), split so that `workers` each get a stack where there are runs enough for stacks of
    two or more; every other run a job of its own."""
    limit = stack or STACK_MAX
    shapes: dict[RunConfig, list[RunConfig]] = {}
    for cfg in configs:
        shapes.setdefault(dataclasses.replace(cfg, seed=0), []).append(cfg)
    jobs = []
    for shape, members in shapes.items():
        if limit == 1 or len(members) == 1 or unstackable(shape):
            jobs += [[cfg] for cfg in members]
            continue
        parts = max(-(-len(members) // limit), min(workers, len(members) // 2))
        jobs += [members[i::parts] for i in range(parts)]
    return jobs


_POOL: dict[tuple, ProcessPoolExecutor] = {}   # at most one: (workers, threads, environment) -> the pool


def worker_pool(workers: int, threads: int) -> ProcessPoolExecutor:
    """`workers` processes of `threads` CPU threads each, kept from one grid to the next: a notebook that runs
    several grids pays the workers' start (a few seconds of imports each) once. A pool of another shape, or
    started under other environment variables (workers read $SSL_CORE_CACHE and the like), is closed first.
    Spawned, not forked: a fork would copy this process's OpenMP threads."""
    pool = _live_pool(workers, threads)
    if pool is None:                                   # another shape, or a worker died (killed, out of memory)
        close_pool()
        pool = _POOL[_pool_key(workers, threads)] = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
            initargs=(threads, os.getpid()))
    return pool


def pool_running(workers: int, threads: int) -> bool:
    """Whether worker_pool(workers, threads) has its workers already up (kept from an earlier grid)."""
    return _live_pool(workers, threads) is not None


def _live_pool(workers: int, threads: int) -> ProcessPoolExecutor | None:
    pool = _POOL.get(_pool_key(workers, threads))
    return None if pool is None or pool._broken else pool


def _pool_key(workers: int, threads: int) -> tuple:
    return workers, threads, frozenset(os.environ.items())


def close_pool(kill: bool = False) -> None:
    """End the kept workers: queued runs are cancelled and idle workers exit; with `kill`, runs in progress are
    stopped too (the executor has no public way to, hence its `_processes`)."""
    for pool in _POOL.values():
        if kill:
            for process in list((pool._processes or {}).values()):
                process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
    _POOL.clear()


atexit.register(close_pool)


def split_cached(configs: list[RunConfig], evals: tuple[str, ...], eval_dataset: str | None,
                 eval_size: int) -> tuple[list[Outcome | None], dict[str, list[int]]]:
    """The outcomes of the configs already stored or cached (read here; None for the others), and the rest
    as {run key: indices of its configs}: one job per run, however often the grid lists it."""
    outcomes: list[Outcome | None] = [None] * len(configs)
    todo: dict[str, list[int]] = {}
    for i, cfg in enumerate(configs):
        if fully_cached(cfg, evals, eval_dataset, eval_size):
            outcomes[i] = run_or_load(cfg, evals, eval_dataset, False, eval_size)
        else:
            todo.setdefault(cfg.key(), []).append(i)
    return outcomes, todo


def schedule(configs: list[RunConfig], parallel: int) -> tuple[int, int]:
    """(runs at a time, threads per run) for the uncached runs `configs`: `parallel` of them sharing this
    process's threads, or auto_parallel's choice for parallel=0."""
    if parallel == 0:
        return auto_parallel(configs)
    return parallel, max(1, torch.get_num_threads() // parallel)


def auto_parallel(configs: list[RunConfig]) -> tuple[int, int]:
    """(runs at a time, threads per run) for the uncached runs `configs` on their device.

    On a CPU, small encoders are bound by per-operation overhead and OpenMP's synchronisation, not by
    arithmetic: one single-threaded job per core gets more done than all cores on one run (with stacking,
    1.34x at batch 64 and 1.68x at batch 16 for 1-epoch runs on 2 idle cores, bench/grid.py; vit_mini, 1.10x for
    two 1-epoch SimCLR runs trained and probed as claim 3's, the workers' start included, bench/grid.py --probes;
    1.25x for two of claim 3's 2-epoch runs; vit_mini_p8, 1.15x for four 1-epoch SimCLR runs on 5,000 curated
    images at batch 32). Wider encoders (a ResNet of width
    > 16, a larger ViT) keep all threads on one run. On a GPU several small runs share the device; one at a time
    elsewhere.
    """
    if len(configs) < 2:
        return 1, torch.get_num_threads()
    device = resolve_device(configs[0].device)
    if device.type == "cuda":
        return min(len(configs), GPU_RUNS_PER_DEVICE), 1
    cores = usable_cores()
    if device.type != "cpu" or cores < 2 or any(_wide(cfg) for cfg in configs):
        return 1, torch.get_num_threads()
    return min(cores, len(configs)), 1


def _wide(cfg: RunConfig) -> bool:
    """Whether a run's encoder is wide enough to keep a CPU's threads busy alone."""
    return cfg.encoder.removesuffix("_p8") != "vit_mini" if cfg.encoder.startswith("vit") else cfg.width > 16


GPU_RUNS_PER_DEVICE = 8   # small runs sharing one GPU (not yet measured: no GPU has been lent)


def _init_worker(threads: int, parent: int) -> None:
    torch.set_num_threads(threads)
    # Jupyter interrupts a kernel by signalling its process group, workers included: an idle worker must outlive
    # an interrupted cell, and an interrupted grid stops its own workers (close_pool)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch_parent(parent)                   # a worker ends with the kernel or script that started it, even one
                                           # killed while the worker was still importing (seconds of torch)


def _label(job: list[RunConfig]) -> str:
    cfg = job[0]
    return f"{cfg.method} b{cfg.batch_size} e{cfg.epochs:g} s{','.join(str(c.seed) for c in job)}"


def _run_job(job: list[RunConfig], evals: tuple[str, ...], eval_dataset: str | None, eval_size: int,
             progress_bar: bool = False) -> list[Outcome]:
    """The runs of `job` pretrained together (stacked when several), then run_or_load of each; a run that
    diverged answers with its message."""
    return [str(record) if isinstance(record, Diverged) else run_or_load(cfg, evals, eval_dataset, progress_bar,
                                                                         eval_size)
            for cfg, record in zip(job, pretrain_group(job, progress_bar))]


def fully_cached(cfg: RunConfig, evals: tuple[str, ...], eval_dataset: str | None, eval_size: int = 0) -> bool:
    """Whether run_or_load(cfg, evals, eval_dataset, eval_size=eval_size) would only read the cache."""
    eval_dataset = eval_dataset or cfg.dataset
    return finished(cfg) is not None and all(has_rows(cfg, eval_id(name, eval_dataset, eval_size)) for name in evals)


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
    outcomes, todo = split_cached(configs, evals, eval_dataset, eval_size)
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
        if finished(cfg) is None:
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
