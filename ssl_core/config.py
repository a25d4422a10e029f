"""RunConfig: everything that defines one pretraining run, in one flat, frozen, typed dataclass.

A config checks itself alone (`validate()`: types, ranges, fixed sets; ssl_core.preflight checks its names
against the registries and what its run needs on this machine), and its `key()` is a stable content
hash used by the run cache and the committed results store. Fields that only say *where* or *how*
a run executes (`device`, `compile`) are left out of the key: the result of a run is a property of
the recipe, and its provenance records where it was computed. Fields at their default value are
left out too, so adding a field (with a default that reproduces the old behaviour) keeps every
existing key; for the same reason a field's default is never changed (tests/test_config.py pins them).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import typing
from dataclasses import dataclass

from ssl_core.checks import choose, positive, typed, within

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
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            typed(f.name, getattr(self, f.name), hints[f.name])
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
        return self


def steps_per_epoch(cfg: RunConfig, n_images: int) -> int:
    if cfg.batch_size > n_images:
        raise ValueError(f"batch_size={cfg.batch_size} is not allowed: the pretraining set has only {n_images} images")
    return n_images // cfg.batch_size     # drop the last partial batch

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
