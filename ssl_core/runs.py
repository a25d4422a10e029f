"""run_or_load(cfg): pretraining runs and their evaluations, from the results store, the cache, or computed.

A run is looked up first in the committed results store (ssl_core.store: records and rows; weights only
while `make evidence` runs), then in the content-addressed cache:

    <cache>/runs/<cfg.key()>/config.json        the full config, written before training
                             checkpoint.pt      the resumable training state (removed when done)
                             model.pt           the pretrained method's weights (encoder and heads)
                             run.json           provenance + training record, incl. model.pt's sha256
                             evals/<eval>@<dataset>.json   tidy rows of one evaluation, with the
                                                digest of the weights they were computed from

Every file is written atomically (temporary file + rename). An entry whose JSON does not parse,
whose model.pt does not match the recorded digest, or whose rows came from other weights, is treated
as missing and recomputed. A run that diverges raises `Diverged` and leaves no run.json behind.
"""
from __future__ import annotations

import dataclasses
import hashlib
import platform
import time
import warnings
from contextlib import ExitStack
from functools import lru_cache
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from torch import nn

import ssl_core
from ssl_core import store
from ssl_core.config import RunConfig
from ssl_core.data import cache_dir, load_dataset
from ssl_core.data.render import VERSION as WORLD_VERSION
from ssl_core.evaluate import EVALS
from ssl_core.io import copy_atomic, locked, read_json, save_atomic, write_json
from ssl_core.methods import METHODS
from ssl_core.preflight import check_evals, check_resources, valid
from ssl_core.train import Diverged, TrainResult, resolve_device, train_group

RUN_COLUMNS = ("method", "dataset", "encoder", "width", "epochs", "batch_size", "lr", "temperature", "seed")


def run_dir(cfg: RunConfig) -> Path:
    return cache_dir() / "runs" / cfg.key()


def eval_id(name: str, eval_dataset: str, eval_size: int = 0, test_size: int = 0) -> str:
    """The name of the rows of evaluation `name` on `eval_dataset` (train split of `eval_size` images,
    0 = its default; the first `test_size` test images, 0 = all, which needs an `eval_size`), in the cache and
    the store."""
    size = f"-{eval_size}" if eval_size else ""
    test = f"-{test_size}" if test_size else ""
    return f"{name}@{eval_dataset.replace('/', '_')}{size}{test}"


def eval_path(cfg: RunConfig, eval_name: str) -> Path:
    """Where the rows `eval_name` (an `eval_id`) of run `cfg` are cached."""
    return run_dir(cfg) / "evals" / f"{eval_name}.json"


@lru_cache(maxsize=1)
def source_digest() -> str:
    """sha256 over the package's source files: which code produced a result."""
    h = hashlib.sha256()
    root = Path(ssl_core.__file__).parent
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's kind as a run's record names it: its model name, family and model numbers (/proc/cpuinfo) and the
    instruction set torch's kernels use, e.g. "AMD EPYC (family 25 model 1, AVX2)". A virtual machine may show only
    "AMD EPYC", and two machines showing that name trained the same run to other weights."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    known = "cpu family" in fields and "model" in fields
    family = f"family {fields['cpu family']} model {fields['model']}, " if known else ""
    return f"{name} ({family}{torch.backends.cpu.get_cpu_capability()})"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_record(cfg: RunConfig) -> dict | None:
    """run.json of a finished run, if it and the encoder weights it points to are intact."""
    d = run_dir(cfg)
    record = read_json(d / "run.json") or _restore(cfg)
    if record is None:
        return None
    weights = d / "model.pt"
    if not weights.exists() or file_sha256(weights) != record.get("model_sha256"):
        warnings.warn(f"weights of run {cfg.key()} are missing or damaged; the run will be recomputed")
        (d / "run.json").unlink()
        return None
    if record.get("world_version") != WORLD_VERSION:
        warnings.warn(f"run {cfg.key()} was trained on the embedded world of version {record.get('world_version')} "
                      f"(now {WORLD_VERSION}); the run will be recomputed")
        (d / "run.json").unlink()
        return None
    if record.get("source_digest") not in (None, source_digest()):
        # The key is the config, not the code: say so (once per process and old digest), and reuse.
        warnings.warn(f"reusing cached runs trained by other ssl_core source (digest {record['source_digest']}, "
                      f"now {source_digest()}); delete them, or point SSL_CORE_CACHE elsewhere, to retrain")
    return record


def _restore(cfg: RunConfig) -> dict | None:
    """model.pt and run.json of a stored run into the cache from the weights the store keeps for it
    (store.keep_weights), if their digest is the stored record's; else None."""
    record, weights = store.stored_record(cfg), store.kept_weights(cfg)
    if record is None or weights is None or file_sha256(weights) != record["model_sha256"]:
        return None
    copy_atomic(weights, run_dir(cfg) / "model.pt")
    record = dict(record, config=dataclasses.asdict(cfg))
    write_json(record, run_dir(cfg) / "run.json")
    return record


def finished(cfg: RunConfig) -> dict | None:
    """The record of run `cfg` if it is stored or cached (intact), else None."""
    return store.stored_record(cfg) or read_record(cfg)


def pretrain(cfg: RunConfig, progress: bool = True) -> dict:
    """Train `cfg` unless a finished, intact run is cached; return its run.json record (stored too,
    when the store is writable). One process trains a run at a time: another that needs the same run
    (a second notebook on the cache) waits for it, then loads it."""
    (record,) = pretrain_group([cfg], progress)
    if isinstance(record, Diverged):
        raise record
    return record


def pretrain_group(cfgs: list[RunConfig], progress: bool = True) -> list[dict | Diverged]:
    """pretrain() of runs of one shape (configs equal but for the seed): those not cached train together
    (ssl_core.train.train_group: stacked when several). A run that diverged comes back as its Diverged."""
    for cfg in cfgs:
        valid("cfg", cfg)
    records: dict[RunConfig, dict | Diverged | None] = {cfg: read_record(cfg) for cfg in cfgs}
    todo = [cfg for cfg in cfgs if records[cfg] is None]
    if todo:
        check_resources(todo)                           # a refused run leaves nothing in the cache
        with ExitStack() as held:
            for cfg in sorted(todo, key=RunConfig.key):  # one order for every process: no deadlock
                held.enter_context(locked(cache_dir() / "locks" / f"{cfg.key()}.lock"))
            records.update({cfg: read_record(cfg) for cfg in todo})   # finished by another process meanwhile
            todo = [cfg for cfg in todo if records[cfg] is None]
            for cfg in todo:
                write_json(dataclasses.asdict(cfg), run_dir(cfg) / "config.json")
            results = train_group(todo, [run_dir(cfg) for cfg in todo], progress=progress) if todo else []
            for cfg, result in zip(todo, results):
                records[cfg] = result if isinstance(result, Diverged) else _record(cfg, result)
    for cfg, record in records.items():
        if not isinstance(record, Diverged):
            store.add(cfg, record)
    return [records[cfg] for cfg in cfgs]


def _record(cfg: RunConfig, result: TrainResult) -> dict:
    """Save a finished run's weights and its run.json record (provenance), and drop its checkpoint."""
    d = run_dir(cfg)
    save_atomic(result.model.state_dict(), d / "model.pt")
    store.keep_weights(cfg, d / "model.pt")
    record = {
        "config": dataclasses.asdict(cfg), "key": cfg.key(), "steps": result.steps,
        "losses": result.losses, "train_seconds": result.seconds, "device": result.device,
        "precision": result.precision, "mode": result.mode, "num_classes": result.num_classes,
        "stages": getattr(result.model, "stages", None),   # DnC: epochs, steps, seconds of each stage
        "model_sha256": file_sha256(d / "model.pt"),
        "ssl_core_version": ssl_core.__version__, "source_digest": source_digest(),
        "world_version": WORLD_VERSION, "torch_version": torch.__version__, "threads": torch.get_num_threads(),
        "cpu": cpu_model(), "host": platform.node(), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json(record, d / "run.json")
    (d / "checkpoint.pt").unlink(missing_ok=True)
    return record


def _rows_of_weights(cached, record: dict | None) -> list[dict] | None:
    """The rows of a cached evaluation file if they were computed from the weights `record` names."""
    if record is None or not isinstance(cached, dict) or cached.get("model_sha256") != record["model_sha256"]:
        return None
    return cached["rows"]


def has_rows(cfg: RunConfig, eval_name: str) -> bool:
    """Whether the rows `eval_name` of run `cfg` are stored, or cached from its current weights."""
    return store.stored_rows(cfg, eval_name) is not None or \
        _rows_of_weights(read_json(eval_path(cfg, eval_name)), read_record(cfg)) is not None


def cached_rows(cfg: RunConfig, eval_name: str, compute: Callable[[], list[dict]]) -> list[dict]:
    """The rows `eval_name` of run `cfg`: from the store, else from the cache (if computed from the weights
    the run has now), else `compute()` (which may load the weights: the run is trained if need be), then
    cached and, when the store is writable, stored."""
    rows = store.stored_rows(cfg, eval_name)
    if rows is not None:
        return rows
    record = pretrain(cfg, progress=False)
    path = eval_path(cfg, eval_name)
    rows = _rows_of_weights(read_json(path), record)
    if rows is None:
        rows = [dict(row, threads=torch.get_num_threads()) for row in compute()]   # the audit evaluates alike
        write_json({"model_sha256": record["model_sha256"], "rows": rows}, path)
    store.add(cfg, record, eval_name, rows)
    return rows


def load_model(cfg: RunConfig, device: torch.device | None = None) -> nn.Module:
    """The pretrained method of `cfg` (encoder and heads; trained now if not cached), in eval mode."""
    record = pretrain(cfg)
    model = METHODS[cfg.method](cfg, record["num_classes"])
    model.load_state_dict(torch.load(run_dir(cfg) / "model.pt", map_location="cpu", weights_only=True))
    return model.to(device or resolve_device(cfg.device)).eval()


def load_encoder(cfg: RunConfig, device: torch.device | None = None) -> nn.Module:
    """The pretrained encoder of `cfg`: the part that transfers."""
    return load_model(cfg, device).encoder


def run_or_load(cfg: RunConfig, evals: tuple[str, ...] = ("knn", "linear"), eval_dataset: str | None = None,
                progress: bool = True, eval_size: int = 0) -> pd.DataFrame:
    """Pretrain (or load) `cfg`, then run each evaluation in `evals` on `eval_dataset` (default: the
    pretraining dataset's train/test splits; `eval_size` > 0 takes that many train images, the
    test split stays whole). Returns tidy rows: one metric value per row, with the run's config
    columns, its training steps and wall time."""
    valid("cfg", cfg)
    check_evals(evals, eval_dataset, eval_size)
    eval_dataset = eval_dataset or cfg.dataset
    stored = store.entry(cfg)                           # every row stored: no weights, no training
    names = [eval_id(name, eval_dataset, eval_size) for name in evals]
    record = stored["record"] if stored and all(n in stored["rows"] for n in names) else pretrain(cfg, progress)
    device = resolve_device(cfg.device)
    shared: dict = {}                                   # encoder, data and features shared by the evaluations

    def compute(name: str) -> list[dict]:
        if "encoder" not in shared:
            shared["encoder"] = load_encoder(cfg, device)
            shared["sets"] = [load_dataset(eval_dataset, split, image_size=cfg.image_size, size=eval_size)
                              for split in ("train", "test")]
        t0 = time.perf_counter()
        rows = EVALS[name](shared["encoder"], *shared["sets"], device, cache=shared.setdefault("features", {}))
        return [dict(row, eval_seconds=time.perf_counter() - t0) for row in rows]

    rows = []
    for name in evals:
        rows += cached_rows(cfg, eval_id(name, eval_dataset, eval_size), lambda name=name: compute(name))
    df = pd.DataFrame(rows)
    for col in RUN_COLUMNS:
        df[col] = getattr(cfg, col)
    df["eval_dataset"], df["steps"], df["train_seconds"], df["key"] = (
        eval_dataset, record["steps"], record["train_seconds"], record["key"])
    return df
