"""Methods with a momentum (EMA) target: MoCLR (SimCLR + EMA target, the DnC paper's baseline) and BYOL.

Recipe (RunConfig fields; paper default -> ours, for runs of hundreds of steps on 32x32 images):
- ema_momentum 0.996 -> 0.99: the target's momentum at step 0, raised to 1 along a cosine (BYOL,
  Sec. 3.2). 0.996 suits ~100k+ steps; over our few hundred the target would barely leave its
  initialisation (time constant 1 / (1 - m) = 250 steps), so we take the CIFAR recipes' 0.99.
- proj_hidden / proj_dim 4096 / 256 -> 512 / 128: projector (and BYOL predictor) widths.
- temperature 0.1 (MoCLR's InfoNCE); BYOL has none.
"""
from __future__ import annotations

import copy
import math
from functools import partial
from typing import Callable

import torch
from torch import nn

from ssl_core.config import RunConfig
from ssl_core.ddp import gather
from ssl_core.losses import byol, info_nce
from ssl_core.methods import register_method, two_views
from ssl_core.methods.base import Method
from ssl_core.models import build_encoder, mlp


def ema_momentum(base: float, progress: float) -> float:
    """BYOL's schedule (Grill et al. 2020, Sec. 3.2): m = 1 - (1 - base) (cos(pi progress) + 1) / 2,
    from `base` at progress 0 to 1 at progress 1 (the fraction of the run done)."""
    return 1 - (1 - base) * (math.cos(math.pi * progress) + 1) / 2


class MomentumTarget(Method):
    """A method with a momentum target: `self.target[name]` is a frozen EMA copy of `self.<name>`."""

    def make_target(self, *names: str) -> None:
        self.target = nn.ModuleDict({name: copy.deepcopy(getattr(self, name)) for name in names}).requires_grad_(False)

    @torch.no_grad()
    def update_target(self, progress: float) -> None:
        """target <- m target + (1 - m) online (BYOL eq. 1), with m = ema_momentum(cfg.ema_momentum, progress)."""
        m = ema_momentum(self.cfg.ema_momentum, progress)
        for name, target in self.target.items():
            for t, online in zip(target.parameters(), getattr(self, name).parameters()):
                t.lerp_(online, 1 - m)                                  # t = m t + (1 - m) online


def moclr_loss(q1: torch.Tensor, q2: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor,
               temperature: float = 0.1) -> torch.Tensor:
    """MoCLR (Tian et al. 2021, Sec. 3): SimCLR's InfoNCE with the other view through the EMA target,
    symmetrised: L = 1/2 [InfoNCE(q1, sg(k2)) + InfoNCE(q2, sg(k1))].

    Our reading of "SimCLR + EMA target" (docs/PAPERS.md): each InfoNCE term is SimCLR's over the 2N
    embeddings of one online and one target view, so negatives come from both networks.
    Shape: q1, q2 (N, P) online projections of views 1 and 2; k1, k2 (N, P) target projections.
    """
    return (info_nce(q1, k2.detach(), temperature) + info_nce(q2, k1.detach(), temperature)) / 2


class Momentum(MomentumTarget):
    """Two views through the online encoder, projector and predictor, and through the EMA target
    (encoder and projector); `loss(p1, p2, z1_target, z2_target)` compares them."""

    stackable = True   # the target stacks with the online network; its EMA update is elementwise

    def __init__(self, cfg: RunConfig, num_classes: int, loss: Callable[..., torch.Tensor], predictor: bool):
        super().__init__(cfg)
        self.loss = loss
        self.encoder = build_encoder(cfg.encoder, cfg.width, cfg.image_size)
        self.projector = mlp([self.encoder.dim, cfg.proj_hidden, cfg.proj_dim])
        self.predictor = mlp([cfg.proj_dim, cfg.proj_hidden, cfg.proj_dim]) if predictor else nn.Identity()
        self.make_target("encoder", "projector")

    def inputs(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return two_views(self.cfg, x, g), y

    def network(self, v: torch.Tensor) -> torch.Tensor:
        p = self.predictor(self.projector(self.encoder(v)))                     # (2N, P) online
        with torch.no_grad():
            z = self.target["projector"](self.target["encoder"](v))             # (2N, P) target
        return torch.cat([p, z])                                                # (4N, P)

    def objective(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p1, p2, z1, z2 = out.chunk(4)
        return self.loss(*gather(p1, p2, z1, z2))                               # global batch under torchrun


register_method("moclr", lambda cfg, n: Momentum(cfg, n, partial(moclr_loss, temperature=cfg.temperature),
                                                 predictor=False))
register_method("byol", lambda cfg, n: Momentum(cfg, n, byol, predictor=True))
