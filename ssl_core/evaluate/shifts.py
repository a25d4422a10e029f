"""Robustness rows: one linear probe fitted on clean features, scored on corrupted sets or background splits."""
from __future__ import annotations

import numpy as np

from ssl_core.data import ImageSet
from ssl_core.evaluate.features import features_for, on_device
from ssl_core.evaluate.linear import fit_linear_probe


def _probe_accuracies(encoder, train: ImageSet, sets: dict, device) -> dict:
    """Fit one linear probe on clean train features; its accuracy on each set of `sets`."""
    cache: dict = {}
    train_z, train_y = on_device(device, features_for(encoder, train, device, cache), train.labels)
    probe = fit_linear_probe(train_z, train_y)
    return {key: probe.accuracy(features_for(encoder, images, device, cache), images.labels)
            for key, images in sets.items()}


def corruption_rows(encoder, train: ImageSet, corrupted: dict, device) -> list[dict]:
    """Linear-probe accuracy under common corruptions (Hendrycks & Dietterich 2019, the -C protocol).

    The probe is fitted once on clean train features and applied unchanged to each corrupted test
    set, so the rows measure how far corruption moves features off the clean decision boundary.
    `corrupted` maps (corruption name, severity) to an ImageSet. Rows: one "linear_acc" per key,
    and "mean_corruption_acc", the mean over all keys.
    """
    accuracy = _probe_accuracies(encoder, train, corrupted, device)
    rows = [{"metric": "linear_acc", "value": acc, "eval": "corruption", "corruption": name, "severity": severity}
            for (name, severity), acc in accuracy.items()]
    return rows + [{"metric": "mean_corruption_acc", "value": float(np.mean(list(accuracy.values()))),
                    "eval": "corruption"}]


def background_rows(encoder, train: ImageSet, splits: dict, device) -> list[dict]:
    """Backgrounds-Challenge metrics (Xiao et al. 2020): probe accuracy on each split and the BG-gap.

    The probe is fitted once on clean train features and applied to each split of `splits` (name ->
    ImageSet, e.g. original, only_fg, only_bg, mixed_same, mixed_rand). Rows: one "linear_acc" per
    split and, when both are given, "bg_gap" = accuracy(mixed_same) - accuracy(mixed_rand).
    """
    accuracy = _probe_accuracies(encoder, train, splits, device)
    rows = [{"metric": "linear_acc", "value": acc, "eval": "background", "split": name}
            for name, acc in accuracy.items()]
    if "mixed_same" in accuracy and "mixed_rand" in accuracy:
        gap = accuracy["mixed_same"] - accuracy["mixed_rand"]
        rows.append({"metric": "bg_gap", "value": gap, "eval": "background"})
    return rows
