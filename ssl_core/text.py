"""Captions for CLIP: a word-level tokenizer over the world's caption vocabulary and a small text encoder.

The world's captions are short attribute phrases ("a small red striped star on gravel"), so a
closed word vocabulary covers them exactly; a byte-pair tokenizer would only split known words.
The encoder is a 2-layer pre-norm transformer over learned word and position embeddings, mean
pooled over the real (non-pad) tokens. A transformer rather than a bag of words because word
order can carry meaning (which colour word belongs to the object and which to the background),
and at 2 layers over ~8 tokens it costs a few MFLOPs per caption, far below the image encoder.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from ssl_core.checks import at_least

PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"[a-z0-9]+")


def words(caption: str) -> list[str]:
    """Lower-cased alphanumeric words; punctuation and underscores separate words."""
    return _WORD.findall(caption.lower())


def pseudo_caption(class_name: str) -> str:
    """A caption built from a label, as the FLOPs paper does to train CLIP on labelled sets
    (unverified, docs/PAPERS.md)."""
    return f"a photo of a {' '.join(words(class_name))}"


class CaptionTokenizer:
    """Deterministic word-level tokenizer: <pad> = 0, <unk> = 1, then the captions' words sorted.

    `max_len` defaults to the longest caption it was built from; longer captions are truncated,
    and a caption without words becomes a single <unk> (so no row is all padding).
    """

    def __init__(self, captions: list[str], max_len: int | None = None):
        tokenised = [words(c) for c in captions]
        self.vocab = [PAD, UNK] + sorted({w for ws in tokenised for w in ws})
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.max_len = max_len if max_len is not None else max(map(len, tokenised), default=1)
        at_least("max_len", self.max_len, 1)

    def __len__(self) -> int:
        return len(self.vocab)

    def __call__(self, captions: list[str]) -> torch.Tensor:
        """Shape: returns (len(captions), max_len) int64 token ids, right-padded with 0."""
        ids = torch.zeros(len(captions), self.max_len, dtype=torch.long)
        for row, caption in enumerate(captions):
            tokens = [self.index.get(w, 1) for w in words(caption)][: self.max_len] or [1]  # empty -> <unk>
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        return ids


class TextEncoder(nn.Module):
    """Word + position embeddings, a small transformer, mean over real tokens -> (N, dim)."""

    def __init__(self, vocab_size: int, max_len: int, dim: int = 128, depth: int = 2, heads: int = 4):
        super().__init__()
        self.dim = dim
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Shape: tokens (N, L) int64 ids from CaptionTokenizer, L <= max_len; returns (N, dim)."""
        pad = tokens == 0                                                     # (N, L)
        x = self.embed(tokens) + self.pos[: tokens.shape[1]]                  # (N, L, dim)
        x = self.norm(self.blocks(x, src_key_padding_mask=pad))
        keep = (~pad).unsqueeze(-1).to(x.dtype)                               # (N, L, 1)
        return (x * keep).sum(1) / keep.sum(1).clamp(min=1)
