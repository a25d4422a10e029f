"""Method: the interface every pretraining method implements, each hook the trainer calls written down once.

The trainer (ssl_core.train.train) builds a method as `METHODS[name](cfg, num_classes)`, then
    1. labels = the value `prepare(data, workdir)` returns, after training each Stage it yields;
    2. trains `loop_epochs` epochs: per step `loss = forward(x, y, g)`, backward, optimiser step,
       then `update_target(progress)`;
and evaluation takes `encoder`, the part that transfers. Adding a method: README, "Adding a method".
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Generator

import torch
from torch import nn

from ssl_core.config import RunConfig
from ssl_core.data import ImageSet


@dataclass(frozen=True)
class Stage:
    """A run the trainer trains before a method's own loop (DnC's base model and experts): `cfg` on `data`,
    checkpointed and resumed in `workdir`. The trainer sends the stage's TrainResult back to `prepare`."""
    cfg: RunConfig
    data: ImageSet
    workdir: Path


class Method(nn.Module):
    """A pretraining method: `self.encoder` (images -> features, `encoder.dim` wide) and its heads."""

    encoder: nn.Module
    stackable = False   # whether several runs of one shape may train as one network (ssl_core.stack)

    def __init__(self, cfg: RunConfig):
        super().__init__()
        self.cfg = cfg
        self.loop_epochs = cfg.epochs   # epochs of the trainer's loop (DnC: the distillation's share)

    def forward(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """One step's scalar loss. Augments inside, batched, from generator `g`. Default: the three parts below,
        `objective(network(v), target)` with `v, target = inputs(x, y, g)`; a stackable method is written so.

        Shape: x (N, 3, H, W) uint8 on the training device; y (N, ...) what `prepare` returned, row by row.
        """
        v, target = self.inputs(x, y, g)
        return self.objective(self.network(v), target)

    def inputs(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's input (the augmented views, channels_last) and the objective's target."""
        raise NotImplementedError

    def network(self, v: torch.Tensor) -> torch.Tensor:
        """The layers with parameters, views to what the objective scores: only these are stacked."""
        raise NotImplementedError

    def objective(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The scalar loss of the network's output `out`, without parameters of its own."""
        raise NotImplementedError

    def prepare(self, data: ImageSet, workdir: Path) -> Generator[Stage, object, torch.Tensor]:
        """What the loop feeds as `y`, one row per image of `data` (default: its class labels). A method that
        trains other runs first yields them as Stages (the trainer trains each and sends back its result)."""
        yield from ()
        return data.labels

    def update_target(self, progress: float) -> None:
        """Called after every optimiser step, `progress` in (0, 1] the fraction of the loop done: a momentum
        target's update (ssl_core.methods.momentum). Default: nothing."""
