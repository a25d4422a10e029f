"""Encoders and heads.

An encoder maps normalised float images (N, 3, H, W) to pooled features (N, D) and exposes
`encoder.dim` (= D) and `encoder.features(x)` -> spatial features (N, D, h, w) for dense probes.
Encoders register by name in ENCODERS with `@register_encoder`; `build_encoder(name, width)`
builds one.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ssl_core.checks import choose
from ssl_core.registry import registrar

ENCODERS: dict[str, Callable[..., nn.Module]] = {}


# @register_encoder(name) adds a builder `fn(width, image_size) -> encoder`
register_encoder = registrar(ENCODERS, "encoder")


def build_encoder(name: str, width: int = 64, image_size: int = 32) -> nn.Module:
    choose("encoder", name, ENCODERS)
    return ENCODERS[name](width=width, image_size=image_size)


# --- CIFAR-stem ResNets ---------------------------------------------------------------------
# Written here rather than taken from torchvision because torchvision's ResNet fixes the stage
# widths at 64-512; the width knob is what lets the default preset train in minutes on a CPU.

class _Relayout(torch.autograd.Function):
    """A 4-d `x` in memory format `to`, its gradient handed back in the other one (NCHW <-> channels_last).
    Autograd's own `contiguous` passes the gradient on in whatever layout it arrives, which puts a channels_last
    gradient beside an NCHW input in the batch-norm backward: ATen's slowest case (5.7 vs 2.2 ms, bf16,
    128x8x32x32, fwd + bwd)."""

    @staticmethod
    def forward(ctx, x, to):
        ctx.back = torch.channels_last if to == torch.contiguous_format else torch.contiguous_format
        return x.contiguous(memory_format=to)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous(memory_format=ctx.back), None


class BatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d that normalises narrow channels_last maps on the CPU in NCHW, forward and backward, and
    hands them back in channels_last. ATen's channels_last batch norm at 8 channels is ~7x slower than NCHW here
    (5.2 vs 0.8 ms fwd + bwd, bf16, 128x8x32x32) and far more than the four layout copies. Same parameters,
    same result."""

    NARROW = 16   # below this many channels (the width-8 presets' first stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.shape[1] < self.NARROW and not x.is_contiguous():
            y = super().forward(_Relayout.apply(x, torch.contiguous_format))
            return _Relayout.apply(y, torch.channels_last)
        return super().forward(x)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), BatchNorm2d(c_out))

    def forward(self, x):
        # in place, as torchvision's ResNet: batch norm's backward needs its input, not its output, and the
        # width-64 maps are memory-bound here (ResNet-18 width 64 fwd + bwd ~5% faster, same gradients)
        out = torch.relu_(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return torch.relu_(out)


class CifarResNet(nn.Module):
    """ResNet with a 3x3 stride-1 stem and no max-pool (required for 32x32 inputs).

    Stage widths are width * (1, 2, 4, 8); width=64 with blocks (2, 2, 2, 2) is ResNet-18.
    """

    def __init__(self, blocks: tuple[int, ...] = (2, 2, 2, 2), width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        layers, c_in = [], width
        for i, n in enumerate(blocks):
            c_out = width * 2 ** i
            for j in range(n):
                layers.append(BasicBlock(c_in, c_out, stride=2 if (i > 0 and j == 0) else 1))
                c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.dim = c_in

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: x (N, 3, H, W) -> (N, D, H/8, W/8)."""
        return self.layers(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: x (N, 3, H, W) -> (N, D), global average pooled."""
        return self.features(x).mean((2, 3))


@register_encoder("resnet18")
def resnet18(width: int = 64, image_size: int = 32) -> nn.Module:
    return CifarResNet((2, 2, 2, 2), width)


@register_encoder("resnet10")
def resnet10(width: int = 64, image_size: int = 32) -> nn.Module:
    return CifarResNet((1, 1, 1, 1), width)


# --- heads ------------------------------------------------------------------------------------

def mlp(dims: list[int], last_bn: bool = False) -> nn.Sequential:
    """Linear-BN-ReLU between consecutive dims, a plain Linear at the end (the SimCLR projector)."""
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        layers.append(nn.Linear(d_in, d_out, bias=last and not last_bn))
        if not last:
            layers += [nn.BatchNorm1d(d_out), nn.ReLU()]
        elif last_bn:
            layers.append(nn.BatchNorm1d(d_out, affine=False))
    return nn.Sequential(*layers)


from ssl_core.models import vit  # noqa: E402,F401  (registers the timm ViT encoders)
