"""The curation gap's mechanism (Tian, Henaff & van den Oord 2021, Sec. 3): on uncurated data the
negatives in a contrastive batch are mostly irrelevant to the anchor (other concepts, other
superclasses), so the loss is solved with coarse features; Divide and Contrast's clusters bring
the relevant, harder negatives back.

Two measurements over the batches a contrastive method would see, drawn either uniformly from
all images (SimCLR, MoCLR) or each from one cluster (a DnC expert):
- `negative_relevance`: per anchor, the share of its B - 1 negatives of its own superclass and
  of its own class (the latter are false negatives);
- `negative_similarities`: cosine similarities between an anchor's projection and its negatives'
  (from one fixed model, so only the batching differs); `similarity_histogram` stores them as a
  histogram with the run, and `dnc_clusters` stores a DnC run's cluster of each image, so the panel
  needs no weights once the run is in the results store.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ssl_core.config import RunConfig
from ssl_core.checks import at_least
from ssl_core.evaluate.features import extract_features
from ssl_core.runs import cached_rows, eval_id, load_model, run_dir

HISTOGRAM_BINS = np.linspace(-1, 1, 81)   # cosine similarity, 0.025 wide


def draw_batches(n: int, batch_size: int, n_batches: int, seed: int = 0,
                 groups: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Index batches of `batch_size` images without replacement: from all `n` images, or (with
    `groups`, one id per image) each batch from one group picked with probability proportional to
    its size, as a DnC expert sees only its own cluster. Groups smaller than the batch are skipped.
    """
    at_least("batch_size", batch_size, 2)
    at_least("n_batches", n_batches, 1)
    g = torch.Generator().manual_seed(seed)
    if groups is None:
        if batch_size > n:
            raise ValueError(f"batch_size={batch_size} is not allowed: there are only {n} images")
        return [torch.randperm(n, generator=g)[:batch_size] for _ in range(n_batches)]
    members = [(groups == k).nonzero().squeeze(1) for k in groups.unique()]
    members = [m for m in members if len(m) >= batch_size]
    if not members:
        raise ValueError(f"batch_size={batch_size} is not allowed: every group is smaller than a batch")
    sizes = torch.tensor([len(m) for m in members], dtype=torch.float)
    picks = torch.multinomial(sizes, n_batches, replacement=True, generator=g)
    return [members[k][torch.randperm(len(members[k]), generator=g)[:batch_size]] for k in picks.tolist()]


def negative_relevance(labels: torch.Tensor, superclass: torch.Tensor, batches: list[torch.Tensor]) -> pd.DataFrame:
    """Per anchor of each batch: the share of its B - 1 negatives that share its superclass
    ("same_superclass") and its class ("same_class", false negatives). Shape: labels, superclass (N,)."""
    rows = []
    for index in batches:
        y, s = labels[index], superclass[index]
        b = len(index)
        off = ~torch.eye(b, dtype=torch.bool)
        same_class = ((y[:, None] == y[None]) & off).sum(1) / (b - 1)
        same_super = ((s[:, None] == s[None]) & off).sum(1) / (b - 1)
        rows.append(pd.DataFrame({"same_superclass": same_super.numpy(), "same_class": same_class.numpy()}))
    return pd.concat(rows, ignore_index=True)


@torch.no_grad()
def negative_similarities(project: nn.Module, images: torch.Tensor, batches: list[torch.Tensor],
                          per_anchor: int = 8) -> pd.DataFrame:
    """Cosine similarity s(i, k) = z_i . z_k / (|z_i| |z_k|) between each anchor's projection z = project(x)
    and those of `per_anchor` of its negatives (the next ones in its batch), on un-augmented images.
    `project` is an encoder followed by its projector, e.g. DnC's base model; it runs in eval mode (extract_features).
    Shape: images (N, 3, H, W) uint8. Rows: similarity."""
    at_least("per_anchor", per_anchor, 1)
    index = torch.cat(batches).unique()
    out = extract_features(project, images[index], channels_last=True,
                           forward=lambda x: F.normalize(project(x).float(), dim=1))   # unit vectors, on the device
    z = dict(zip(index.tolist(), out))
    values = []
    for batch in batches:
        zb = torch.stack([z[i] for i in batch.tolist()])                         # (B, P)
        sim = zb @ zb.T                                                          # (B, B)
        keep = ~torch.eye(len(batch), dtype=torch.bool)
        values.append(sim[keep].view(len(batch), -1)[:, :per_anchor].flatten())
    return pd.DataFrame({"similarity": torch.cat(values).numpy()})


def dnc_clusters(cfg: RunConfig) -> torch.Tensor:
    """The cluster DnC run `cfg` gave each image of its pretraining set, stored with the run. Shape: (N,)."""
    rows = cached_rows(cfg, eval_id("clusters", cfg.dataset), lambda: [{"cluster": torch.load(
        run_dir(cfg) / "clusters.pt", weights_only=True)["cluster"].tolist()}])
    return torch.tensor(rows[0]["cluster"])


def similarity_histogram(cfg: RunConfig, images: torch.Tensor, batches: list[torch.Tensor], name: str) -> pd.DataFrame:
    """`negative_similarities` of DnC run `cfg`'s base model over `batches` of `images`, as a histogram over
    HISTOGRAM_BINS (rows: low, high, count) and its exact mean (in every row's `mean`), stored with the run
    under `name` and a digest of the batches."""
    digest = hashlib.sha256(torch.cat(batches).numpy().tobytes()).hexdigest()[:8]

    def compute() -> list[dict]:
        values = negative_similarities(load_model(cfg).base, images, batches).similarity.to_numpy()
        counts, _ = np.histogram(values, HISTOGRAM_BINS)
        return [{"low": float(lo), "high": float(hi), "count": int(c), "mean": float(values.mean())}
                for lo, hi, c in zip(HISTOGRAM_BINS[:-1], HISTOGRAM_BINS[1:], counts)]

    return pd.DataFrame(cached_rows(cfg, eval_id(f"negatives-{name}-{digest}", cfg.dataset), compute))
