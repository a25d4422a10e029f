"""METHODS: what each pretraining method builds, and how one step computes its loss.

A method is a ssl_core.methods.base.Method built as `METHODS[name](cfg, num_classes)`: it owns
`self.encoder` (the part that transfers) and its heads, and `forward(x, y, g)` turns one uint8 batch
on the training device into a scalar loss. Every hook the trainer calls is documented on Method.

One module per family; recipes (hyper-parameters and their units) live in RunConfig.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ssl_core.config import RunConfig
from ssl_core.data.views import views
from ssl_core.registry import registrar

METHODS: dict[str, Callable[[RunConfig, int], nn.Module]] = {}


# register_method(name, builder) or @register_method(name) adds `builder(cfg, num_classes) -> nn.Module`
register_method = registrar(METHODS, "method")


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def two_views(cfg: RunConfig, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Two augmented views of the uint8 batch `x` (cfg's crop and colour recipe), as (2N, C, H, W) channels_last."""
    return to_channels_last(torch.cat(views(x, g, 2, crop_min_scale=cfg.crop_min_scale, jitter=cfg.jitter,
                                            hue=cfg.hue, gray_p=cfg.gray_p)))


from ssl_core.methods import clip, contrastive, dino, dnc, mae, momentum, supervised  # noqa: E402,F401  (registry)
