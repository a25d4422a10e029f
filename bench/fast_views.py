"""Prototype of a faster ssl_core/data/views.py: the same functions, signatures, random draws and outputs.

Proposed as a drop-in for `resized_crop_flip`, `color_jitter` and `views` (bench/RESULTS.md has the gain):
- random resized crop + flip as two small batched matmuls, out = Ry @ x @ Rx^T, with Ry (N, S, H) and
  Rx (N, S, W) the bilinear (tent) weights of the sampled rows and columns, instead of `affine_grid` +
  `grid_sample`: bilinear sampling of an axis-aligned grid is separable, and every sample lies inside
  the image, so reflection padding only ever clamps;
- brightness, contrast, saturation and hue composed into one per-image affine colour map A x + t (the
  current code clamps once, at the end, so the four steps compose exactly), then clamp, then grayscale
  as a per-image 3x3 map: two `bmm` passes instead of ~15 elementwise ones;
- constants (luma weights, the hue-rotation basis) built once per device, not per call: on a GPU every
  `new_tensor(list)` is a blocking host-to-device copy and `torch.linalg.inv` a device-to-host sync.
Random numbers are drawn in the order the current functions draw them, so both give the same views.
"""
from __future__ import annotations

import functools
import math

import torch

from ssl_core.data.views import _LUMA, _RGB2YIQ, normalize_float, uniform


@functools.lru_cache(maxsize=None)
def _colour_constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Luma weights w (3,), and the hue basis (3, 3, 3) with rotate(angle) = B0 + cos B1 + sin B2 in RGB.

    A hue rotation turns the chroma plane (I, Q) of YIQ about the grey axis: inv(M) R(angle) M.
    """
    m = torch.tensor(_RGB2YIQ, dtype=torch.float64)
    keep, cos, sin = torch.zeros(3, 3, dtype=torch.float64), torch.zeros(3, 3, dtype=torch.float64), \
        torch.zeros(3, 3, dtype=torch.float64)
    keep[0, 0], cos[1, 1], cos[2, 2], sin[1, 2], sin[2, 1] = 1, 1, 1, -1, 1
    basis = torch.stack([torch.linalg.inv(m) @ r @ m for r in (keep, cos, sin)])
    return torch.tensor(_LUMA, device=device), basis.float().to(device)


def crop_matrices(n: int, size_in: tuple[int, int], size_out: int, g: torch.Generator, min_scale: float, device,
                  max_scale: float = 1.0, ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[torch.Tensor, ...]:
    """Bilinear row and column weights of a random resized crop and flip (the draws of `resized_crop_flip`).

    Shape: returns Ry (n, size_out, H), Rx (n, size_out, W); every row sums to 1.
    """
    area = uniform(n, min_scale, max_scale, g, device)
    log_r = uniform(n, math.log(ratio[0]), math.log(ratio[1]), g, device)
    w = torch.sqrt(area * log_r.exp()).clamp(max=1.0)                       # crop width as a fraction of the image
    h = torch.sqrt(area / log_r.exp()).clamp(max=1.0)
    cx = (2 * torch.rand(n, generator=g, device=device) - 1) * (1 - w)        # centre, in [-1, 1] coords
    cy = (2 * torch.rand(n, generator=g, device=device) - 1) * (1 - h)
    flip = torch.where(torch.rand(n, generator=g, device=device) < 0.5, -1.0, 1.0)
    grid = (2 * torch.arange(size_out, device=device) + 1) / size_out - 1     # output pixel centres in [-1, 1]

    def weights(scale, centre, size):                                         # (n, size_out, size)
        u = ((scale[:, None] * grid + centre[:, None] + 1) * size - 1) / 2     # source pixel, align_corners=False
        u = u.clamp(0, size - 1)
        return (1 - (u[:, :, None] - torch.arange(size, device=device)).abs()).clamp(min=0)

    return weights(h, cy, size_in[0]), weights(w * flip, cx, size_in[1])


def resized_crop_flip(x: torch.Tensor, g: torch.Generator, min_scale: float, out_size: int | None = None,
                      max_scale: float = 1.0, ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Random resized crop (area fraction in [min_scale, max_scale]) and horizontal flip, as two matmuls.

    Shape: x (N, C, H, W) float; returns (N, C, out_size, out_size).
    """
    size = out_size or x.shape[-1]
    ry, rx = crop_matrices(x.shape[0], x.shape[-2:], size, g, min_scale, x.device, max_scale, ratio)
    return ry[:, None] @ x @ rx[:, None].transpose(2, 3)


def color_jitter(x: torch.Tensor, g: torch.Generator, strength: float, hue: float, p: float = 0.8,
                 gray_p: float = 0.2) -> torch.Tensor:
    """SimCLR colour distortion on [0, 1] images (the same as ssl_core's), as one affine map per image:
    brightness b, contrast c, saturation s and a hue rotation H compose to A = c b H S with
    S = s I + (1 - s) 1 w^T, and t = (1 - c) b mean_luma(x); then clamp, then grayscale with probability gray_p.

    Shape: x (N, 3, H, W) float in [0, 1]; returns the same.
    """
    n, _, height, width = x.shape
    device = x.device
    luma_w, basis = _colour_constants(device)
    on = (torch.rand(n, generator=g, device=device) < p).float()
    b, c, s = (1 + on * uniform(n, -strength, strength, g, device) for _ in range(3))
    eye, grey = torch.eye(3, device=device), luma_w.expand(3, 3)               # grey = 1 w^T
    a = s[:, None, None] * eye + (1 - s)[:, None, None] * grey                  # (N, 3, 3) saturation
    if hue > 0:
        angle = on * uniform(n, -hue, hue, g, device) * 2 * math.pi
        rotate = basis[0] + angle.cos()[:, None, None] * basis[1] + angle.sin()[:, None, None] * basis[2]
        a = rotate @ a
    a = (c * b)[:, None, None] * a
    t = ((1 - c) * b * torch.einsum("c,nchw->n", luma_w, x) / (height * width))[:, None, None].expand(n, 3, 1)
    out = torch.baddbmm(t, a, x.reshape(n, 3, height * width)).clamp_(0, 1)   # (N, 3, H*W)
    gray = torch.rand(n, generator=g, device=device) < gray_p
    out = torch.bmm(torch.where(gray[:, None, None], grey, eye), out)
    return out.view(n, 3, height, width)


def views(x: torch.Tensor, g: torch.Generator, n_views: int = 2, *, crop_min_scale: float = 0.2,
          jitter: float = 0.4, hue: float = 0.05, out_size: int | None = None) -> list[torch.Tensor]:
    """`n_views` independently augmented, normalised views of a uint8 batch (body unchanged from ssl_core's).

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
