"""train(cfg): one readable pretraining loop, checkpointed every epoch and resumable.

The same config gives the same weights on the same machine: the model is initialised from
`cfg.seed`, each epoch's shuffle comes from (seed, epoch), and the augmentation generator's
state travels with the checkpoint, so a run killed mid-way resumes to exactly the same result.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Generator

import numpy as np
import torch
from torch import nn

from ssl_core import ddp
from ssl_core.config import RunConfig, steps_per_epoch
from ssl_core.data import ImageSet, load_dataset
from ssl_core.io import safe_load, save_atomic, sweep_stale_temporaries
from ssl_core.methods import METHODS
from ssl_core.methods.base import Method, Stage
from ssl_core.progress import progress as progress_bar
from ssl_core.stack import stack_inputs, stack_models, stack_state, stackable, unstack_state


class Diverged(RuntimeError):
    """The loss became NaN or infinite; the run is a failure and is never cached as a success."""


@dataclass
class TrainResult:
    model: Method
    losses: list[float]     # mean loss per epoch (the last entry may cover a partial epoch)
    steps: int
    seconds: float          # wall time spent training, summed over resumed segments
    num_classes: int        # of the pretraining set (what the method's heads were built for)
    device: str
    precision: str
    mode: str = "alone"     # "alone", "stacked" (ssl_core.stack) or, resumed in the other, "alone+stacked"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> bf16 where the hardware computes it natively (CUDA with bf16, CPU with AMX or
    AVX512-BF16), else fp32; on CPUs without them bf16 autocast is emulated and slower."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu" and (torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()):
        return "bf16"
    return "fp32"


def tune_device(device: torch.device) -> None:
    """On CUDA, let cuDNN time its convolution algorithms at each new shape and keep the fastest: every step
    of a run has the same shapes, so the timing pays from the second step on. Off CUDA, nothing."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def lr_schedule(cfg: RunConfig, total_steps: int, per_epoch: int) -> np.ndarray:
    """Linear warmup to cfg.lr (at most 10% of the run), then cosine decay to 0. Shape: (total_steps,)."""
    warmup = int(min(cfg.warmup_epochs * per_epoch, 0.1 * total_steps))
    step = np.arange(total_steps)
    cosine = 0.5 * (1 + np.cos(np.pi * (step - warmup) / max(1, total_steps - warmup)))
    return cfg.lr * np.where(step < warmup, (step + 1) / max(1, warmup), cosine)


def load_checkpoint(path: Path, device: torch.device) -> dict | None:
    """The checkpoint at `path` (tensors and plain data only), or None if there is none or it is damaged or
    refused (then it is removed with a warning and training restarts from scratch)."""
    return safe_load(path, map_location=device)


def make_optimizer(cfg: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    """`cfg.optimizer` over `model`'s parameters, as one fused kernel on a CPU or CUDA device.

    The fused AdamW step is ~5x the default (foreach) one on a CPU (7.5 vs 40 ms for ResNet-18's 11M
    parameters, 2 cores: ~8% of a width-64 step), the same update up to rounding.
    """
    fused = next(model.parameters()).device.type in ("cpu", "cuda")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay,
                               fused=fused)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def run_stages(stages: Generator[Stage, TrainResult, torch.Tensor], progress: bool = True) -> torch.Tensor:
    """Train each Stage a method's `prepare` yields, in order, sending back its result; what `prepare` returns."""
    result = None
    while True:
        try:
            stage = stages.send(result)
        except StopIteration as done:
            return done.value
        result = train(stage.cfg, stage.workdir, stage.data, progress)


def train(cfg: RunConfig, workdir: Path, data: ImageSet | None = None, progress: bool = True) -> TrainResult:
    """Pretrain `cfg.method` on `data` (default: the train split of `cfg.dataset`) for `cfg.epochs`.

    `workdir/checkpoint.pt` is written at every epoch end and picked up when the run restarts.
    """
    (result,) = train_group([cfg], [workdir], data, progress)
    if isinstance(result, Diverged):
        raise result
    return result


def train_group(cfgs: list[RunConfig], workdirs: list[Path], data: ImageSet | None = None,
                progress: bool = True) -> list[TrainResult | Diverged]:
    """Pretrain runs of one shape (configs equal but for the seed) together, each checkpointed in its workdir as
    train() does; one run alone trains as itself. Several train as one stacked network (ssl_core.stack), each on
    its own shuffle and augmentation: a member's result does not depend on which others share its stack, only on
    being stacked, which its result records (`mode`). A member whose loss diverges comes back as Diverged (it
    keeps training beside the others: their parameters are disjoint, so its NaNs never reach them)."""
    _check_group(cfgs, workdirs)
    starts = [_checkpoint_step(d) for d in workdirs]
    if len(set(starts)) > 1:    # a group killed while writing its checkpoints: the members of each step go on together
        results: dict[int, TrainResult | Diverged] = {}
        for start in dict.fromkeys(starts):
            part = [i for i, s in enumerate(starts) if s == start]
            results.update(zip(part, train_group([cfgs[i] for i in part], [workdirs[i] for i in part], data, progress)))
        return [results[i] for i in range(len(cfgs))]

    # --- setup: data, models, optimiser, schedules ----------------------------------------------
    cfg, n = cfgs[0], len(cfgs)
    for workdir in workdirs:
        workdir.mkdir(parents=True, exist_ok=True)
        sweep_stale_temporaries(workdir)                            # left by a save that was killed
    device = ddp.setup(resolve_device(cfg.device))          # torchrun: join the group, own GPU
    rank, world = ddp.world()                                # (0, 1) in a plain process
    precision = resolve_precision(cfg.precision, device)
    tune_device(device)
    if data is None:
        data = load_dataset(cfg.dataset, "train", image_size=cfg.image_size, size=cfg.dataset_size)
    per_epoch = steps_per_epoch(cfg, len(data))
    models, labels = [], []
    for c, workdir in zip(cfgs, workdirs):
        torch.manual_seed(c.seed)
        models.append(METHODS[c.method](c, data.num_classes).to(device, memory_format=torch.channels_last))
        # a method that needs the data itself gets it first and says what it learns from per image: CLIP
        # each image's caption tokens; DnC its cluster ids, after the base model and experts it yields are trained
        labels.append(run_stages(models[-1].prepare(data, workdir), progress).to(device))
    total = round(models[0].loop_epochs * per_epoch)                 # DnC: the distillation's share
    lrs = lr_schedule(cfg, total, per_epoch)
    # one generator per member (augmentation), one stream per rank
    gs = [torch.Generator(device=device).manual_seed(c.seed * world + rank) for c in cfgs]
    images = data.images.to(device)                                  # uint8 stays uint8 on device

    # --- resume from the last epoch checkpoint, if any -------------------------------------------
    ckpt_paths = [d / "checkpoint.pt" for d in workdirs]
    start, losses, seconds, optimizer_states = 0, [[] for _ in cfgs], [0.0] * n, []
    modes = [set() for _ in cfgs]                                    # how each member has trained so far
    for i, path in enumerate(ckpt_paths):
        ckpt = load_checkpoint(path, device)
        if ckpt is None:
            continue
        models[i].load_state_dict(ckpt["model"])
        optimizer_states.append(ckpt["optimizer"])
        if len(ckpt["generators"]) != world:
            raise ValueError(f"checkpoint {path} was written by {len(ckpt['generators'])} processes: "
                             f"resume it with as many (this is {world}) or delete it")
        gs[i].set_state(ckpt["generators"][rank].cpu())
        start, losses[i], seconds[i] = ckpt["step"], ckpt["losses"], ckpt["seconds"]
        modes[i].update(ckpt.get("modes", ["alone"]))
    stacked = n > 1
    net = stack_models(models) if stacked else ddp.data_parallel(models[0], cfg.sync_bn, device)   # DDP: torchrun
    net = torch.compile(net) if cfg.compile else net                 # the step compiles on its first call
    optimizer = make_optimizer(cfg, net if stacked else models[0])
    if optimizer_states:
        optimizer.load_state_dict(stack_state(optimizer_states) if stacked else optimizer_states[0])
    for m in modes:
        m.add("stacked" if stacked else "alone")

    # --- the loop ----------------------------------------------------------------------------------
    net.train()
    seeds = ",".join(str(c.seed) for c in cfgs)
    bar = progress_bar(total=total, initial=start, desc=f"{cfg.method} b{cfg.batch_size} s{seeds}", leave=False,
                       disable=not progress or rank != 0)
    t0, epoch_loss, epoch_steps = time.perf_counter(), torch.zeros(n, device=device), 0
    diverged: list[Diverged | None] = [None] * n
    for step in range(start, total):
        epoch, i = divmod(step, per_epoch)
        if i == 0 or step == start:
            orders = [torch.randperm(len(data), generator=torch.Generator().manual_seed(c.seed * 100_003 + epoch))
                      .to(device) for c in cfgs]
        idxs = [ddp.shard(order[i * cfg.batch_size:(i + 1) * cfg.batch_size], rank, world) for order in orders]
        for group in optimizer.param_groups:
            group["lr"] = lrs[step]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            if stacked:
                batches = [(images[idx], y[idx]) for idx, y in zip(idxs, labels)]
                member_losses = stacked_losses(net, models, batches, gs)
            else:
                member_losses = net(images[idxs[0]], labels[0][idxs[0]], gs[0]).unsqueeze(0)
        optimizer.zero_grad(set_to_none=True)
        member_losses.sum().backward()          # each member's gradient is its own loss's: their parameters are disjoint
        optimizer.step()
        (net if stacked else models[0]).update_target((step + 1) / total)   # a stacked EMA is each member's
        epoch_loss += member_losses.detach().float()
        epoch_steps += 1
        bar.update()

        # --- epoch end: check for divergence, record, checkpoint --------------------------------
        if i == per_epoch - 1 or step == total - 1:
            means = ddp.mean(epoch_loss / epoch_steps).tolist()       # over ranks
            now = time.perf_counter()
            t0, segment = now, (now - t0) / n                         # each member's share of the wall time
            states = unstack_state(net.state_dict(), n) if stacked else [models[0].state_dict()]
            # plain data only, for weights_only loading: the lr set from `lrs` is numpy's float64
            optimizer_state = optimizer.state_dict()
            optimizer_state["param_groups"] = [{**g, "lr": float(g["lr"])} for g in optimizer_state["param_groups"]]
            optimizer_parts = unstack_state(optimizer_state, n) if stacked else [optimizer_state]
            generators = ddp.gather_objects([g.get_state() for g in gs])
            for j, mean in enumerate(means):
                if diverged[j] is not None:
                    continue
                if not math.isfinite(mean):
                    diverged[j] = Diverged(f"{cfg.method}: loss became {mean} in epoch {epoch} (lr={cfg.lr}, "
                                           f"batch_size={cfg.batch_size}, temperature={cfg.temperature}, "
                                           f"seed={cfgs[j].seed})")
                    continue
                losses[j].append(mean)
                seconds[j] += segment
                if rank == 0:                                            # the cache has one writer
                    save_atomic({"model": states[j], "optimizer": optimizer_parts[j],
                                 "generators": [ranks[j] for ranks in generators], "step": step + 1,
                                 "losses": losses[j], "seconds": seconds[j], "modes": sorted(modes[j])},
                                ckpt_paths[j])
            bar.set_postfix(loss=" ".join(f"{mean:.3f}" for mean in means))
            epoch_loss, epoch_steps = torch.zeros(n, device=device), 0
            if all(d is not None for d in diverged):
                break
    bar.close()
    if stacked:
        for model, state in zip(models, unstack_state(net.state_dict(), n)):
            model.load_state_dict(state)
    results: list[TrainResult | Diverged] = []
    for j, model in enumerate(models):
        model.eval()
        results.append(diverged[j] or TrainResult(model, losses[j], total, seconds[j], data.num_classes, str(device),
                                                  precision, "+".join(sorted(modes[j]))))
    return results


def stacked_losses(net: nn.Module, members: list[Method], batches: list[tuple[torch.Tensor, torch.Tensor]],
                   gs: list[torch.Generator]) -> torch.Tensor:
    """One step's loss of each member of stacked network `net` (ssl_core.stack), shape (N,): member i augments
    its batch (x, y) with its generator, the stack runs every member's views at once (channel group i), and
    member i scores its slice of the output."""
    inputs = [m.inputs(x, y, g) for m, (x, y), g in zip(members, batches, gs)]
    out = net.network(stack_inputs([v for v, _ in inputs]))
    return torch.stack([m.objective(o, t) for m, o, (_, t) in zip(members, out.chunk(len(members), 1), inputs)])


def _check_group(cfgs: list[RunConfig], workdirs: list[Path]) -> None:
    """Refuse a group that cannot train together, before any compute."""
    if not cfgs or len(cfgs) != len(workdirs):
        raise ValueError(f"train_group needs one workdir per config (got {len(cfgs)} configs, "
                         f"{len(workdirs)} workdirs)")
    if len({dataclasses.replace(c, seed=0) for c in cfgs}) > 1 or len({c.seed for c in cfgs}) < len(cfgs):
        raise ValueError("a group's configs must be equal but for the seed, each seed once")
    if len(cfgs) > 1:
        reason = unstackable(cfgs[0])
        if reason:
            raise ValueError(f"runs of {cfgs[0].method} cannot train stacked: {reason}")


def unstackable(cfg: RunConfig) -> str | None:
    """Why runs of `cfg`'s shape cannot train as one stacked network, or None if they can."""
    if cfg.compile:
        return "compile=True"
    if ddp.world()[1] > 1:
        return "data-parallel (torchrun)"
    model = METHODS[cfg.method](cfg, 10)
    if not model.stackable:
        return f"method {cfg.method!r} is not written as inputs -> network -> objective"
    return None if stackable(model) else f"encoder {cfg.encoder!r} has layers that cannot be stacked"


def _checkpoint_step(workdir: Path) -> int:
    ckpt = load_checkpoint(workdir / "checkpoint.pt", torch.device("cpu"))
    return 0 if ckpt is None else ckpt["step"]
