"""Data-parallel pretraining under torchrun: N processes that together train exactly one run.

torchrun starts N copies of a program and tells each its RANK and WORLD_SIZE in environment
variables. Each rank takes a contiguous 1/N of every step's global batch (`shard`); the
contrastive methods gather the projections of all ranks (`gather`) so that negatives come from
the global batch; DistributedDataParallel averages the gradients (`data_parallel`); only rank 0
writes to the cache. In a plain process every function here is a no-op, so the trainer has one
code path. The config does not change: `batch_size` is the global batch.

    torchrun --nproc_per_node=4 -m ssl_core.distributed path/to/config.json
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ssl_core.config import RunConfig


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
    """The average of a scalar tensor over ranks (`x` itself in a plain process)."""
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


def pretrain_parallel(cfg: RunConfig, progress: bool = True) -> None:
    """Pretrain `cfg` into the cache on all of torchrun's processes: rank 0 through runs.pretrain
    (the cache's one writer), the others through train() alone. A cached run is skipped by all."""
    from ssl_core.runs import pretrain, read_record, run_dir   # runs imports train, which imports this module
    from ssl_core.train import resolve_device, train

    cfg.validate()
    setup(resolve_device(cfg.device))
    rank = world()[0]
    cached = gather_objects(rank == 0 and read_record(cfg) is not None)[0]   # rank 0 looks, all follow
    if cached:
        return
    if rank == 0:
        pretrain(cfg, progress)
    else:
        train(cfg, run_dir(cfg), progress=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="torchrun --nproc_per_node=N -m ssl_core.distributed",
                                     description="Pretrain one run data-parallel into the ssl_core cache.")
    parser.add_argument("config", type=Path, help="JSON file of RunConfig fields (e.g. a cached run's config.json)")
    args = parser.parse_args(argv)
    pretrain_parallel(RunConfig(**json.loads(args.config.read_text())))
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
