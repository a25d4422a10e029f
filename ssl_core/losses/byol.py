"""BYOL's regression loss: online predictions regress the other view's target projections."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def byol(p1: torch.Tensor, p2: torch.Tensor, z1_target: torch.Tensor, z2_target: torch.Tensor) -> torch.Tensor:
    """BYOL (Grill et al. 2020, eq. 2): L = ||q/|q| - sg(z')/|z'| ||^2 = 2 - 2 cos(q, sg(z')), symmetrised.

    The total is L + L~ as in the paper: view 1's prediction regresses view 2's target and vice
    versa, each term averaged over the batch, so the loss lies in [0, 8]. Targets are detached here.
    Shape: p1 (N, D) online predictions of view 1.
    Shape: p2 (N, D) online predictions of view 2.
    Shape: z1_target (N, D) target projections of view 1.
    Shape: z2_target (N, D) target projections of view 2; returns a scalar.
    """
    def regress(p, z):
        return (2 - 2 * F.cosine_similarity(p.float(), z.detach().float(), dim=1)).mean()

    return regress(p1, z2_target) + regress(p2, z1_target)
