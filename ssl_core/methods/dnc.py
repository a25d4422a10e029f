"""Divide and Contrast (Tian, Henaff & van den Oord 2021): a base model, K cluster experts, one student.

The budget `cfg.epochs` = N1 + N2 + N3 is split in the paper's proportions (DNC_SCHEDULES;
the 1k schedule 200 / 600 / 200 gives 20% / 60% / 20%):
1. base: a `cfg.dnc_base` model (MoCLR) on all images for N1 epochs.            -> workdir/base/
2. divide: k-means with cosine distance (sklearn KMeans on l2-normalised features) on the base
   projector's hidden layer, over the un-augmented images, into K = dnc_clusters clusters.
                                                                                -> workdir/clusters.pt
3. experts: one `cfg.dnc_base` model per cluster, from scratch, N2 epochs over its own cluster,
   so its batches hold only hard, same-cluster negatives and the K experts together cost N2
   epochs of the full data (compute in proportion to cluster size).          -> workdir/expert<k>/
4. distil: this module is the student. The trainer's loop trains it for N3 epochs: one view, two
   heads regress the l2-normalised projections of the base and of the image's cluster expert
   (ssl_core.losses.dnc_distill).
Stages 1-3 run in `prepare`, which the trainer calls before its loop; each is an ordinary
`train()` run with its own checkpoint and the partition is saved, so a killed run resumes where
it stopped. The trained base and experts are frozen submodules, saved with the student.

Ablations (RunConfig fields, the paper's Table numbers in docs/PAPERS.md): dnc_partition "random"
(equal-sized random clusters); dnc_expert_data "full" (each expert trains on all images for the
same number of steps it would have had on its cluster); dnc_targets "base" or "experts" (the
student distils one of the two; every stage still runs, so compute is unchanged).
Unverified choices: experts start from scratch rather than from the base; teachers are the online
networks (not their EMA targets); the student has one head per expert.
"""
from __future__ import annotations

from pathlib import Path
from typing import Generator

import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from torch import nn

from ssl_core.config import RunConfig, steps_per_epoch
from ssl_core.data import ImageSet
from ssl_core.data.views import views
from ssl_core.ddp import gather_objects, world
from ssl_core.evaluate.features import extract_features
from ssl_core.io import safe_load, save_atomic
from ssl_core.losses import dnc_distill
from ssl_core.methods import register_method, to_channels_last
from ssl_core.methods.base import Method, Stage
from ssl_core.models import build_encoder, mlp

DNC_SCHEDULES = {"1k": (200, 600, 200), "3k": (1000, 1500, 500)}   # ImageNet epochs: base, experts, distillation
DNC_BASES = ("moclr", "byol", "simclr", "dcl", "dclw")               # methods with an encoder and an MLP projector
DNC_PARTITIONS = ("kmeans", "random")
DNC_EXPERT_DATA = ("cluster", "full")
# The paper's ablations (docs/PAPERS.md), each as the RunConfig fields it changes.
DNC_ABLATIONS = {"random_partition": {"dnc_partition": "random"}, "experts_on_full_data": {"dnc_expert_data": "full"},
                 "distill_base_only": {"dnc_targets": "base"}, "distill_experts_only": {"dnc_targets": "experts"}}


def budget(cfg: RunConfig) -> dict[str, float]:
    """Epochs of each stage: `cfg.epochs` split in the proportions of `cfg.dnc_schedule`; they sum to cfg.epochs."""
    n1, n2, n3 = DNC_SCHEDULES[cfg.dnc_schedule]
    base, experts = cfg.epochs * n1 / (n1 + n2 + n3), cfg.epochs * n2 / (n1 + n2 + n3)
    return {"base": base, "experts": experts, "distill": cfg.epochs - base - experts}


def stage_costs(cfg: RunConfig) -> list[tuple[RunConfig, float]]:
    """What a DnC run trains, as (config whose step is timed, epochs of the full data): the base and the
    experts are `cfg.dnc_base` steps (the experts together cost their epochs of the full data), the
    distillation is the student's step. For a time estimate (ssl_core.grid.plan)."""
    split = budget(cfg)
    return [(cfg.replace(method=cfg.dnc_base), split["base"] + split["experts"]), (cfg, split["distill"])]


def check_clusters(cfg: RunConfig, n_images: int) -> None:
    """Raise unless `n_images` pretraining images can feed `cfg.dnc_clusters` experts: a batch per cluster on
    average (a cluster may still come out smaller; `prepare` refuses one of fewer than 2 images)."""
    if cfg.dnc_clusters * cfg.batch_size > n_images:
        raise ValueError(f"dnc_clusters={cfg.dnc_clusters} is not allowed with {n_images} images and "
                         f"batch_size={cfg.batch_size}: each expert needs a batch of its own on average "
                         f"(at most {n_images // cfg.batch_size} clusters)")


class DivideAndContrast(Method):
    """The DnC student (encoder + one regression head for the base and one per expert) and its frozen teachers."""

    def __init__(self, cfg: RunConfig, num_classes: int):
        super().__init__(cfg)
        self.encoder = build_encoder(cfg.encoder, cfg.width, cfg.image_size)
        head = lambda: mlp([self.encoder.dim, cfg.proj_hidden, cfg.proj_dim])
        self.base_head = head()                                                         # r_b
        self.expert_heads = nn.ModuleList(head() for _ in range(cfg.dnc_clusters))      # r_k
        self.base_head.requires_grad_(cfg.dnc_targets != "experts")    # a head the ablation leaves unused is frozen
        self.expert_heads.requires_grad_(cfg.dnc_targets != "base")
        self.base = self.teacher()                                                      # trained in prepare()
        self.experts = nn.ModuleList(self.teacher() for _ in range(cfg.dnc_clusters))
        self.loop_epochs = budget(cfg)["distill"]   # the trainer's loop is the distillation stage
        self.stages: dict = {}                      # epochs, steps and seconds of every stage, set by prepare()

    def teacher(self) -> nn.Sequential:
        """Encoder + projector of a `cfg.dnc_base` model, frozen: images (N, 3, H, W) -> projections (N, P)."""
        c = self.cfg
        encoder = build_encoder(c.encoder, c.width, c.image_size)
        return nn.Sequential(encoder, mlp([encoder.dim, c.proj_hidden, c.proj_dim])).requires_grad_(False)

    def train(self, mode: bool = True) -> "DivideAndContrast":
        super().train(mode)
        self.base.eval()      # frozen teachers: batch norm uses their running statistics
        self.experts.eval()
        return self

    def prepare(self, data: ImageSet, workdir: Path) -> Generator[Stage, object, torch.Tensor]:
        """Stages 1-3: yields the base model's run, then each expert's, as Stages that the trainer trains (each
        resumed from workdir if it ran before) and sends back as TrainResults; returns each image's cluster id,
        what the trainer feeds the distillation loop as `y`. Shape: returns (N,) int64."""
        c, split = self.cfg, budget(self.cfg)
        check_clusters(c, len(data))                                  # before any stage trains
        stage = c.replace(method=c.dnc_base)
        # --- stage 1: the base model on all images --------------------------------------------------
        base = yield Stage(stage.replace(epochs=split["base"]), data, workdir / "base")
        self.base.load_state_dict(nn.Sequential(base.model.encoder, base.model.projector).state_dict())
        # --- stage 2: divide the images into K clusters ---------------------------------------------
        cluster = self.divide(data, workdir / "clusters.pt")
        sizes = torch.bincount(cluster, minlength=c.dnc_clusters)
        # --- stage 3: one expert per cluster, compute in proportion to its size -----------------------
        experts = []
        for k, expert in enumerate(self.experts):
            members = (cluster == k).nonzero().squeeze(1)
            if len(members) < 2:
                raise ValueError(f"dnc_clusters={c.dnc_clusters} is too many for {len(data)} images: "
                                 f"cluster {k} has {len(members)} image(s), an expert needs 2")
            if c.dnc_expert_data == "cluster":
                own, epochs = data.subset(members), split["experts"]
            else:   # same steps as on its cluster, over all images
                own, epochs = data, split["experts"] * len(members) / len(data)
            run = yield Stage(stage.replace(epochs=epochs, seed=c.seed + 1 + k, batch_size=min(c.batch_size, len(own))),
                              own, workdir / f"expert{k}")
            expert.load_state_dict(nn.Sequential(run.model.encoder, run.model.projector).state_dict())
            experts.append({"epochs": epochs, "images": len(own), "steps": run.steps, "seconds": run.seconds})
        self.stages = {
            "schedule": c.dnc_schedule, "epochs": {**split, "total": c.epochs},
            "base": {"epochs": split["base"], "steps": base.steps, "seconds": base.seconds},
            "cluster_sizes": sizes.tolist(), "experts": experts,
            "distill": {"epochs": split["distill"], "steps": round(split["distill"] * steps_per_epoch(c, len(data)))},
        }
        return cluster

    def divide(self, data: ImageSet, path: Path) -> torch.Tensor:
        """Each image's cluster id, computed once and saved at `path`. Shape: returns (N,) int64."""
        saved = safe_load(path)                                   # None if missing, damaged or refused
        if saved is None:
            saved = {"cluster": self.partition(data)}
            if world()[0] == 0:                                   # the cache has one writer
                save_atomic(saved, path)
        return gather_objects(saved["cluster"])[0]                # under torchrun every rank takes rank 0's

    def partition(self, data: ImageSet) -> torch.Tensor:
        """Cluster ids by `cfg.dnc_partition`. Shape: returns (N,) int64 in [0, K)."""
        c, n = self.cfg, len(data)
        if c.dnc_partition == "random":   # equal sizes, random members
            cluster = torch.empty(n, dtype=torch.long)
            order = torch.randperm(n, generator=torch.Generator().manual_seed(c.seed))
            cluster[order] = torch.arange(n) % c.dnc_clusters
            return cluster
        features = F.normalize(self.hidden_features(data.images), dim=1).numpy()   # unit vectors: cosine k-means
        return torch.from_numpy(KMeans(c.dnc_clusters, n_init=10, random_state=c.seed).fit_predict(features)).long()

    def hidden_features(self, images: torch.Tensor) -> torch.Tensor:
        """The base projector's hidden layer (after its ReLU) on un-augmented images.

        Shape: images (N, 3, H, W) uint8 -> (N, proj_hidden) float on the CPU.
        """
        hidden = nn.Sequential(self.base[0], self.base[1][:-1]).eval()   # in eval, so extraction leaves it there
        return extract_features(hidden, images, channels_last=True)

    def forward(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Shape: x (N, 3, H, W) uint8; y (N,) cluster ids from `prepare`."""
        c = self.cfg
        (v,) = views(x, g, 1, crop_min_scale=c.crop_min_scale, jitter=c.jitter, hue=c.hue, gray_p=c.gray_p)
        v = to_channels_last(v)
        h = self.encoder(v)                                                              # (N, D)
        r_base = z_base = r_expert = z_expert = None
        with torch.no_grad():
            if c.dnc_targets != "experts":
                z_base = self.base(v)                                                    # (N, P)
            if c.dnc_targets != "base":
                z_expert = torch.zeros(len(v), c.proj_dim, device=v.device)              # (N, P)
                for k, expert in enumerate(self.experts):   # each image through its own cluster's expert only
                    mine = y == k
                    z_expert[mine] = expert(v[mine]).float()
        if z_base is not None:
            r_base = self.base_head(h)                                                   # (N, P)
        if z_expert is not None:
            r_all = torch.stack([head(h) for head in self.expert_heads])                 # (K, N, P)
            r_expert = r_all[y, torch.arange(len(y), device=y.device)]                   # (N, P): own expert's head
        return dnc_distill(r_base, z_base, r_expert, z_expert, c.dnc_targets)


register_method("dnc", DivideAndContrast)
