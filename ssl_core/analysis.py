"""Mechanism measurements on trained models: the quantities a paper blames for its effect."""
from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from ssl_core.config import RunConfig
from ssl_core.data.views import views
from ssl_core.losses import coupling_multiplier
from ssl_core.methods import to_channels_last
from ssl_core.runs import cached_rows, eval_id, load_model


@torch.no_grad()
def coupling_rows(model: nn.Module, images: torch.Tensor, batch_size: int, temperature: float,
                  n_batches: int = 8, seed: int = 0) -> pd.DataFrame:
    """The InfoNCE coupling multiplier q_B (Yeh et al. 2022, eq. 3) of every anchor in `n_batches`
    random batches of `batch_size` images, from `model`'s projections of two augmented views.

    Shape: images (N, 3, H, W) uint8. Returns one row per anchor: batch_size, q.
    """
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    c = model.cfg
    v1, v2 = views(images.to(device), g, 2, crop_min_scale=c.crop_min_scale, jitter=c.jitter,
                   hue=c.hue, gray_p=c.gray_p)
    project = lambda v: model.projector(model.encoder(to_channels_last(v)))
    z1, z2 = project(v1), project(v2)                                         # (N, P) each
    order = torch.Generator().manual_seed(seed)
    q = [coupling_multiplier(z1[idx], z2[idx], temperature)
         for idx in (torch.randperm(len(images), generator=order)[:batch_size] for _ in range(n_batches))]
    return pd.DataFrame({"batch_size": batch_size, "q": torch.cat(q).cpu().numpy()})


def stored_coupling_rows(cfg: RunConfig, images: torch.Tensor, dataset: str, batch_size: int,
                         temperature: float) -> pd.DataFrame:
    """`coupling_rows` of the pretrained run `cfg` on `images` (the first len(images) test images of
    `dataset`), stored and cached with the run (runs.cached_rows): a stored run needs no weights."""
    name = eval_id(f"coupling-b{batch_size}-t{temperature:g}", f"{dataset}-{len(images)}")
    rows = cached_rows(cfg, name, lambda: coupling_rows(load_model(cfg), images, batch_size, temperature)
                       .to_dict("records"))
    return pd.DataFrame(rows)
