"""Frozen-feature evaluation: the EVALS registry and `evaluate`, which runs several evaluations on one feature cache.

Every evaluation freezes the encoder, extracts features once, and returns tidy rows
`{"metric": str, "value": float, "eval": str, ...}` that the caller extends with the run's columns
(method, dataset, budget, seed, ...). `EVALS` maps a name to `fn(encoder, train, test, device)`;
`evaluate(...)` runs several of them on one shared feature cache.

features.py        extract_features, features_for: the one frozen-feature extraction path
knn.py             weighted kNN accuracy                                  EVALS["knn"]
linear.py          the linear probe (L2 chosen on a validation split)     EVALS["linear"]
segmentation.py    the linear segmentation probe and its mIoU             EVALS["segmentation"]
representation.py  variation, redundancy, k-means purity / NMI, distance  EVALS["representation"]
shifts.py          one clean-fitted linear probe on corrupted sets and background splits
"""
from __future__ import annotations

from typing import Callable

from ssl_core.checks import choose
from ssl_core.data import ImageSet
from ssl_core.registry import registrar

EVALS: dict[str, Callable[..., list[dict]]] = {}


# @register_eval(name) adds `fn(encoder, train, test, device, cache=None) -> rows`
register_eval = registrar(EVALS, "evaluation")


def evaluate(encoder, train: ImageSet, test: ImageSet, device, names=("knn", "linear")) -> list[dict]:
    """Run the evaluations `names` (keys of EVALS) on one feature cache; their rows, concatenated."""
    for name in names:
        choose("evaluation", name, EVALS)
    cache: dict = {}
    return [row for name in names for row in EVALS[name](encoder, train, test, device, cache=cache)]


from ssl_core.evaluate import knn, linear, segmentation, representation  # noqa: E402,F401  (registry)
