"""RunConfig: everything that defines one pretraining run, in one flat, frozen, typed dataclass.

A config is validated before any compute (`validate()`; `check_resources()` then compares what its run
needs with this machine and its pretraining set), and its `key()` is a stable content
hash used by the run cache and the committed results store. Fields that only say *where* or *how*
a run executes (`device`, `compile`) are left out of the key: the result of a run is a property of
the recipe, and its provenance records where it was computed. Fields at their default value are
left out too, so adding a field (with a default that reproduces the old behaviour) keeps every
existing key; for the same reason a field's default is never changed (tests/test_config.py pins them).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
import typing
from dataclasses import dataclass
from typing import Callable

PRECISIONS = ("auto", "fp32", "bf16")
OPTIMIZERS = ("adamw", "sgd")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


@dataclass(frozen=True)
class RunConfig:
    # --- what is trained -------------------------------------------------------------------
    method: str = "simclr"            # a name in ssl_core.methods.METHODS
    dataset: str = "curated"          # a name in ssl_core.data.DATASETS (its train split is used)
    dataset_size: int = 0             # images in the pretraining set; 0 = the dataset's default
    image_size: int = 32              # pixels (square)
    encoder: str = "resnet18"         # a name in ssl_core.models.ENCODERS
    width: int = 16                   # channels of the first stage (64 = the standard ResNet-18)
    # --- budget and optimisation -----------------------------------------------------------
    epochs: float = 10.0              # pretraining budget, in passes over the pretraining set
    batch_size: int = 256             # images per step (before views)
    optimizer: str = "adamw"          # one of OPTIMIZERS
    lr: float = 1e-3                  # peak learning rate, reached after warmup
    weight_decay: float = 1e-4        # decoupled (AdamW) or L2 (SGD)
    warmup_epochs: float = 1.0        # linear warmup, then cosine decay to 0 (capped at 10% of the run)
    # --- method recipe ---------------------------------------------------------------------
    temperature: float = 0.1          # contrastive softmax temperature t
    sigma: float = 0.5                # DCLW weighting temperature
    proj_hidden: int = 512            # projector hidden width
    proj_dim: int = 128               # projector output width
    crop_min_scale: float = 0.2       # random resized crop: smallest area fraction
    jitter: float = 0.4               # colour jitter strength (brightness, contrast, saturation)
    gray_p: float = 0.2               # probability of turning a jittered view grey
    hue: float = 0.05                 # hue jitter (small: colour is part of the world's classes)
    ema_momentum: float = 0.99        # EMA target/teacher momentum at step 0, cosine to 1 at the end
                                      #   (moclr, byol, dino); papers 0.996 over ~100k+ steps, 0.99 for our hundreds
    dino_out_dim: int = 2048          # DINO head output width K, in prototypes (paper 65536)
    dino_student_temperature: float = 0.1   # DINO student softmax temperature tau_s (paper 0.1)
    dino_teacher_temperature: float = 0.04  # DINO teacher softmax temperature tau_t, sharpening (paper 0.04)
    dino_center_momentum: float = 0.9       # DINO centre EMA momentum, per step (paper 0.9)
    dino_local_crops: int = 0         # DINO local crops per image, at half the image side (paper 8 at 96/224 px;
                                      #   none at 32 px: 16-px crops cost kNN accuracy, see methods/dino.py)
    dino_crop_split: float = 0.4      # DINO area fraction: locals in [0.05, split], globals in [split, 1] (paper 0.4)
    mae_mask_ratio: float = 0.75      # MAE fraction of patches hidden from the encoder (paper 0.75)
    mae_decoder_dim: int = 128        # MAE decoder width, in channels (paper 512)
    mae_decoder_depth: int = 2        # MAE decoder transformer blocks (paper 8)
    clip_text_dim: int = 128          # CLIP text transformer width, in channels
    clip_text_depth: int = 2          # CLIP text transformer blocks
    clip_temperature: float = 0.07    # CLIP softmax temperature at step 0, then learnt (paper 0.07)
    dnc_base: str = "moclr"           # DnC: method of the base model and of the experts, one of DNC_BASES
    dnc_clusters: int = 5             # DnC: K, clusters = experts (paper 5)
    dnc_schedule: str = "1k"          # DnC: epoch split base/experts/distillation, a key of DNC_SCHEDULES
    dnc_partition: str = "kmeans"     # DnC: how images are split into clusters, one of DNC_PARTITIONS
    dnc_expert_data: str = "cluster"  # DnC: each expert trains on its cluster or the full data, one of DNC_EXPERT_DATA
    dnc_targets: str = "both"         # DnC: what the student distils, one of ssl_core.losses.DISTILL_TARGETS
    # --- execution -------------------------------------------------------------------------
    seed: int = 0
    device: str = "auto"              # auto | cpu | cuda[:i] | mps
    precision: str = "auto"           # auto = bf16 autocast where the hardware has it, else fp32
    compile: bool = False             # torch.compile the method's step: bench/compile_payoff.py says when it pays
    sync_bn: bool = True              # under torchrun: BatchNorm over the global batch, as in one process (GPUs)

    def key(self) -> str:
        """Stable 16-hex-digit hash of the fields that change the result and differ from their defaults."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name not in ("device", "compile") and getattr(self, f.name) != f.default}
        blob = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def validate(self) -> "RunConfig":
        """Raise ValueError naming the parameter, its bad value and what is allowed: a wrong type, a float that
        is not finite, a value outside its range (RANGES: upper bounds keep a typo from allocating what no
        machine has) or outside its set."""
        from ssl_core.data import DATASETS
        from ssl_core.losses import DISTILL_TARGETS
        from ssl_core.methods import METHODS
        from ssl_core.methods.dnc import DNC_BASES, DNC_EXPERT_DATA, DNC_PARTITIONS, DNC_SCHEDULES
        from ssl_core.models import ENCODERS

        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            typed(f.name, getattr(self, f.name), hints[f.name])
        choose("method", self.method, METHODS)
        choose("dataset", self.dataset, DATASETS)
        choose("encoder", self.encoder, ENCODERS)
        choose("optimizer", self.optimizer, OPTIMIZERS)
        choose("precision", self.precision, PRECISIONS)
        if not _DEVICE.match(self.device):
            raise ValueError(f"device={self.device!r} is not allowed: use auto, cpu, cuda, cuda:N or mps")
        for name, (low, high) in RANGES.items():
            within(name, getattr(self, name), low, high)
        for name in ("lr", "temperature", "sigma", "dino_student_temperature", "dino_teacher_temperature",
                     "clip_temperature"):
            positive(name, getattr(self, name))
        if not 0 < self.crop_min_scale <= 1:
            raise ValueError(f"crop_min_scale={self.crop_min_scale!r} is not allowed: must be in (0, 1]")
        if not 0 <= self.gray_p <= 1:
            raise ValueError(f"gray_p={self.gray_p!r} is not allowed: must be in [0, 1]")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue={self.hue!r} is not allowed: must be in [0, 0.5]")
        for name in ("ema_momentum", "dino_crop_split", "mae_mask_ratio"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed: must be in (0, 1)")
        if not 0 <= self.dino_center_momentum < 1:
            raise ValueError(f"dino_center_momentum={self.dino_center_momentum!r} is not allowed: must be in [0, 1)")
        for name in ("mae_decoder_dim", "clip_text_dim"):   # attention heads of 32 channels
            if getattr(self, name) % 32:
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed: must be a multiple of 32")
        choose("dnc_base", self.dnc_base, DNC_BASES)
        choose("dnc_schedule", self.dnc_schedule, DNC_SCHEDULES)
        choose("dnc_partition", self.dnc_partition, DNC_PARTITIONS)
        choose("dnc_expert_data", self.dnc_expert_data, DNC_EXPERT_DATA)
        choose("dnc_targets", self.dnc_targets, DISTILL_TARGETS)
        return self


# Allowed range [low, high] of each numeric field (high None: unbounded). The upper bounds are far beyond any
# recipe here and keep a typo (width=100000) from allocating what no machine has; check_resources() then
# compares a run's rough memory need with this machine's.
RANGES = {
    "dataset_size": (0, 10_000_000), "image_size": (16, 1024),
    "width": (8, 1024),                   # narrower channels_last convs crawl in oneDNN on AVX2 CPUs
    "epochs": (0, 100_000), "batch_size": (2, 65536), "weight_decay": (0, None), "warmup_epochs": (0, 100_000),
    "proj_hidden": (1, 65536), "proj_dim": (1, 65536), "jitter": (0, None), "dino_out_dim": (1, 65536),
    "dino_local_crops": (0, 64), "mae_decoder_dim": (1, 65536), "mae_decoder_depth": (1, 64),
    "clip_text_dim": (1, 65536), "clip_text_depth": (1, 64), "dnc_clusters": (2, 1024), "seed": (0, None),
}
TYPE_WORDS = {str: "a string (str)", int: "an integer (int)", float: "a number (float)", bool: "True or False (bool)"}


def typed(name: str, value, kind: type):
    """`value` if it is a `kind` (str, int, float or bool: a bool is no int, an int is a float and is returned as
    one); else raise naming the parameter. A float must be finite."""
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if not ok:
        raise ValueError(f"{name}={value!r} has the wrong type: expected {TYPE_WORDS[kind]}")
    if kind is float:
        if not math.isfinite(value):
            raise ValueError(f"{name}={value!r} is not allowed: must be a finite number")
        return float(value)
    return value


def valid(name: str, cfg) -> RunConfig:
    """`cfg` validated, if it is a RunConfig; else raise naming the parameter."""
    if not isinstance(cfg, RunConfig):
        raise ValueError(f"{name}={cfg!r} has the wrong type: expected a RunConfig")
    return cfg.validate()


def valid_list(name: str, configs) -> list[RunConfig]:
    """`configs`, if it is a list or tuple of RunConfig, each validated; else raise naming the parameter."""
    if not isinstance(configs, (list, tuple)):
        raise ValueError(f"{name}={configs!r} has the wrong type: expected a list of RunConfig")
    return [valid(f"{name}[{i}]", cfg) for i, cfg in enumerate(configs)]


def choose(name: str, value, allowed) -> None:
    """Raise unless `value` is one of `allowed` (a sequence or a registry dict)."""
    try:
        ok = value in allowed
    except TypeError:   # unhashable: a list or dict where a name was expected
        ok = False
    if not ok:
        raise ValueError(f"{name}={value!r} is not allowed: choose one of {sorted(allowed)}")


def choose_each(name: str, values, allowed) -> None:
    """Raise unless `values` is a list or tuple of elements of `allowed`."""
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"{name}={values!r} has the wrong type: expected a list or tuple of names from "
                         f"{sorted(allowed)}, e.g. {tuple(sorted(allowed)[:1])}")
    for value in values:
        choose(name, value, allowed)


def at_least(name: str, value, low) -> None:
    if not value >= low:
        raise ValueError(f"{name}={value!r} is not allowed: must be >= {low}")


def within(name: str, value, low, high) -> None:
    """Raise unless low <= value <= high (high None: no upper bound)."""
    at_least(name, value, low)
    if high is not None and not value <= high:
        raise ValueError(f"{name}={value!r} is not allowed: must be <= {high}")


def positive(name: str, value) -> None:
    if not value > 0:
        raise ValueError(f"{name}={value!r} is not allowed: must be > 0")


def check_evals(evals, eval_dataset, eval_size) -> None:
    """Raise unless `evals` is a list or tuple of evaluation names (ssl_core.evaluate.EVALS), `eval_dataset`
    None or a dataset name and `eval_size` a number of images."""
    from ssl_core.data import DATASETS
    from ssl_core.evaluate import EVALS
    choose_each("evals", evals, EVALS)
    if eval_dataset is not None:
        choose("eval_dataset", eval_dataset, DATASETS)
    within("eval_size", typed("eval_size", eval_size, int), *RANGES["dataset_size"])


# --- resources: what a run needs, checked before any compute -------------------------------------------------

def check_resources(configs: list[RunConfig], finished: Callable[[RunConfig], object] = lambda cfg: None) -> None:
    """Refuse, before any compute, a run this machine cannot train: one whose rough memory need (memory_need)
    is more than its device has, a batch larger than its pretraining set, or (DnC) more clusters than the set
    can fill. Runs for which `finished(cfg)` is not None are read, not trained, and are not checked."""
    from ssl_core.data import load_dataset
    from ssl_core.methods.dnc import check_clusters
    from ssl_core.train import steps_per_epoch

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
    import torch
    from ssl_core.methods import METHODS

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
    import psutil
    import torch
    from ssl_core.train import resolve_device

    d = resolve_device(device)
    if d.type == "cuda":
        if not torch.cuda.is_available() or (d.index or 0) >= torch.cuda.device_count():
            raise ValueError(f"device={device!r} is not allowed: this machine has {torch.cuda.device_count()} "
                             f"CUDA GPU(s)")
        return torch.cuda.get_device_properties(d).total_memory, "this GPU"
    return psutil.virtual_memory().total, "this machine"


def gb(size: float) -> str:
    """`size` bytes in GB, to two significant figures or whole GB."""
    return f"{size / 1e9:,.0f}" if size >= 1e10 else f"{size / 1e9:.2g}"
