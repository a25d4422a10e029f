"""InfoNCE and its decoupled variants, as pure functions of two batches of projections.

All three take raw projections z1, z2 (view 1 and view 2 of the same N images), l2-normalise
them, and average over all 2N anchors (both views act as anchors). With s(i, k) the cosine
similarity and i' the other view of anchor i:

    InfoNCE  L_i = -s(i,i')/t + log sum_{k != i}          exp(s(i,k)/t)
    DCL      L_i = -s(i,i')/t + log sum_{k != i, k != i'} exp(s(i,k)/t)
    DCLW     L_i = -w_i s(i,i')/t + (the DCL denominator)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _similarities(z1: torch.Tensor, z2: torch.Tensor, temperature: float):
    """Logits s(i, k)/t of all 2N anchors against all 2N samples, the anchor itself masked out.

    Returns logits (2N, 2N) with -inf on the diagonal and `pos` (2N,), the index of each positive.
    """
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)          # (2N, D)
    logits = z @ z.T / temperature                                # (2N, 2N)
    n2 = logits.shape[0]
    self_mask = torch.eye(n2, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    pos = torch.arange(n2, device=z.device).roll(n2 // 2)        # i <-> i + N
    return logits, pos


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent of SimCLR (Chen et al. 2020, eq. 1): L_i = -log exp(s(i,i')/t) / sum_{k!=i} exp(s(i,k)/t).

    Shape: z1 (N, D) projections of view 1; z2 (N, D) of view 2; returns a scalar.
    """
    logits, pos = _similarities(z1, z2, temperature)
    return F.cross_entropy(logits, pos)


def _decoupled_terms(z1, z2, temperature):
    """Positive logit s(i,i')/t and the DCL log-denominator for every anchor. Shape: (2N,), (2N,)."""
    logits, pos = _similarities(z1, z2, temperature)
    positive = logits.gather(1, pos[:, None]).squeeze(1)
    # the one line where DCL differs from InfoNCE: the positive leaves the denominator
    negatives = logits.scatter(1, pos[:, None], float("-inf"))
    return positive, torch.logsumexp(negatives, dim=1)


def dcl(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Decoupled contrastive loss (Yeh et al. 2022, eq. 6): L_i = -s(i,i')/t + log sum_{k!=i,i'} exp(s(i,k)/t).

    Shape: z1 (N, D); z2 (N, D); returns a scalar.
    """
    positive, log_denominator = _decoupled_terms(z1, z2, temperature)
    return (log_denominator - positive).mean()


def dclw(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1, sigma: float = 0.5) -> torch.Tensor:
    """Weighted DCL (Yeh et al. 2022, eq. 7): the positive term scaled by a von Mises-Fisher weight
    w_i = 2 - N exp(s(i,i')/sigma) / sum_j exp(s(j,j')/sigma), so that harder positives weigh more.

    w is detached (a weight, not a path for gradients), as in lightly's implementation; the paper
    does not say. Shape: z1 (N, D); z2 (N, D); returns a scalar.
    """
    positive, log_denominator = _decoupled_terms(z1, z2, temperature)
    n = z1.shape[0]
    s_pos = (positive * temperature).detach()[:n]                 # s(i,i') for the N images
    w = 2 - n * torch.softmax(s_pos / sigma, dim=0)               # (N,)
    return (log_denominator - w.repeat(2) * positive).mean()


@torch.no_grad()
def coupling_multiplier(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """The negative-positive coupling multiplier of the InfoNCE gradient (Yeh et al. 2022, eq. 3):
    q_B,i = 1 - exp(s(i,i')/t) / sum_{k != i} exp(s(i,k)/t), for every anchor.

    Small, widely varying q_B (small batches, easy positives) scales the gradient down.
    Shape: z1 (N, D); z2 (N, D); returns (2N,).
    """
    logits, pos = _similarities(z1, z2, temperature)
    return 1 - torch.softmax(logits, dim=1).gather(1, pos[:, None]).squeeze(1)
