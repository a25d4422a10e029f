"""Stacking: N networks of one architecture as one network whose channel group i is network i.

A small model (ResNet-10 at width 8) spends its step on per-operation overhead, not arithmetic; one grouped
convolution serving N models pays that overhead once (bench/stacking.py: 1.5-1.9x at 16 images per view, ~1.1x
at 64, 1-2 threads). Every convolution becomes a grouped one over the stacked channels, every batch norm one over
N times the channels, every linear layer a batched matmul; layers without parameters work on any channel count.
Model i's input is channel group i of the stacked input, so the models see different images and never mix.

Every stacked tensor (parameter, buffer, optimiser moment) is the N models' tensors concatenated along dim 0, so
`stack_state` and `unstack_state` convert any state dict both ways; scalars (step counts) are shared.
"""
from __future__ import annotations

import copy
from itertools import chain

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class GroupedLinear(nn.Module):
    """`groups` independent nn.Linear(d_in, d_out) on channel groups: x (B, groups * d_in) -> (B, groups * d_out).
    Weight (groups * d_out, d_in): the models' weights concatenated, as every stacked tensor."""

    def __init__(self, d_in: int, d_out: int, groups: int, bias: bool):
        super().__init__()
        self.groups, self.d_in, self.d_out = groups, d_in, d_out
        self.weight = nn.Parameter(torch.empty(groups * d_out, d_in))
        self.bias = nn.Parameter(torch.empty(groups * d_out)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        w = self.weight.view(self.groups, self.d_out, self.d_in).transpose(1, 2)        # (G, d_in, d_out)
        x = x.reshape(b, self.groups, self.d_in).transpose(0, 1)                         # (G, B, d_in)
        y = torch.bmm(x, w) if self.bias is None else torch.baddbmm(self.bias.view(self.groups, 1, -1), x, w)
        return y.transpose(0, 1).reshape(b, self.groups * self.d_out)


def _stacked_layer(layer: nn.Module, n: int) -> nn.Module:
    """The N-model version of one leaf layer, on its device, dtype and memory format (its parameters
    uninitialised: stack_state fills them)."""
    stacked = _grouped(layer, n)
    first = next(chain(layer.parameters(recurse=False), layer.buffers(recurse=False)), None)
    if stacked is not layer and first is not None:
        channels_last = first.dim() == 4 and not first.is_contiguous() and \
            first.is_contiguous(memory_format=torch.channels_last)
        stacked.to(first.device, first.dtype, memory_format=torch.channels_last if channels_last else
                   torch.preserve_format)
    return stacked


def _grouped(layer: nn.Module, n: int) -> nn.Module:
    if type(layer) is nn.Conv2d:
        return nn.Conv2d(layer.in_channels * n, layer.out_channels * n, layer.kernel_size, layer.stride,
                         layer.padding, layer.dilation, layer.groups * n, layer.bias is not None, layer.padding_mode)
    if isinstance(layer, _BatchNorm):
        return type(layer)(layer.num_features * n, layer.eps, layer.momentum, layer.affine,   # ssl_core's too
                           layer.track_running_stats)
    if type(layer) is nn.Linear:
        return GroupedLinear(layer.in_features, layer.out_features, n, layer.bias is not None)
    if next(layer.parameters(recurse=False), None) is None and next(layer.buffers(recurse=False), None) is None:
        return layer                                                  # ReLU, pooling, identity: any width
    raise TypeError(f"cannot stack a {type(layer).__name__} layer (stackable: Conv2d, BatchNorm, Linear and "
                    f"layers without parameters)")


def stackable(model: nn.Module) -> bool:
    """Whether every layer of `model` can be stacked."""
    try:
        stack_module(model, 2)
    except TypeError:
        return False
    return True


def stack_module(model: nn.Module, n: int) -> nn.Module:
    """An N-model copy of `model`'s architecture (same class, forward and state-dict keys), parameters empty."""
    stacked = copy.deepcopy(model)
    for name, layer in list(stacked.named_modules()):
        if not list(layer.children()):                                # a leaf
            parent, _, attr = name.rpartition(".")
            if name:
                setattr(stacked.get_submodule(parent), attr, _stacked_layer(layer, n))
            else:
                stacked = _stacked_layer(layer, n)
    return stacked


def stack_state(states: list[dict]) -> dict:
    """One state dict from N of the same keys: tensors concatenated along dim 0, scalars (and non-tensors) taken
    from the first; nested dicts (an optimiser's state) recursively."""
    first = states[0]
    if isinstance(first, dict):
        return {k: stack_state([s[k] for s in states]) for k in first}
    if isinstance(first, torch.Tensor) and first.dim() > 0:
        return torch.cat(states)
    return first


def unstack_state(state, n: int) -> list:
    """The N state dicts `stack_state` made `state` from (tensors split along dim 0, copied)."""
    if isinstance(state, dict):
        parts = {k: unstack_state(v, n) for k, v in state.items()}
        return [{k: v[i] for k, v in parts.items()} for i in range(n)]
    if isinstance(state, torch.Tensor) and state.dim() > 0:
        return [part.clone() for part in state.unflatten(0, (n, -1))]   # copies: a saved view saves it all
    return [state] * n


def stack_models(models: list[nn.Module]) -> nn.Module:
    """`models` (one architecture) as one stacked network holding their parameters and buffers (a frozen
    parameter, such as a momentum target's, stays frozen)."""
    stacked = stack_module(models[0], len(models))
    stacked.load_state_dict(stack_state([m.state_dict() for m in models]))
    frozen = {name for name, p in models[0].named_parameters() if not p.requires_grad}
    for name, p in stacked.named_parameters():
        p.requires_grad_(name not in frozen)
    return stacked


def stack_inputs(xs: list[torch.Tensor]) -> torch.Tensor:
    """Each model's input batch (B, C, ...) as the stacked network's (B, N * C, ...), model i in group i."""
    x = torch.cat(xs, dim=1)
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
