"""What is checked before any compute, above the registries: a config's names (method, dataset, encoder, DnC's
options) against the registries that own them, the arguments of an evaluation, and the resources a run needs
on this machine. RunConfig.validate() checks what a config can check alone (types, ranges, fixed sets)."""
from __future__ import annotations

import functools
import os
import warnings
from typing import Callable

import psutil
import torch

from ssl_core.checks import choose, choose_each, typed, within
from ssl_core.config import RANGES, RunConfig, steps_per_epoch
from ssl_core.data import DATASETS, load_dataset
from ssl_core.evaluate import EVALS
from ssl_core.losses import DISTILL_TARGETS
from ssl_core.methods import METHODS
from ssl_core.methods.dnc import DNC_BASES, DNC_EXPERT_DATA, DNC_PARTITIONS, DNC_SCHEDULES, check_clusters
from ssl_core.models import ENCODERS
from ssl_core.train import resolve_device

# The registry each name-valued RunConfig field must be a key (or element) of.
REGISTRIES = {"method": METHODS, "dataset": DATASETS, "encoder": ENCODERS, "dnc_base": DNC_BASES,
              "dnc_schedule": DNC_SCHEDULES, "dnc_partition": DNC_PARTITIONS, "dnc_expert_data": DNC_EXPERT_DATA,
              "dnc_targets": DISTILL_TARGETS}

def valid(name: str, cfg) -> RunConfig:
    """`cfg` validated (RunConfig.validate, then its names against REGISTRIES), if it is a RunConfig; else raise
    naming the parameter."""
    if not isinstance(cfg, RunConfig):
        raise ValueError(f"{name}={cfg!r} has the wrong type: expected a RunConfig")
    cfg.validate()
    for field, registry in REGISTRIES.items():
        choose(field, getattr(cfg, field), registry)
    return cfg


def valid_list(name: str, configs) -> list[RunConfig]:
    """`configs`, if it is a list or tuple of RunConfig, each validated; else raise naming the parameter."""
    if not isinstance(configs, (list, tuple)):
        raise ValueError(f"{name}={configs!r} has the wrong type: expected a list of RunConfig")
    return [valid(f"{name}[{i}]", cfg) for i, cfg in enumerate(configs)]


def check_evals(evals, eval_dataset, eval_size) -> None:
    """Raise unless `evals` is a list or tuple of evaluation names (ssl_core.evaluate.EVALS), `eval_dataset`
    None or a dataset name and `eval_size` a number of images."""
    choose_each("evals", evals, EVALS)
    if eval_dataset is not None:
        choose("eval_dataset", eval_dataset, DATASETS)
    within("eval_size", typed("eval_size", eval_size, int), *RANGES["dataset_size"])


# --- resources: what a run needs, checked before any compute -------------------------------------------------

def check_resources(configs: list[RunConfig], finished: Callable[[RunConfig], object] = lambda cfg: None) -> None:
    """Refuse, before any compute, a run this machine cannot train: one whose rough memory need (memory_need)
    is more than its device has, a batch larger than its pretraining set, or (DnC) more clusters than the set
    can fill. Runs for which `finished(cfg)` is not None are read, not trained, and are not checked."""
    todo = [cfg for cfg in dict.fromkeys(configs) if finished(cfg) is None]
    for cfg in todo:
        parts, (have, where) = memory_need(cfg), device_memory(cfg.device)
        need = sum(size for _, size in parts.values())
        if need > have:   # named: the parameters of the parts that hold a quarter of the need or more
            largest = sorted(parts.values(), key=lambda part: -part[1])
            knobs = ", ".join(f"{knob}={getattr(cfg, knob)!r}" for knob, size in largest if size >= need / 4)
            detail = ", ".join(f"{what} ~{gb(size)} GB" for what, (_, size) in parts.items() if size)
            raise ValueError(f"{knobs}: the run would need ~{gb(need)} GB, {where} has {gb(have)} GB "
                             f"({cfg.method} on {cfg.encoder}: {detail})")
    sizes: dict[tuple, int] = {}                                   # images per pretraining set, read once
    for cfg in todo:
        source = (cfg.dataset, cfg.image_size, cfg.dataset_size)
        if source not in sizes:
            sizes[source] = len(load_dataset(cfg.dataset, "train", image_size=cfg.image_size, size=cfg.dataset_size))
        steps_per_epoch(cfg, sizes[source])                         # refuses a batch larger than the set
        if cfg.method == "dnc":
            check_clusters(cfg, sizes[source])


def memory_need(cfg: RunConfig) -> dict[str, tuple[str, float]]:
    """Rough bytes a training run of `cfg` holds at once, as {part: (the parameter that sets it, bytes)}: the
    model's fp32 weights, gradients and two AdamW moments; the encoder's activations on a batch of views; the
    `dataset_size` pretraining images on the device (none counted for 0, the dataset's default)."""
    params, trainable, per_image = model_size(cfg.replace(seed=0, epochs=0.0, batch_size=2, lr=1e-3,
                                                          temperature=0.1))   # one build per model shape
    return {"weights, gradients and AdamW state": ("encoder" if cfg.encoder.startswith("vit") else "width",
                                                   4.0 * params + 12.0 * trainable),
            "activations of a batch": ("batch_size", 4.0 * cfg.batch_size * (2 + cfg.dino_local_crops) * per_image),
            "images": ("dataset_size", 3.0 * cfg.image_size ** 2 * cfg.dataset_size)}


@functools.lru_cache(maxsize=64)
def model_size(cfg: RunConfig) -> tuple[int, int, int]:
    """(parameters, trainable parameters, elements the encoder's layers output per image) of `cfg`'s model,
    built and run on the meta device: nothing is allocated or computed. An output that is the layer's input
    (Identity, Dropout(0), in-place ReLU) holds nothing new. Within ~10% of the measured activations of a
    ResNet-18 and a ViT-Tiny (batch 64, fp32 CPU)."""
    outputs = []
    with torch.device("meta"):
        model = METHODS[cfg.method](cfg, 1000)
        for layer in model.encoder.modules():
            if not any(layer.children()):
                layer.register_forward_hook(lambda layer, inputs, out: outputs.append(
                    0 if out is inputs[0] else out.numel()))
        model.encoder(torch.empty(1, 3, cfg.image_size, cfg.image_size))
    return (sum(p.numel() for p in model.parameters()), sum(p.numel() for p in model.parameters() if p.requires_grad),
            sum(outputs))


def device_memory(device: str) -> tuple[int, str]:
    """(bytes, its words) of the memory a run on `device` trains in: its CUDA GPU's own, else this machine's."""
    d = resolve_device(device)
    if d.type == "cuda":
        if not torch.cuda.is_available() or (d.index or 0) >= torch.cuda.device_count():
            raise ValueError(f"device={device!r} is not allowed: this machine has {torch.cuda.device_count()} "
                             f"CUDA GPU(s)")
        return torch.cuda.get_device_properties(d).total_memory, "this GPU"
    return psutil.virtual_memory().total, "this machine"


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def warn_if_busy(sample_seconds: float = 0.2) -> None:
    """Warn when other work already keeps half of this machine's cores busy: the plan's estimates assume idle
    cores, and a run sharing its cores is slower than their share, several threads per run many times slower
    (their OpenMP barriers spin: a 2-thread feature extraction beside two busy processes on 2 cores took 17x its
    time alone)."""
    cores = usable_cores()
    busy = psutil.cpu_percent(interval=sample_seconds) / 100 * (os.cpu_count() or cores)
    if busy >= cores / 2:
        warnings.warn(f"other work keeps {busy:.1f} of this machine's {cores} cores busy: runs will take longer "
                      f"than planned, those of several threads many times longer; let it finish first",
                      stacklevel=2)


def gb(size: float) -> str:
    """`size` bytes in GB, to two significant figures or whole GB."""
    return f"{size / 1e9:,.0f}" if size >= 1e10 else f"{size / 1e9:.2g}"
