"""MAE's reconstruction loss on masked patches, and the patch layout it shares with the ViT."""
from __future__ import annotations

import torch


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """Cut images into non-overlapping patches, row-major over the grid (timm's patch_embed order).

    Each patch is flattened as (row, column, channel), as in MAE.
    Shape: images (N, C, H, W) with H, W multiples of patch; returns (N, H/p * W/p, p * p * C).
    """
    n, c, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError(f"patch={patch!r} is not allowed: must divide the image size {h}x{w}")
    x = images.reshape(n, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(n, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, channels: int = 3) -> torch.Tensor:
    """Inverse of patchify for a square grid.

    Shape: patches (N, L, p * p * C) with L a square; returns (N, C, sqrt(L) p, sqrt(L) p).
    """
    n, length, _ = patches.shape
    side = round(length ** 0.5)
    if side * side != length:
        raise ValueError(f"patches has {length} patches per image: unpatchify needs a square grid")
    x = patches.reshape(n, side, side, patch, patch, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(n, channels, side * patch, side * patch)


def mae(pred: torch.Tensor, target_patches: torch.Tensor, mask: torch.Tensor, norm_pix: bool = True) -> torch.Tensor:
    """MAE (He et al. 2022, Sec. 3): L = 1/|M| sum_{i in M} 1/P ||x_hat_i - x_i||^2, masked patches only.

    With norm_pix, each target patch x_i is standardised by its own pixels, (x_i - mean) /
    sqrt(var + 1e-6) with the unbiased variance, MAE's "normalised pixels" target.
    Shape: pred (N, L, P) decoder predictions, P = p * p * C.
    Shape: target_patches (N, L, P) patchify(images, p) of the input images.
    Shape: mask (N, L), 1 where a patch was masked (hidden from the encoder), 0 where kept; returns a scalar.
    """
    target = target_patches.float()
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = (pred.float() - target).pow(2).mean(dim=-1)                  # (N, L)
    mask = mask.to(per_patch.dtype)
    return (per_patch * mask).sum() / mask.sum()
