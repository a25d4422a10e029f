"""CLIP: an image encoder and a small text encoder trained to pair each image with its caption.

Captions: the world's per-image captions ("a small red striped star on gravel"), or for a
labelled set without captions the pseudo-caption of the image's class ("a photo of a red striped
star"), as the FLOPs paper does for labelled data (unverified, docs/PAPERS.md). The vocabulary is
built when the method is built, from `cfg.dataset`'s train split (its captions and its classes'
pseudo-captions), so a rebuilt model has the same text encoder. The trainer gets each image's
caption tokens from `prepare(data, ...)`; called with class labels instead, the method uses
their classes' pseudo-captions.

Recipe (RunConfig fields; paper default -> ours):
- joint embedding width 512-1024 -> proj_dim (128), linear projections of both encoders.
- text transformer 12 layers of width 512 -> clip_text_depth = 2 layers of clip_text_dim = 128,
  heads of 32 channels.
- temperature: learnt, 0.07 at step 0 (clip_temperature), its inverse capped at 100 (as CLIP).
- augmentation: CLIP uses a random square crop only -> random resized crop (area in
  [crop_min_scale, 1]) and flip, no colour jitter (colour words are in the captions).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Generator

import torch
from torch import nn

from ssl_core.config import RunConfig
from ssl_core.data import ImageSet, load_dataset
from ssl_core.data.views import views
from ssl_core.ddp import gather
from ssl_core.losses import clip
from ssl_core.methods import register_method, to_channels_last
from ssl_core.methods.base import Method, Stage
from ssl_core.models import build_encoder
from ssl_core.text import CaptionTokenizer, TextEncoder, pseudo_caption

HEAD_DIM = 32   # channels per text attention head (CLIP: 512 / 8 = 64)


class CLIP(Method):
    """Contrastive image-text pretraining (Radford et al. 2021) on captions or label pseudo-captions."""

    def __init__(self, cfg: RunConfig, num_classes: int):
        super().__init__(cfg)
        self.encoder = build_encoder(cfg.encoder, cfg.width, cfg.image_size)
        self.image_projection = nn.Linear(self.encoder.dim, cfg.proj_dim, bias=False)
        with torch.device("cpu"):   # the data stays on the CPU even when the model is built on "meta"
            data = load_dataset(cfg.dataset, "train", image_size=cfg.image_size, size=cfg.dataset_size)
        class_captions = [pseudo_caption(name) for name in data.class_names]
        self.tokenizer = CaptionTokenizer(class_captions + (data.captions or []))
        self.text = TextEncoder(len(self.tokenizer), self.tokenizer.max_len, cfg.clip_text_dim, cfg.clip_text_depth,
                                heads=cfg.clip_text_dim // HEAD_DIM)
        self.text_projection = nn.Linear(cfg.clip_text_dim, cfg.proj_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / cfg.clip_temperature)))
        self.register_buffer("class_tokens", self.tokenizer(class_captions), persistent=False)   # (classes, L)

    def prepare(self, data: ImageSet, workdir: Path) -> Generator[Stage, object, torch.Tensor]:
        """What the trainer feeds as `y`: each image's caption tokens, else its class's pseudo-caption's.

        Shape: returns (N, L) int64 token ids.
        """
        yield from ()
        captions = data.captions or [pseudo_caption(data.class_names[i]) for i in data.labels.tolist()]
        return self.tokenizer(captions)

    def forward(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Shape: y (N, L) caption token ids from `prepare`, or (N,) class labels (their pseudo-captions)."""
        c = self.cfg
        (v,) = views(x, g, 1, crop_min_scale=c.crop_min_scale, jitter=0.0, hue=0.0)
        tokens = self.class_tokens[y] if y.ndim == 1 else y                           # (N, L)
        image_z = self.image_projection(self.encoder(to_channels_last(v)))            # (N, P)
        text_z = self.text_projection(self.text(tokens))                              # (N, P)
        scale = self.logit_scale.clamp(max=math.log(100))                             # CLIP caps 1 / t at 100
        return clip(*gather(image_z, text_z), temperature=torch.exp(-scale))        # global batch under torchrun


register_method("clip", CLIP)
