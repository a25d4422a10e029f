"""Divide and Contrast's distillation loss: one student regresses the base's and its expert's projections."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ssl_core.checks import choose

DISTILL_TARGETS = ("both", "base", "experts")


def dnc_distill(r_base: torch.Tensor | None, z_base: torch.Tensor | None,
                r_expert: torch.Tensor | None = None, z_expert: torch.Tensor | None = None,
                targets: str = "both") -> torch.Tensor:
    """Divide and Contrast (Tian et al. 2021, distillation step): L = 1/2 ||r_b - z_b||^2 + 1/2 ||r_k - z_k||^2.

    r_b, r_k are the student's two regression heads on one view, z_b, z_k the base model's and
    the image's cluster expert's projections of that view; all four are l2-normalised and the
    targets detached; the squared distance is averaged over the batch. `targets` picks the terms
    for the paper's ablations: "base" or "experts" drop the other term (its weight stays 1/2),
    and the arguments of the dropped term may be None.
    Shape: r_base (N, D) student prediction of the base projection.
    Shape: z_base (N, D) base model projection.
    Shape: r_expert (N, D) student prediction of the expert projection.
    Shape: z_expert (N, D) projection by each image's own cluster expert; returns a scalar.
    """
    choose("targets", targets, DISTILL_TARGETS)

    def regress(r, z):
        r, z = F.normalize(r.float(), dim=1), F.normalize(z.detach().float(), dim=1)
        return 0.5 * (r - z).pow(2).sum(dim=1).mean()

    loss = 0.0
    if targets in ("both", "base"):
        loss = loss + regress(r_base, z_base)
    if targets in ("both", "experts"):
        loss = loss + regress(r_expert, z_expert)
    return loss
