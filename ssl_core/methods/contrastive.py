"""SimCLR and its decoupled variants: two views, one encoder, a projector, a contrastive loss."""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch

from ssl_core.config import RunConfig
from ssl_core.ddp import gather
from ssl_core.losses import dcl, dclw, info_nce
from ssl_core.methods import register_method, two_views
from ssl_core.methods.base import Method
from ssl_core.models import build_encoder, mlp


class Contrastive(Method):
    """SimCLR's recipe (Chen et al. 2020) with a pluggable loss of the two views' projections."""

    stackable = True

    def __init__(self, cfg: RunConfig, num_classes: int, loss: Callable[..., torch.Tensor]):
        super().__init__(cfg)
        self.loss = loss
        self.encoder = build_encoder(cfg.encoder, cfg.width, cfg.image_size)
        self.projector = mlp([self.encoder.dim, cfg.proj_hidden, cfg.proj_dim])

    def inputs(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return two_views(self.cfg, x, g), y

    def network(self, v: torch.Tensor) -> torch.Tensor:
        return self.projector(self.encoder(v))   # (2N, P)

    def objective(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        z1, z2 = gather(*z.chunk(2))            # negatives from the global batch under torchrun (else a no-op)
        return self.loss(z1, z2)


register_method("simclr", lambda cfg, n: Contrastive(cfg, n, partial(info_nce, temperature=cfg.temperature)))
register_method("dcl", lambda cfg, n: Contrastive(cfg, n, partial(dcl, temperature=cfg.temperature)))
register_method("dclw", lambda cfg, n: Contrastive(
    cfg, n, partial(dclw, temperature=cfg.temperature, sigma=cfg.sigma)))
