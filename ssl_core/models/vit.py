"""Small ViTs through timm, as encoders: vit_mini / vit_tiny / vit_small with patch 4, and *_p8 with patch 8.

At 32x32 a patch of 4 gives an 8x8 grid (64 patch tokens + CLS): the finest grid that stays
cheap, since DINO found smaller patches give better features. A patch of 8 gives a 4x4 grid and
runs 3-4x faster on this CPU (MEASUREMENTS.md), for presets that need speed. The patch size is
fixed by the name (as in timm's names), so `image_size` must be a multiple of it. The `width`
knob of build_encoder belongs to the ResNets; a ViT's size is fixed by its name (mini 128 x 6 blocks,
tiny 192 x 12, small 384 x 12).

Pooled features are the final CLS token (timm's default pool, and what DINO probes) or, with
`pool = "avg"`, the mean of the patch tokens (MAE's choice, see methods/mae.py); spatial features
are the normed patch tokens laid out on their grid.
"""
from __future__ import annotations

from typing import Callable

import timm
import torch
from torch import nn

from ssl_core.models import register_encoder


class ViT(nn.Module):
    """A thin wrapper over a timm VisionTransformer that meets the encoder contract, plus MAE's masked forward."""

    def __init__(self, timm_name: str, patch_size: int, image_size: int, **shape):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size={image_size!r} is not allowed for a patch-{patch_size} ViT: "
                             f"must be a multiple of {patch_size}")
        # dynamic_img_size: smaller inputs (DINO's local crops) get interpolated position embeddings
        self.vit = timm.create_model(timm_name, pretrained=False, img_size=image_size,
                                     patch_size=patch_size, num_classes=0, dynamic_img_size=True, **shape)
        self.dim = self.vit.embed_dim
        self.patch_size = patch_size
        self.grid = image_size // patch_size
        self.num_patches = self.vit.patch_embed.num_patches
        self.pool = "token"                     # pooled features: "token" (CLS) or "avg" (mean patch token)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: x (N, 3, H, W) -> (N, 1 + num_patches, D), CLS first, after the final norm."""
        return self.vit.forward_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: x (N, 3, H, W) -> (N, D), the CLS token or the mean patch token (`pool`)."""
        t = self.tokens(x)
        return t[:, 0] if self.pool == "token" else t[:, self.vit.num_prefix_tokens:].mean(dim=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: x (N, 3, H, W) -> (N, D, H/p, W/p), the patch tokens on their grid."""
        patches = self.tokens(x)[:, self.vit.num_prefix_tokens:]             # (N, L, D)
        return patches.transpose(1, 2).reshape(len(x), self.dim, self.grid, self.grid)

    def forward_masked(self, x: torch.Tensor, keep_idx: torch.Tensor) -> torch.Tensor:
        """Run the encoder on the kept patches only (MAE's encoder); position embeddings added first.

        Patches are numbered row-major over the grid, as in ssl_core.losses.mae.patchify.
        Shape: x (N, 3, H, W); keep_idx (N, K) int64 indices of kept patches; returns (N, 1 + K, D), CLS first.
        """
        t = self.vit._pos_embed(self.vit.patch_embed(x))                    # (N, 1 + L, D)
        prefix, patches = t[:, : self.vit.num_prefix_tokens], t[:, self.vit.num_prefix_tokens:]
        kept = patches.gather(1, keep_idx.unsqueeze(-1).expand(-1, -1, self.dim))   # (N, K, D)
        t = self.vit.norm_pre(torch.cat([prefix, kept], dim=1))
        return self.vit.norm(self.vit.blocks(t))


def _builder(timm_name: str, patch: int, **shape) -> Callable[..., nn.Module]:
    return lambda width=64, image_size=32: ViT(timm_name, patch, image_size, **shape)


# timm architecture and its overrides per size: mini is ours (width 128, 6 blocks of 4 heads: ~4x fewer
# FLOPs than tiny), for CPU presets that need many optimiser steps within a FLOP budget
SIZES = {"mini": ("vit_tiny_patch16_224", dict(embed_dim=128, depth=6, num_heads=4)),
         "tiny": ("vit_tiny_patch16_224", {}), "small": ("vit_small_patch16_224", {})}
# each size at patch 4 (65 tokens at 32 px) and patch 8 (_p8, 17 tokens); width is unused
for size, (timm_name, shape) in SIZES.items():
    for patch, suffix in ((4, ""), (8, "_p8")):
        register_encoder(f"vit_{size}{suffix}", _builder(timm_name, patch, **shape))
