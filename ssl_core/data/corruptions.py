"""Common corruptions in the style of ImageNet-C / CIFAR-10-C (Hendrycks & Dietterich 2019), batched.

`corrupt(x, name, severity, seed)` maps a uint8 batch to a corrupted uint8 batch; every random draw
comes from one generator seeded by (name, severity, seed), so a call is reproducible bit for bit.
Severity constants follow the CIFAR-10-C scale for 32x32 images (1 = mild, 5 = strong); kernels
scale with the image side. Written on tensors rather than taken from the `imagecorruptions` package
because that package works one image at a time in numpy (and needs Wand/ImageMagick for two types);
here a whole batch is corrupted in a few tensor ops on its device.
"""
from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from PIL import Image

from ssl_core.checks import choose
from ssl_core.data.world import generator

SEVERITIES = (1, 2, 3, 4, 5)


def _normal(shape, g, device):
    return torch.randn(shape, generator=g).to(device)


def _uniform(shape, g, device):
    return torch.rand(shape, generator=g).to(device)


def _depthwise(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve every channel of every image with its image's kernel, reflecting at the borders.

    Shape: x (N, C, H, W); kernel (k, k) shared or (N, k, k) one per image; returns (N, C, H, W).
    """
    n, c, h, w = x.shape
    kernel = kernel.expand(n, *kernel.shape[-2:]) if kernel.ndim == 2 else kernel
    k = kernel.shape[-1]
    weight = kernel.repeat_interleave(c, 0)[:, None]                   # (N*C, 1, k, k)
    padded = F.pad(x.reshape(1, n * c, h, w), [k // 2] * 4, mode="reflect")
    return F.conv2d(padded, weight, groups=n * c).view(n, c, h, w)


def _disk(radius: float, device) -> torch.Tensor:
    r = max(1, math.ceil(radius))
    y, x = torch.meshgrid(torch.arange(-r, r + 1.0), torch.arange(-r, r + 1.0), indexing="ij")
    disk = (radius + 0.5 - (x ** 2 + y ** 2).sqrt()).clamp(0, 1)          # anti-aliased edge
    return (disk / disk.sum()).to(device)


def _fractal(n: int, size: int, g, device, decay: float) -> torch.Tensor:
    """Smooth random fields: octaves of upsampled noise, amplitude x `decay` per octave, in [0, 1].

    Shape: returns (n, 1, size, size).
    """
    field = torch.zeros(n, 1, size, size, device=device)
    amplitude, cells = 1.0, 2
    while cells <= size:
        noise = _normal((n, 1, cells, cells), g, device)
        field += amplitude * F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False)
        amplitude, cells = amplitude * decay, cells * 2
    low, high = field.amin((2, 3), keepdim=True), field.amax((2, 3), keepdim=True)
    return (field - low) / (high - low)


def _warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample x at identity + flow. Shape: x (N, C, H, W); flow (N, H, W, 2) in [-1, 1] units."""
    n = x.shape[0]
    identity = F.affine_grid(torch.eye(2, 3, device=x.device).expand(n, 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, identity + flow, mode="bilinear", padding_mode="reflection", align_corners=False)


# --- the corruptions (x: float (N, 3, H, W) in [0, 1]; c: the severity's constant) -----------------
def gaussian_noise(x, c, g):
    return x + c * _normal(x.shape, g, x.device)


def shot_noise(x, c, g):
    rates = (x * c).cpu()
    return torch.poisson(rates, generator=g).to(x.device) / c


def impulse_noise(x, c, g):
    u = _uniform(x.shape, g, x.device)
    return torch.where(u < c / 2, 0.0, torch.where(u < c, 1.0, x))       # salt and pepper


def speckle_noise(x, c, g):
    return x + x * c * _normal(x.shape, g, x.device)


def gaussian_blur(x, c, g):
    sigma = c * x.shape[-1] / 32
    k = 2 * math.ceil(3 * sigma) + 1
    return TF.gaussian_blur(x, [k, k], [sigma, sigma])


def defocus_blur(x, c, g):
    return _depthwise(x, _disk(c * x.shape[-1] / 32, x.device))


def glass_blur(x, c, g):
    """Blur, move every pixel by a random offset of up to `reach` pixels, blur again."""
    sigma, reach = c
    n, _, h, w = x.shape
    x = TF.gaussian_blur(x, [3, 3], [sigma, sigma])
    step = (2 * _uniform((n, h, w, 2), g, x.device) - 1) * reach * h / 32
    x = _warp(x, step * 2 / h)
    return TF.gaussian_blur(x, [3, 3], [sigma, sigma])


def motion_blur(x, c, g):
    """Average along a line of `c` pixels (scaled to the image side) at a random angle per image."""
    n, length = x.shape[0], c * x.shape[-1] / 32
    r = math.ceil(length / 2)
    angle = _uniform((n, 1, 1), g, x.device) * math.pi
    y, z = torch.meshgrid(torch.arange(-r, r + 1.0), torch.arange(-r, r + 1.0), indexing="ij")
    y, z = y.to(x.device), z.to(x.device)
    along = z * angle.cos() + y * angle.sin()
    across = -z * angle.sin() + y * angle.cos()
    kernel = ((along.abs() <= length / 2) & (across.abs() <= 0.5)).float()   # (N, k, k)
    return _depthwise(x, kernel / kernel.sum((1, 2), keepdim=True))


def zoom_blur(x, c, g):
    zooms = torch.arange(1.0, c + 1e-6, 0.02)
    n = x.shape[0]
    out = torch.zeros_like(x)
    for z in zooms.tolist():                   # a handful of zoom factors, each applied to the whole batch
        theta = torch.tensor([[1 / z, 0, 0], [0, 1 / z, 0]], device=x.device).expand(n, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out += F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out / len(zooms)


def fog(x, c, g):
    strength, decay = c
    field = _fractal(x.shape[0], x.shape[-1], g, x.device, decay)
    peak = x.amax((1, 2, 3), keepdim=True)
    return (x + strength * field) * peak / (peak + strength)


def brightness(x, c, g):
    """Add `c` to the HSV value channel (hue and saturation kept: every channel scales alike)."""
    value = x.amax(1, keepdim=True)
    return x * (value + c).clamp(max=1) / value.clamp(min=1e-6)


def contrast(x, c, g):
    mean = x.mean((1, 2, 3), keepdim=True)
    return (x - mean) * c + mean


def saturate(x, c, g):
    return TF.adjust_saturation(x, c)


def pixelate(x, c, g):
    h = x.shape[-1]
    small = F.interpolate(x, size=(max(1, round(h * c)),) * 2, mode="area")
    return F.interpolate(small, size=(h, h), mode="nearest")


def jpeg_compression(x, c, g):
    """Pillow's JPEG at quality `c`, image by image (a codec has no batched form; torchvision.io's
    encoder is deprecated since 0.29)."""
    quantised = (x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for image in quantised:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=c)
        out.append(np.asarray(Image.open(buffer)))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.device).float() / 255


def elastic_transform(x, c, g):
    """A smooth random displacement field (noise blurred by `sigma`), up to `alpha` of the side."""
    alpha, sigma = c
    n, _, h, w = x.shape
    noise = _normal((n, 2, h, w), g, x.device)
    k = 2 * math.ceil(3 * sigma * h / 32) + 1
    field = TF.gaussian_blur(noise, [k, k], [sigma * h / 32] * 2)
    field = field / field.abs().amax((1, 2, 3), keepdim=True)
    return _warp(x, alpha * 2 * field.permute(0, 2, 3, 1))


# name: (function, the five severities' constants)
CORRUPTION_TABLE = {
    "gaussian_noise": (gaussian_noise, (0.04, 0.06, 0.08, 0.09, 0.10)),
    "shot_noise": (shot_noise, (500, 250, 100, 75, 50)),
    "impulse_noise": (impulse_noise, (0.01, 0.02, 0.03, 0.05, 0.07)),
    "speckle_noise": (speckle_noise, (0.06, 0.10, 0.12, 0.16, 0.20)),
    "gaussian_blur": (gaussian_blur, (0.4, 0.6, 0.7, 0.8, 1.0)),
    "defocus_blur": (defocus_blur, (0.75, 1.0, 1.25, 1.5, 2.0)),
    "glass_blur": (glass_blur, ((0.4, 0.6), (0.5, 0.9), (0.6, 1.2), (0.7, 1.5), (0.8, 2.0))),
    "motion_blur": (motion_blur, (3, 4, 5, 7, 9)),
    "zoom_blur": (zoom_blur, (1.06, 1.11, 1.16, 1.21, 1.26)),
    "fog": (fog, ((0.2, 0.6), (0.5, 0.6), (0.75, 0.55), (1.0, 0.55), (1.5, 0.5))),
    "brightness": (brightness, (0.05, 0.1, 0.15, 0.2, 0.3)),
    "contrast": (contrast, (0.75, 0.5, 0.4, 0.3, 0.15)),
    "saturate": (saturate, (0.3, 0.1, 2.0, 5.0, 20.0)),
    "pixelate": (pixelate, (0.8, 0.7, 0.6, 0.45, 0.35)),
    "jpeg_compression": (jpeg_compression, (80, 65, 58, 50, 40)),
    "elastic_transform": (elastic_transform, ((0.02, 3.0), (0.03, 3.0), (0.04, 2.5), (0.05, 2.5), (0.06, 2.0))),
}
CORRUPTIONS = tuple(CORRUPTION_TABLE)


def corrupt(x: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """Corruption `name` at `severity` (1-5) of a uint8 batch, reproducible from `seed`.

    Shape: x (N, 3, H, W) uint8; returns (N, 3, H, W) uint8 on x's device.
    """
    choose("corruption", name, CORRUPTION_TABLE)
    choose("severity", severity, SEVERITIES)
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise ValueError(f"x must be uint8 (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
    fn, constants = CORRUPTION_TABLE[name]
    g = generator("corrupt", name, severity, seed)
    out = fn(x.float() / 255, constants[severity - 1], g)
    return (out * 255).round().clamp(0, 255).to(torch.uint8)
