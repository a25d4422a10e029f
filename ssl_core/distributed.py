"""The entry point of data-parallel pretraining: torchrun starts N copies of it, which together train one run
into the cache (the helpers they share are in ssl_core.ddp).

    torchrun --nproc_per_node=4 -m ssl_core.distributed path/to/config.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch.distributed as dist

from ssl_core import ddp
from ssl_core.config import RunConfig
from ssl_core.preflight import valid
from ssl_core.runs import pretrain, read_record, run_dir
from ssl_core.train import resolve_device, train


def pretrain_parallel(cfg: RunConfig, progress: bool = True) -> None:
    """Pretrain `cfg` into the cache on all of torchrun's processes: rank 0 through runs.pretrain
    (the cache's one writer), the others through train() alone. A cached run is skipped by all."""
    valid("cfg", cfg)
    ddp.setup(resolve_device(cfg.device))
    rank = ddp.world()[0]
    cached = ddp.gather_objects(rank == 0 and read_record(cfg) is not None)[0]   # rank 0 looks, all follow
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
