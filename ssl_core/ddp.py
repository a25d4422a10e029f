"""Data-parallel training under torchrun, the helpers: N processes that together train exactly one run.

torchrun starts N copies of a program and tells each its RANK and WORLD_SIZE in environment
variables. Each rank takes a contiguous 1/N of every step's global batch (`shard`); the
contrastive methods gather the projections of all ranks (`gather`) so that negatives come from
the global batch; DistributedDataParallel averages the gradients (`data_parallel`); only rank 0
writes to the cache. In a plain process every function here is a no-op, so the trainer has one
code path. The config does not change: `batch_size` is the global batch. The entry point that torchrun
starts is ssl_core.distributed.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def world() -> tuple[int, int]:
    """(rank, world_size) of this process: (0, 1) unless a process group is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group (once) when this process was started by torchrun with more
    than one process: NCCL on GPUs, gloo on CPUs. Returns the device this rank trains on: its own
    GPU `cuda:LOCAL_RANK` when `device` is a GPU, else `device`."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")   # reads MASTER_ADDR, RANK, ...
    return device


def shard(idx: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank `rank`'s contiguous part of a step's global batch, so that concatenating the ranks'
    parts in rank order (what `gather` does) gives back the global batch in its order.

    Shape: idx (B,) indices of the global batch; returns (B / world_size,).
    """
    if len(idx) % world_size:
        raise ValueError(f"batch_size={len(idx)} is not allowed on {world_size} processes: "
                         f"the global batch must be a multiple of the number of processes")
    return idx.view(world_size, -1)[rank]


class _AllGather(torch.autograd.Function):
    """all_gather along dim 0 whose backward sums every rank's gradient for this rank's rows.

    Hand-written from the public collectives because torch's differentiable all_gather
    (torch.distributed.nn.functional) is deprecated in favour of a private module.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)                                           # sum over ranks
        return grad.view(dist.get_world_size(), -1, *grad.shape[1:])[dist.get_rank()]


def gather(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each tensor concatenated over all ranks along dim 0, in rank order, with gradients.

    Every rank then computes the same global loss; the backward sends each rank the gradient of
    its own rows summed over the N ranks, i.e. N times the single-process gradient, and DDP's
    average over ranks divides by N again: the parameters get exactly the single-process
    gradient of the global batch. In a plain process the tensors come back unchanged.
    Shape: each tensor (B / world_size, ...); returns each (B, ...).
    """
    if world()[1] == 1:
        return tensors
    return tuple(_AllGather.apply(t) for t in tensors)


def mean(x: torch.Tensor) -> torch.Tensor:
    """The average of a tensor over ranks (`x` itself in a plain process)."""
    if world()[1] == 1:
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / world()[1]


def gather_objects(obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank; [obj] in a plain process."""
    out = [None] * world()[1]
    if len(out) == 1:
        return [obj]
    dist.all_gather_object(out, obj)
    return out


def data_parallel(model: nn.Module, sync_bn: bool, device: torch.device) -> nn.Module:
    """`model` wrapped in DistributedDataParallel (its BatchNorms synchronised across ranks when
    `sync_bn`), or `model` itself in a plain process. The wrapper shares `model`'s parameters:
    keep `model` for state_dict and momentum-target updates, call the wrapper for the loss."""
    if world()[1] == 1:
        return model
    if sync_bn:
        if device.type != "cuda":
            raise ValueError(f"sync_bn=True is not allowed on {device.type}: torch's SyncBatchNorm needs a GPU; "
                             f"set sync_bn=False for per-process BatchNorm statistics")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
