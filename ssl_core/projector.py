"""SL-MLP's mechanisms (Wang et al. 2022, claim 5b) measured on pretrained models, as tidy rows.

The paper explains why an MLP projector makes supervised pretraining transfer by three properties
of the features that transfer (the backbone's; the projector is discarded): more intra-class
variation, a smaller distance between the pretraining and the evaluation feature distributions,
and less redundancy between feature dimensions. The metrics themselves live in ssl_core.evaluate.representation;
this module picks which features to measure (`feature_map`), measures them on a pretraining set
and several evaluation sets (`mechanism_rows`, `mechanism_frame`), and orients the differences so
that the paper's prediction is positive (`oriented_effects`).
"""
from __future__ import annotations

import hashlib
import json

import pandas as pd
from torch import nn

from ssl_core.config import RunConfig
from ssl_core.checks import choose
from ssl_core.data import ImageSet
from ssl_core.evaluate import EVALS
from ssl_core.evaluate.features import features_for
from ssl_core.evaluate.representation import (feature_distribution_distance, feature_redundancy,
                                              intra_class_variation)
from ssl_core.runs import RUN_COLUMNS, cached_rows, eval_id, load_model
from ssl_core.stats import Effect, effect

VIEWS = ("backbone", "projector")
# Sign of (SL-MLP - supervised) that the paper predicts for each mechanism.
PREDICTED_SIGN = {"intra_class_variation": 1, "feature_distribution_distance": -1, "feature_redundancy": -1}


def feature_map(model: nn.Module, view: str = "backbone") -> nn.Module:
    """The frozen features of a pretrained method (a METHODS module): its encoder ("backbone", what
    SL-MLP transfers) or its encoder followed by its projector ("projector", what SL-MLP discards).

    Shape: the returned module maps normalised images (N, C, H, W) to (N, D).
    """
    choose("view", view, VIEWS)
    if view == "backbone":
        return model.encoder
    projector = getattr(model, "projector", None)
    if projector is None or isinstance(projector, nn.Identity):
        raise ValueError(f"view='projector' is not allowed for a {type(model).__name__} without a projector: "
                         f"use view='backbone'")
    return nn.Sequential(model.encoder, projector)


def mechanism_rows(features: nn.Module, pretrain: ImageSet, eval_sets: dict[str, ImageSet],
                   device=None) -> list[dict]:
    """SL-MLP's three mechanisms for one feature map: for each evaluation set, the intra-class
    variation and the redundancy of its features, and the feature distribution distance between
    the pretraining set's features and its features (ssl_core.evaluate.representation defines all three).

    Rows: {"metric", "value", "eval_dataset"}, three per evaluation set.
    """
    cache: dict = {}
    z_pretrain = features_for(features, pretrain, device, cache)                 # (N, D)
    rows = []
    for name, data in eval_sets.items():
        z = features_for(features, data, device, cache)                          # (M, D)
        values = {"intra_class_variation": intra_class_variation(z, data.labels),
                  "feature_distribution_distance": feature_distribution_distance(z_pretrain, z),
                  "feature_redundancy": feature_redundancy(z)}
        rows += [{"metric": metric, "value": value, "eval_dataset": name} for metric, value in values.items()]
    return rows


def mechanism_frame(configs: list[RunConfig], pretrain: ImageSet, eval_sets: dict[str, ImageSet],
                    view: str = "backbone", probe: tuple[str, ImageSet, ImageSet] | None = None,
                    device=None) -> pd.DataFrame:
    """`mechanism_rows` of the `view` features of every pretrained run in `configs` (trained first if
    not cached), plus, if `probe` = (name, train, test) is given, the linear-probe accuracy of the
    same features on it (ssl_core.evaluate's "linear" evaluation, metric "linear_acc").

    Tidy rows: metric, value, eval_dataset, view and the run's config columns (RUN_COLUMNS); no
    rows for no configs. Rows are stored and cached per run (runs.cached_rows) under a name that carries
    the view and the sets' names and sizes.
    """
    choose("view", view, VIEWS)
    sets = {"pretrain": len(pretrain), **{name: len(data) for name, data in eval_sets.items()},
            **({"probe": [probe[0], len(probe[1]), len(probe[2])]} if probe is not None else {})}
    digest = hashlib.sha256(json.dumps(sets, sort_keys=True).encode()).hexdigest()[:8]

    def compute(cfg: RunConfig) -> list[dict]:
        features = feature_map(load_model(cfg, device), view)
        rows = mechanism_rows(features, pretrain, eval_sets, device)
        if probe is not None:
            name, train, test = probe
            rows += [dict(row, eval_dataset=name) for row in EVALS["linear"](features, train, test, device)]
        return rows

    frames = []
    for cfg in configs:
        rows = cached_rows(cfg, eval_id(f"mechanisms-{view}-{digest}", cfg.dataset), lambda cfg=cfg: compute(cfg))
        frame = pd.DataFrame(rows)
        frame["view"] = view
        for column in RUN_COLUMNS:
            frame[column] = getattr(cfg, column)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def oriented_effects(frame: pd.DataFrame, column: str, a, b, eval_datasets=None,
                     relative: bool = False) -> dict[str, Effect]:
    """For each mechanism of PREDICTED_SIGN: the effect of `column == a` minus `column == b`, paired
    over seeds, multiplied by the sign the paper predicts for SL-MLP minus supervised, so that a
    positive effect agrees with the paper. Each seed's difference is the mean over `eval_datasets`
    (default: all of them) of the per-set differences; with `relative`, each per-set difference is
    in percent of b's value on that set, so sets of different scales weigh alike.
    """
    if eval_datasets is not None:
        frame = frame[frame.eval_dataset.isin(list(eval_datasets))]
    effects = {}
    for metric, sign in PREDICTED_SIGN.items():
        wide = frame[frame.metric == metric].pivot_table(index=["seed", "eval_dataset"], columns=column,
                                                         values="value")
        if a not in wide or b not in wide:
            effects[metric] = effect([])
            continue
        difference = sign * (wide[a] - wide[b])                                   # per (seed, eval set)
        if relative:
            difference = 100 * difference / wide[b]
        effects[metric] = effect(difference.groupby(level="seed").mean())
    return effects
