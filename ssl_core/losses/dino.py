"""DINO's self-distillation loss and its centring update, as pure functions of head outputs."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def dino(student_out, teacher_out: torch.Tensor, center: torch.Tensor,
         student_temperature: float = 0.1, teacher_temperature: float = 0.04) -> torch.Tensor:
    """DINO (Caron et al. 2021, eqs. 1-3): L = mean_{x in globals, x' in crops, x' != x} H(P_t(x), P_s(x')),

    with H(a, b) = -sum_k a_k log b_k, P_s(x') = softmax(g_s(x') / tau_s) and the centred, sharpened
    teacher P_t(x) = softmax((g_t(x) - c) / tau_t), detached. Crops 0 and 1 of the student are the
    two global crops seen by the teacher (same order); a pair of the same crop is skipped. H is
    averaged over the batch, then over the 2 * n_crops - 2 pairs.
    Shape: student_out (n_crops, N, K) or a list of n_crops tensors (N, K), global crops first.
    Shape: teacher_out (2, N, K) teacher outputs of the two global crops.
    Shape: center (K,) running mean of teacher outputs (see dino_center); returns a scalar.
    """
    student = torch.stack(list(student_out)) if not torch.is_tensor(student_out) else student_out
    log_p_s = F.log_softmax(student.float() / student_temperature, dim=-1)                   # (V, N, K)
    p_t = F.softmax((teacher_out.detach().float() - center.float()) / teacher_temperature, dim=-1)  # (2, N, K)
    n_crops, n = log_p_s.shape[:2]
    cross_entropy = -torch.einsum("tnk,vnk->tv", p_t, log_p_s) / n                           # (2, V)
    different = ~torch.eye(2, n_crops, dtype=torch.bool, device=cross_entropy.device)
    return cross_entropy[different].mean()


@torch.no_grad()
def dino_center(center: torch.Tensor, teacher_out: torch.Tensor, momentum: float = 0.9) -> torch.Tensor:
    """DINO centring (Caron et al. 2021, eq. 4): c <- m c + (1 - m) mean_i g_t(x_i), over crops and batch.

    Shape: center (K,); teacher_out (2, N, K) teacher outputs of the global crops; returns (K,).
    """
    return momentum * center + (1 - momentum) * teacher_out.float().mean(dim=(0, 1))
