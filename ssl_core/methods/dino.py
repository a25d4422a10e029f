"""DINO: a student matches a momentum teacher's centred, sharpened outputs across multi-crop views.

Recipe (RunConfig fields; paper default at 224 px -> ours at 32 px):
- crops: 2 global crops of 224 px, area in [0.4, 1], and 8 local crops of 96 px, area in
  [0.05, 0.4] -> 2 global crops at the full side, area in [dino_crop_split, 1], and no local
  crops at 32 px (`dino_local_crops` = 0). Local crops at half the side (16 px; a ViT sees them on
  a smaller patch grid, its position embeddings interpolated) are an option for larger images: at
  32 px, 4 of them lowered kNN accuracy (ResNet-10 width 8, 4 epochs on the curated world, BN head:
  11.6 with them vs 14.0 without, mean of 2 and 3 seeds), as solo-learn's CIFAR recipe also goes without.
  Colour jitter as SimCLR's; no blur or solarisation (they wash out 32 px images).
- head: 3-layer MLP 2048 wide, l2-normalised 256-d bottleneck, weight-normalised last layer with
  its norm fixed to 1, 65536 outputs -> proj_hidden (512) wide, proj_dim (128) bottleneck,
  dino_out_dim = 2048 outputs; batch norm after the hidden layers (the official code's
  `use_bn_in_head`, its choice for convnets). Without it our runs stay near uniform outputs (loss
  within 0.3 of log K); seed-0 kNN without / with it: 8.2 / 11.2 with 4 local crops, 11.6 / 15.6 without
  (random init 7.6). On vit_mini the two changes together: 5.4 -> 6.9 (random init 3.5).
- temperatures: student 0.1, teacher 0.04 (no warm-up: we keep the paper's starting value);
  centre momentum 0.9; teacher momentum ema_momentum, cosine to 1 (paper 0.996 -> ours 0.99).
- not scaled down, left out: the last layer frozen for the first epoch (our runs are a few epochs).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ssl_core.config import RunConfig
from ssl_core.data.views import color_jitter, normalize_float, resized_crop_flip, views
from ssl_core.ddp import gather
from ssl_core.losses import dino, dino_center
from ssl_core.methods import register_method, to_channels_last
from ssl_core.methods.momentum import MomentumTarget
from ssl_core.models import build_encoder

LOCAL_MIN_SCALE = 0.05   # smallest area fraction of a local crop (DINO's default)


class DINOHead(nn.Module):
    """DINO's projection head (Caron et al. 2021, Sec. 3.1): MLP (Linear-BN-GELU twice, then Linear) ->
    l2-normalised bottleneck -> weight-normalised linear layer to `out_dim` prototypes, its weight norm fixed to 1."""

    def __init__(self, d_in: int, hidden: int, bottleneck: int, out_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.GELU(),
                                 nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.GELU(),
                                 nn.Linear(hidden, bottleneck))
        self.last = weight_norm(nn.Linear(bottleneck, out_dim, bias=False))
        with torch.no_grad():
            self.last.parametrizations.weight.original0.fill_(1).requires_grad_(False)   # the norm g, fixed

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Shape: h (N, d_in) -> (N, out_dim)."""
        return self.last(F.normalize(self.mlp(h), dim=-1))


def local_views(x: torch.Tensor, g: torch.Generator, n_views: int, max_scale: float, out_size: int,
                jitter: float, hue: float, gray_p: float) -> list[torch.Tensor]:
    """`n_views` small crops (area in [LOCAL_MIN_SCALE, max_scale]) of a uint8 batch, jittered and normalised.

    Built from views.py's parts because `views` has no upper bound on the crop area.
    Shape: x (N, 3, H, W) uint8; each view (N, 3, out_size, out_size) float.
    """
    x01 = x.float() / 255
    crops = (resized_crop_flip(x01, g, LOCAL_MIN_SCALE, out_size, max_scale) for _ in range(n_views))
    return [normalize_float(color_jitter(crop, g, jitter, hue, gray_p=gray_p)) for crop in crops]


class DINO(MomentumTarget):
    """Student encoder + head trained on all crops against the EMA teacher's view of the two global crops."""

    def __init__(self, cfg: RunConfig, num_classes: int):
        super().__init__(cfg)
        self.encoder = build_encoder(cfg.encoder, cfg.width, cfg.image_size)
        self.head = DINOHead(self.encoder.dim, cfg.proj_hidden, cfg.proj_dim, cfg.dino_out_dim)
        self.make_target("encoder", "head")
        self.register_buffer("center", torch.zeros(cfg.dino_out_dim))
        patch = getattr(self.encoder, "patch_size", 1)
        self.local_size = max(patch, cfg.image_size // 2 // patch * patch)   # half the side, in whole patches

    def forward(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        c, n = self.cfg, len(x)
        global_ = to_channels_last(torch.cat(views(x, g, 2, crop_min_scale=c.dino_crop_split, jitter=c.jitter,
                                                   hue=c.hue, gray_p=c.gray_p)))                          # (2N, 3, H, W)
        student = [self.head(self.encoder(global_))]                                     # (2N, K)
        if c.dino_local_crops:
            local = torch.cat(local_views(x, g, c.dino_local_crops, c.dino_crop_split, self.local_size,
                                          c.jitter, c.hue, c.gray_p))                              # (LN, 3, h, w)
            student.append(self.head(self.encoder(to_channels_last(local))))             # (LN, K)
        student = torch.cat(student).unflatten(0, (-1, n))                               # (2 + L, N, K)
        with torch.no_grad():
            teacher = self.target["head"](self.target["encoder"](global_)).unflatten(0, (2, n))   # (2, N, K)
        loss = dino(student, teacher, self.center, c.dino_student_temperature, c.dino_teacher_temperature)
        (everyone,) = gather(teacher.flatten(0, 1))                   # (2N, K), every rank's under torchrun
        self.center.copy_(dino_center(self.center, everyone[None], c.dino_center_momentum))
        return loss


register_method("dino", DINO)
