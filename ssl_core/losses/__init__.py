"""Losses: pure functions of embeddings (never of models), one family per module."""
from ssl_core.losses.byol import byol
from ssl_core.losses.clip import clip
from ssl_core.losses.contrastive import coupling_multiplier, dcl, dclw, info_nce
from ssl_core.losses.dino import dino, dino_center
from ssl_core.losses.distill import DISTILL_TARGETS, dnc_distill
from ssl_core.losses.mae import mae, patchify, unpatchify

__all__ = ["info_nce", "dcl", "dclw", "coupling_multiplier", "byol", "clip", "dino", "dino_center",
           "dnc_distill", "DISTILL_TARGETS", "mae", "patchify", "unpatchify"]
