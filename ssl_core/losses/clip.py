"""CLIP's contrastive image-text loss, as a pure function of the two embeddings."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def clip(image_z: torch.Tensor, text_z: torch.Tensor, temperature: float | torch.Tensor = 0.07) -> torch.Tensor:
    """CLIP (Radford et al. 2021, Fig. 3): L = 1/2 [CE(S, I) + CE(S^T, I)], S_ij = cos(u_i, v_j) / t.

    Row i of S scores image i against every caption of the batch and column j caption j against
    every image; the matching pair (the diagonal) is the target both ways. `temperature` may be a
    tensor, e.g. 1 / exp(logit_scale) for CLIP's learnt temperature, and then receives gradients.
    Shape: image_z (N, D) image embeddings u; text_z (N, D) text embeddings v of the same N pairs.
    Shape: temperature () when a tensor; returns a scalar.
    """
    u = F.normalize(image_z.float(), dim=1)
    v = F.normalize(text_z.float(), dim=1)
    logits = u @ v.T / temperature                                        # (N, N)
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
