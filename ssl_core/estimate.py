"""What a run costs on this device, measured before it runs: seconds per training step (observed in finished runs of
its shape, else timed), and seconds of the frozen-encoder evaluations a notebook does after training (`Evaluation`),
for grid.plan's estimate."""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from ssl_core import store
from ssl_core.checks import at_least, choose
from ssl_core.config import RunConfig
from ssl_core.data import cache_dir, load_dataset
from ssl_core.evaluate import EVALS
from ssl_core.evaluate.features import extract_features
from ssl_core.io import read_json, save_atomic, write_json
from ssl_core.methods import METHODS
from ssl_core.runs import cpu_model
from ssl_core.stack import stack_models
from ssl_core.train import make_optimizer, resolve_device, resolve_precision, stacked_losses

SAMPLE = 256        # test images an evaluation is timed on, and its smaller train sample
FIT_SAMPLE = 1024   # its larger train sample: a probe's fit is timed on both and extrapolated along their line


@dataclass(frozen=True)
class Evaluation:
    """The frozen-encoder work a notebook does on each run of `configs` after training, as plan() counts it:
    the evaluations `names` (keys of EVALS) on `dataset` (None: each run's pretraining set), with a train split
    of `train` images (0: its default size) and the first `test` images of its test split (0: all), and `copies`
    more sets of that many images embedded (corrupted copies, background splits). With no names, only the
    test-sized sets are embedded (a representation's statistics)."""
    configs: tuple[RunConfig, ...]
    names: tuple[str, ...] = ("knn", "linear")
    dataset: str | None = None
    train: int = 0
    test: int = 0
    copies: int = 0

    def __post_init__(self):
        for name in self.names:
            choose("evaluation", name, EVALS)
        for field in ("train", "test", "copies"):
            at_least(field, getattr(self, field), 0)
        object.__setattr__(self, "configs", tuple(self.configs))


def step_shape(cfg: RunConfig, threads: int, mode: str = "alone") -> tuple:
    """What a training step's cost depends on: method, encoder, width, batch, image size, device, precision,
    CPU threads, CPU model, and whether the run trains alone or "stacked" (ssl_core.stack)."""
    device = resolve_device(cfg.device)
    return (cfg.method, cfg.encoder, cfg.width, cfg.batch_size, cfg.image_size, device.type,
            resolve_precision(cfg.precision, device), threads, cpu_model(), mode)


def observed_step_seconds() -> dict[tuple, float]:
    """Median seconds per step of the finished runs in the results store and the cache, by step_shape (read
    once, for a whole plan). Whole runs, so per-epoch checkpoints and runs training beside them are counted,
    which two steps timed on an idle machine miss (claim 4's evidence took ~1.8x that estimate)."""
    seconds: dict[tuple, list[float]] = {}
    for path in [*store.store_dir().glob("*.json"), *(cache_dir() / "runs").glob("*/run.json")]:
        entry = read_json(path)                          # a store entry {config, record, rows}, or a run.json
        if not isinstance(entry, dict):
            continue
        record = entry.get("record", entry)
        c = entry.get("config") or record.get("config")
        if not c or not record.get("steps") or record.get("stages"):
            continue
        shape = (c["method"], c["encoder"], c["width"], c["batch_size"], c["image_size"],
                 record["device"].split(":")[0], record["precision"], record.get("threads"), record.get("cpu"),
                 record.get("mode", "alone"))
        seconds.setdefault(shape, []).append(record["train_seconds"] / record["steps"])
    return {shape: statistics.median(values) for shape, values in seconds.items()}


def measure_step_seconds(cfg: RunConfig, steps: int = 2, threads: int | None = None, stack: int = 1) -> float:
    """Seconds per training step of `cfg` on its device (with `threads` CPU threads; default: this process's),
    timed on random data after one warm-up step; with `stack` > 1, each run's share of a step of that many runs
    stacked (ssl_core.stack)."""
    with _threads(threads):
        return _timed_steps(cfg, steps, stack)[1] / stack


def measure_worker_start_seconds() -> float:
    """Seconds a grid's worker process takes to start: a fresh interpreter importing ssl_core.backends (torch,
    torchvision, timm, pandas), timed once per CPU model and interpreter and kept in the cache. run_grid pays it
    once per pool (backends.worker_pool); on the smoke preset it is a fifth of a notebook's wait (7 s of 35)."""
    path = cache_dir() / "estimates" / "worker_start.json"
    key = f"{cpu_model()} {sys.executable}"
    known = read_json(path) or {}
    if key not in known:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import ssl_core.backends"], check=True)
        known[key] = time.perf_counter() - start
        write_json(known, path)
    return known[key]


def measure_setup_seconds(cfg: RunConfig, threads: int | None = None) -> float:
    """Seconds a run of `cfg` costs besides its steps (with `threads` CPU threads): building its model and optimiser,
    its first step's extra time (allocations, optimiser state), and writing its checkpoint and model. For runs of a
    few steps (the smoke preset's) this is as long as the steps themselves."""
    with _threads(threads), tempfile.TemporaryDirectory() as folder:
        setup, step, net, optimizer = _timed_steps(cfg, 1, 1)
        start = time.perf_counter()
        save_atomic({"model": net.state_dict(), "optimizer": optimizer.state_dict()}, Path(folder) / "checkpoint.pt")
        save_atomic(net.state_dict(), Path(folder) / "model.pt")
        return max(0.0, setup - step) + time.perf_counter() - start


def measure_eval_seconds(cfg: RunConfig, evaluation: Evaluation, threads: int | None = None) -> float:
    """Seconds of `evaluation` on one run of `cfg`'s encoder (with `threads` CPU threads): building the model
    (once per evaluation of a run), then the embedding and the evaluations, timed with a randomly initialised
    encoder and scaled to the full sizes. Embedding: per image. The evaluations' fit: timed on SAMPLE and
    FIT_SAMPLE train images (each spread evenly, so a sorted split shows every class) and extrapolated along the
    line through the two, t(n) = t1 + (n - n1) (t2 - t1) / (n2 - n1): the linear probe's L-BFGS over its L2 grid
    has a fixed part, which scaling in proportion to the train images inflated 2.5x (smoke preset, 5,000 images)."""
    dataset = evaluation.dataset or cfg.dataset
    train = load_dataset(dataset, "train", image_size=cfg.image_size, size=evaluation.train)
    test = load_dataset(dataset, "test", image_size=cfg.image_size)
    n_test = min(evaluation.test or len(test), len(test))
    sizes = sorted({min(SAMPLE, len(train)), min(FIT_SAMPLE, len(train))})
    big = train.subset(torch.linspace(0, len(train) - 1, sizes[-1]).long())
    sample_test = test.subset(torch.arange(min(SAMPLE, n_test)))
    device = resolve_device(cfg.device)
    with _threads(threads):
        torch.manual_seed(0)
        start = time.perf_counter()
        encoder = METHODS[cfg.method](cfg, train.num_classes).encoder.to(device)
        build = time.perf_counter() - start
        start = time.perf_counter()
        big_z = extract_features(encoder, big.images, device)
        test_z = extract_features(encoder, sample_test.images, device)
        embed = (time.perf_counter() - start) / (len(big) + len(sample_test))
        fits = []
        for size in sizes if evaluation.names else []:
            index = torch.linspace(0, len(big) - 1, size).long()
            sample_train = big.subset(index)
            cache = {id(sample_train): (sample_train, big_z[index]), id(sample_test): (sample_test, test_z)}
            start = time.perf_counter()
            for name in evaluation.names:
                EVALS[name](encoder, sample_train, sample_test, device, cache=cache)
            fits.append(time.perf_counter() - start)
    fit = 0.0
    if fits:   # a noisy pair that falls is read as flat: never below the larger sample's time
        slope = max(fits[-1] - fits[0], 0.0) / (sizes[-1] - sizes[0]) if len(sizes) > 1 else 0.0
        fit = fits[-1] + slope * (len(train) - sizes[-1])
    embedded = (len(train) if evaluation.names else 0) + (1 + evaluation.copies) * n_test
    return build + embed * embedded + fit


@contextmanager
def _threads(threads: int | None):
    """Run a block with `threads` CPU threads (None: as it is), then restore the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _timed_steps(cfg: RunConfig, steps: int, stack: int) -> tuple[float, float, torch.nn.Module, torch.optim.Optimizer]:
    """Train `stack` models of `cfg` stacked (1: alone) on random data: the seconds of building them and their
    first step, the seconds of each of the `steps` steps after it, and the network and optimiser."""
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    torch.manual_seed(0)
    start = time.perf_counter()
    models = [METHODS[cfg.method](cfg, 10).to(device, memory_format=torch.channels_last).train()
              for _ in range(stack)]
    net = stack_models(models).train() if stack > 1 else models[0]
    optimizer = make_optimizer(cfg, net)
    x = torch.randint(0, 256, (cfg.batch_size, 3, cfg.image_size, cfg.image_size), dtype=torch.uint8, device=device)
    y = torch.zeros(cfg.batch_size, dtype=torch.long, device=device)   # class (DnC: cluster) 0 suits every method
    gs = [torch.Generator(device=device).manual_seed(i) for i in range(stack)]
    for i in range(steps + 1):
        if i == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = stacked_losses(net, models, [(x, y)] * stack, gs).sum() if stack > 1 else net(x, y, gs[0])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return t0 - start, (time.perf_counter() - t0) / steps, net, optimizer
