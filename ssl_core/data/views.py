"""Batched, on-device augmentation of uint8 image batches (the SimCLR recipe at 32x32).

Written here rather than taken from torchvision/kornia because a whole batch is augmented in a
handful of tensor ops: random resized crop and flip are one affine `grid_sample`, colour jitter
is elementwise, and hue is a rotation of the YIQ chroma plane (exact for a hue *rotation*, and
~10x cheaper than a round trip through HSV). Every random draw comes from one `torch.Generator`
on the batch's device, so a seed fixes the views and nothing crosses to the host.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MEAN = (0.5, 0.5, 0.5)   # the world is roughly centred at mid-grey; real sets override nothing:
STD = (0.25, 0.25, 0.25)  # per-dataset statistics matter little for frozen-feature comparisons
_LUMA = (0.299, 0.587, 0.114)
_RGB2YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float (N, C, H, W), scaled to [0, 1] then standardised."""
    return normalize_float(x.float() / 255)


def uniform(n: int, low: float, high: float, g: torch.Generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g, device=device)


def resized_crop_flip(x: torch.Tensor, g: torch.Generator, min_scale: float, out_size: int | None = None,
                      max_scale: float = 1.0, ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Random resized crop (area fraction in [min_scale, max_scale]) and horizontal flip, as one affine warp.

    Shape: x (N, C, H, W) float; returns (N, C, out_size, out_size).
    """
    n, device = x.shape[0], x.device
    area = uniform(n, min_scale, max_scale, g, device)
    log_r = uniform(n, math.log(ratio[0]), math.log(ratio[1]), g, device)
    w = torch.sqrt(area * log_r.exp()).clamp(max=1.0)   # crop width as a fraction of the image
    h = torch.sqrt(area / log_r.exp()).clamp(max=1.0)
    cx = (2 * torch.rand(n, generator=g, device=device) - 1) * (1 - w)   # centre, in [-1, 1] coords
    cy = (2 * torch.rand(n, generator=g, device=device) - 1) * (1 - h)
    flip = torch.where(torch.rand(n, generator=g, device=device) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    size = out_size or x.shape[-1]
    grid = F.affine_grid(theta, (n, x.shape[1], size, size), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def color_jitter(x: torch.Tensor, g: torch.Generator, strength: float, hue: float, p: float = 0.8,
                 gray_p: float = 0.2) -> torch.Tensor:
    """SimCLR colour distortion on [0, 1] images: brightness, contrast, saturation (factors in
    [1 - strength, 1 + strength]) and hue (a rotation by up to +-hue turns), applied with
    probability p in a fixed order; then grayscale with probability gray_p.

    Shape: x (N, 3, H, W) float in [0, 1]; returns the same.
    """
    n, device = x.shape[0], x.device
    luma_w = x.new_tensor(_LUMA).view(1, 3, 1, 1)
    on = (torch.rand(n, generator=g, device=device) < p).float().view(n, 1, 1, 1)
    factor = lambda: 1 + on * uniform(n, -strength, strength, g, device).view(n, 1, 1, 1)
    x = x * factor()                                                           # brightness
    mean = (x * luma_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    x = (x - mean) * factor() + mean                                           # contrast
    luma = (x * luma_w).sum(1, keepdim=True)
    x = (x - luma) * factor() + luma                                           # saturation
    if hue > 0:
        angle = on.view(n) * uniform(n, -hue, hue, g, device) * 2 * math.pi
        yiq = x.new_tensor(_RGB2YIQ)
        cos, sin = angle.cos(), angle.sin()
        rot = torch.zeros(n, 3, 3, device=device)
        rot[:, 0, 0] = 1
        rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
        m = torch.linalg.inv(yiq) @ rot @ yiq                                  # (N, 3, 3) in RGB
        x = torch.einsum("nij,njhw->nihw", m, x)
    x = x.clamp(0, 1)
    gray = (torch.rand(n, generator=g, device=device) < gray_p).view(n, 1, 1, 1)
    return torch.where(gray, (x * luma_w).sum(1, keepdim=True).expand_as(x), x)


def views(x: torch.Tensor, g: torch.Generator, n_views: int = 2, *, crop_min_scale: float = 0.2,
          jitter: float = 0.4, hue: float = 0.05, out_size: int | None = None) -> list[torch.Tensor]:
    """`n_views` independently augmented, normalised views of a uint8 batch.

    Shape: x (N, 3, H, W) uint8 on the training device; each view (N, 3, S, S) float.
    """
    x01 = x.float() / 255
    out = []
    for _ in range(n_views):
        v = resized_crop_flip(x01, g, crop_min_scale, out_size)
        if jitter > 0 or hue > 0:
            v = color_jitter(v, g, jitter, hue)
        out.append(normalize_float(v))
    return out


def normalize_float(x01: torch.Tensor) -> torch.Tensor:
    """[0, 1] float images -> standardised, as `normalize` does for uint8."""
    mean = x01.new_tensor(MEAN).view(1, -1, 1, 1)
    std = x01.new_tensor(STD).view(1, -1, 1, 1)
    return (x01 - mean) / std
