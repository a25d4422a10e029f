"""Supervised pretraining, with or without an MLP projector (SL-MLP)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_core.config import RunConfig
from ssl_core.data.views import views
from ssl_core.methods import register_method, to_channels_last
from ssl_core.methods.base import Method
from ssl_core.models import build_encoder, mlp


class Supervised(Method):
    """Cross-entropy on labels from one augmented view (crop and flip, no colour distortion).

    With `projector=True` this is SL-MLP (Wang et al. 2022): an fc-BN-ReLU-fc projector sits
    between the backbone and the classifier, and only the backbone transfers.
    """

    stackable = True

    def __init__(self, cfg: RunConfig, num_classes: int, projector: bool = False):
        super().__init__(cfg)
        self.encoder = build_encoder(cfg.encoder, cfg.width, cfg.image_size)
        d = self.encoder.dim
        self.projector = mlp([d, cfg.proj_hidden, cfg.proj_dim]) if projector else nn.Identity()
        self.classifier = nn.Linear(cfg.proj_dim if projector else d, num_classes)

    def inputs(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        (v,) = views(x, g, 1, crop_min_scale=self.cfg.crop_min_scale, jitter=0.0, hue=0.0)
        return to_channels_last(v), y

    def network(self, v: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.projector(self.encoder(v)))   # (N, classes)

    def objective(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y)


register_method("supervised", lambda cfg, n: Supervised(cfg, n))
register_method("sl_mlp", lambda cfg, n: Supervised(cfg, n, projector=True))
