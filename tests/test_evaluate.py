"""Frozen-feature evaluation against known answers and loop-based references."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ssl_core.data import ImageSet
from ssl_core.data.views import normalize
from ssl_core.evaluate import EVALS, evaluate
from ssl_core.evaluate.features import extract_features, features_for
from ssl_core.evaluate.knn import knn_accuracy
from ssl_core.evaluate.linear import L2_GRID, fit_linear_probe, linear_probe
from ssl_core.evaluate.representation import (feature_distribution_distance, feature_redundancy,
                                              intra_class_variation, kmeans_purity_nmi)
from ssl_core.evaluate.shifts import background_rows, corruption_rows
from ssl_core.evaluate.segmentation import miou, segmentation_probe
from ssl_core.models import build_encoder


def clusters(n, dim, classes, spread, seed):
    """Gaussian clusters around random unit-scale means. Shape: z (n, dim), y (n,)."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99))
    y = torch.randint(classes, (n,), generator=g)
    return means[y] + spread * torch.randn(n, dim, generator=g), y


def image_set(n, classes, seed, size=16):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    labels = torch.randint(classes, (n,), generator=g)
    return ImageSet(images, labels, [f"c{i}" for i in range(classes)])


# --- features -------------------------------------------------------------------------------------

def test_extract_features_is_the_eval_mode_forward_in_batches_and_restores_training_mode():
    encoder = build_encoder("resnet10", width=4).train()
    images = image_set(10, 2, seed=0).images
    running_mean = encoder.stem[1].running_mean.clone()
    z = extract_features(encoder, images, batch_size=3)
    assert encoder.training
    assert torch.equal(encoder.stem[1].running_mean, running_mean)   # BN statistics untouched
    encoder.eval()
    with torch.no_grad():
        reference = encoder(normalize(images))
    assert z.shape == (10, encoder.dim) and z.dtype == torch.float32
    torch.testing.assert_close(z, reference, rtol=1e-4, atol=1e-5)
    spatial = extract_features(encoder, images, spatial=True)
    assert spatial.shape == (10, encoder.dim, 2, 2)


def test_cpu_inference_batches_are_small_and_change_no_feature_bit():
    from ssl_core.evaluate.features import inference_batch
    assert inference_batch(torch.device("cpu")) == 64 and inference_batch(torch.device("cuda")) == 512
    images = image_set(150, 3, seed=1).images                   # 64 + 64 + 22 by default
    for name in ("resnet10", "vit_mini"):
        torch.manual_seed(0)
        encoder = build_encoder(name, width=8, image_size=images.shape[-1])
        for spatial in (False, True):
            whole = extract_features(encoder, images, spatial=spatial, batch_size=len(images))
            assert torch.equal(extract_features(encoder, images, spatial=spatial), whole)


def test_features_for_memoises_within_one_cache_only():
    calls = []

    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 4)

        def forward(self, x):
            calls.append(len(x))
            return self.fc(x.mean((2, 3)))

    encoder, data, cache = Counting(), image_set(6, 2, seed=0), {}
    first = features_for(encoder, data, "cpu", cache)
    assert features_for(encoder, data, "cpu", cache) is first
    features_for(encoder, data, "cpu")
    assert calls == [6, 6]


# --- kNN ----------------------------------------------------------------------------------------

def knn_loop(train_z, train_y, test_z, k, temperature):
    """Reference: one test point at a time, votes summed in a dict."""
    predictions = []
    for z in test_z:
        sims = [F.cosine_similarity(z, t, dim=0).item() for t in train_z]
        nearest = sorted(range(len(sims)), key=lambda j: -sims[j])[:k]
        votes = {}
        for j in nearest:
            votes[int(train_y[j])] = votes.get(int(train_y[j]), 0.0) + math.exp(sims[j] / temperature)
        predictions.append(max(votes, key=votes.get))
    return torch.tensor(predictions)


def test_knn_matches_a_loop_reference():
    train_z, train_y = clusters(40, 5, 3, spread=2.0, seed=0)
    test_z, _ = clusters(15, 5, 3, spread=2.0, seed=1)
    for k, temperature in ((7, 0.1), (3, 0.5)):
        predictions = knn_loop(train_z, train_y, test_z, k, temperature)
        for label in range(3):   # accuracy against a constant label reveals every prediction
            expected = (predictions == label).float().mean().item()
            got = knn_accuracy(train_z, train_y, test_z, torch.full((15,), label), k=k,
                               temperature=temperature, chunk=4)
            assert got == pytest.approx(expected)


def test_knn_near_perfect_on_separated_clusters_and_chance_on_noise():
    train_z, train_y = clusters(1000, 16, 10, spread=0.05, seed=0)
    test_z, test_y = clusters(500, 16, 10, spread=0.05, seed=1)
    assert knn_accuracy(train_z, train_y, test_z, test_y) > 0.99
    g = torch.Generator().manual_seed(0)
    noise = lambda n: (torch.randn(n, 16, generator=g), torch.randint(10, (n,), generator=g))
    assert abs(knn_accuracy(*noise(1000), *noise(2000)) - 0.1) < 0.04
    assert knn_accuracy(train_z[:50], train_y[:50], test_z, test_y, k=10_000) > 0   # k clipped to 50


# --- linear probe -------------------------------------------------------------------------------

def test_probe_separates_separable_data_and_is_at_chance_on_shuffled_labels():
    train_z, train_y = clusters(1000, 32, 5, spread=0.3, seed=0)
    test_z, test_y = clusters(500, 32, 5, spread=0.3, seed=1)
    result = linear_probe(train_z, train_y, test_z, test_y)
    assert result["accuracy"] > 0.98 and result["l2"] in L2_GRID and result["val_accuracy"] > 0.98
    g = torch.Generator().manual_seed(0)
    shuffle = lambda y: y[torch.randperm(len(y), generator=g)]
    assert linear_probe(train_z, shuffle(train_y), test_z, shuffle(test_y))["accuracy"] < 0.2 + 0.07


def test_probe_reaches_the_same_optimum_as_sklearn():
    from sklearn.linear_model import LogisticRegression
    z, y = clusters(600, 20, 4, spread=1.5, seed=0)
    l2 = 1e-2
    probe = fit_linear_probe(z, y, l2_grid=(l2,))
    x = ((z - probe.mean) / probe.std).double().numpy()
    reference = LogisticRegression(C=1 / (l2 * len(z)), tol=1e-10, max_iter=10_000).fit(x, y.numpy())
    ours = probe.logits(z).softmax(1).numpy()
    np.testing.assert_allclose(ours, reference.predict_proba(x), atol=2e-3)


def test_probe_validates_its_arguments():
    z, y = clusters(50, 4, 2, spread=1.0, seed=0)
    with pytest.raises(ValueError, match="val_fraction=1.5"):
        fit_linear_probe(z, y, val_fraction=1.5)
    with pytest.raises(ValueError, match="l2_grid"):
        fit_linear_probe(z, y, l2_grid=())


# --- the registry -------------------------------------------------------------------------------

def test_evaluations_return_tidy_rows_and_extract_each_set_once():
    encoder = build_encoder("resnet10", width=4)
    calls = []
    encoder.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    train, test = image_set(60, 3, seed=0), image_set(30, 3, seed=1)
    rows = evaluate(encoder, train, test, "cpu", names=("knn", "linear"))
    assert calls == [60, 30]
    assert [row["metric"] for row in rows] == ["knn_acc", "linear_acc"]
    assert rows[0]["k"] == 200 and rows[0]["knn_temperature"] == 0.1 and rows[1]["l2"] in L2_GRID
    for row in rows:
        assert isinstance(row["value"], float) and 0 <= row["value"] <= 1 and row["eval"] in EVALS
    with pytest.raises(ValueError, match="evaluation='nope'"):
        evaluate(encoder, train, test, "cpu", names=("nope",))


# --- segmentation probe -------------------------------------------------------------------------

def test_miou_matches_a_hand_computed_example():
    target = torch.tensor([[[0, 0], [1, 2]]])
    pred = torch.tensor([[[0, 1], [1, 1]]])
    # class 0: inter 1, union 2; class 1: inter 1, union 3; class 2: inter 0, union 1; class 3 absent
    assert miou(pred, target, num_classes=4) == pytest.approx((1 / 2 + 1 / 3 + 0) / 3)
    assert miou(target, target, num_classes=4) == 1.0


class PixelEncoder(nn.Module):
    """Spatial features = the normalised pixels themselves; `blind` returns a constant instead."""

    def __init__(self, blind=False):
        super().__init__()
        self.blind, self.dim = blind, 3

    def features(self, x):
        return torch.zeros_like(x) if self.blind else x

    def forward(self, x):
        return self.features(x).mean((2, 3))


COLOURS = torch.tensor([[230, 20, 20], [20, 230, 20], [20, 20, 230]], dtype=torch.uint8)


def coloured_squares(n, seed, size=16):
    """Grey noise backgrounds with one square of its class colour; masks 0 = background, c + 1 = class c."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(100, 156, (n, 3, size, size), generator=g, dtype=torch.uint8)
    masks = torch.zeros(n, size, size, dtype=torch.uint8)
    labels = torch.randint(3, (n,), generator=g)
    for i, (c, top, left) in enumerate(zip(labels, *torch.randint(0, size - 6, (2, n), generator=g))):
        images[i, :, top:top + 6, left:left + 6] = COLOURS[c].view(3, 1, 1)
        masks[i, top:top + 6, left:left + 6] = c + 1
    return ImageSet(images, labels, ["r", "g", "b"], masks=masks)


def test_segmentation_probe_finds_linearly_separable_pixels_and_not_blind_features():
    train, test = coloured_squares(48, seed=0), coloured_squares(24, seed=1)
    assert segmentation_probe(PixelEncoder(), train, test, "cpu", epochs=15, batch_size=4) > 0.9
    assert segmentation_probe(PixelEncoder(blind=True), train, test, "cpu", epochs=2, batch_size=16) < 0.4
    with pytest.raises(ValueError, match="masks"):
        segmentation_probe(PixelEncoder(), image_set(4, 2, seed=0), test, "cpu")


# --- robustness -----------------------------------------------------------------------------------

def test_corruption_and_background_rows_apply_one_clean_probe():
    train, test = coloured_squares(60, seed=0), coloured_squares(30, seed=1)
    swapped = ImageSet(test.images[:, [1, 2, 0]], test.labels, test.class_names)   # colours permuted
    rows = corruption_rows(PixelEncoder(), train, {("clean", 0): test, ("swap", 1): swapped}, "cpu")
    by_key = {(r.get("corruption"), r.get("severity"), r["metric"]): r["value"] for r in rows}
    assert by_key["clean", 0, "linear_acc"] == 1.0 and by_key["swap", 1, "linear_acc"] == 0.0
    assert by_key[None, None, "mean_corruption_acc"] == 0.5
    rows = background_rows(PixelEncoder(), train, {"mixed_same": test, "mixed_rand": swapped}, "cpu")
    assert [(r["metric"], r.get("split"), r["value"]) for r in rows] == [
        ("linear_acc", "mixed_same", 1.0), ("linear_acc", "mixed_rand", 0.0), ("bg_gap", None, 1.0)]


# --- representation metrics ---------------------------------------------------------------------

def test_intra_class_variation_is_zero_for_collapsed_classes_and_matches_a_loop():
    y = torch.tensor([0, 0, 0, 1, 1])
    collapsed = torch.tensor([[1.0, 2.0], [2.0, 4.0], [0.5, 1.0], [-3.0, 1.0], [-6.0, 2.0]])   # same directions
    assert intra_class_variation(collapsed, y) == pytest.approx(0, abs=1e-12)
    z, y = clusters(200, 8, 4, spread=1.0, seed=0)
    per_class = []
    for c in range(4):
        members = [v / v.norm() for v, label in zip(z.double(), y) if label == c]
        mean = sum(members) / len(members)
        per_class.append(sum(((v - mean) ** 2).sum().item() for v in members) / len(members))
    assert intra_class_variation(z, y) == pytest.approx(sum(per_class) / 4)


def test_redundancy_is_zero_for_independent_and_one_for_copied_dimensions():
    g = torch.Generator().manual_seed(0)
    independent = torch.randn(5000, 16, generator=g)
    assert feature_redundancy(independent) < 0.02
    signal = torch.randn(500, 1, generator=g)
    copies = torch.cat([signal * s for s in (1.0, -2.0, 0.5, 3.0)] + [torch.ones(500, 1)], dim=1)
    assert feature_redundancy(copies) == pytest.approx(1.0)   # the constant column is left out


def test_distribution_distance_matches_scipy_frechet_and_orders_shifts():
    from scipy.linalg import sqrtm
    z_a, _ = clusters(400, 6, 3, spread=1.0, seed=0)
    z_b, _ = clusters(300, 6, 3, spread=1.0, seed=1)
    z_b = z_b + torch.tensor([1.0, 0, 0, 0, 0, 0])
    a, b = (F.normalize(z.double(), dim=1).numpy() for z in (z_a, z_b))
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    reference = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s_a + s_b - 2 * sqrtm(s_a @ s_b).real)
    assert feature_distribution_distance(z_a, z_b) == pytest.approx(reference, rel=1e-6)
    assert feature_distribution_distance(z_a, z_a) == pytest.approx(0, abs=1e-6)
    same, _ = clusters(300, 6, 3, spread=1.0, seed=2)
    assert feature_distribution_distance(z_a, same) < feature_distribution_distance(z_a, z_b)


def test_kmeans_purity_and_nmi_are_one_for_separated_clusters_and_low_for_random_labels():
    z, y = clusters(300, 16, 5, spread=0.05, seed=0)
    assert kmeans_purity_nmi(z, y, k=5) == pytest.approx({"purity": 1.0, "nmi": 1.0})
    random_labels = torch.randint(5, (300,), generator=torch.Generator().manual_seed(7))
    scores = kmeans_purity_nmi(z, random_labels, k=5)
    assert scores["purity"] < 0.35 and scores["nmi"] < 0.05


def test_representation_eval_rows():
    encoder = build_encoder("resnet10", width=4)
    rows = EVALS["representation"](encoder, image_set(40, 3, seed=0), image_set(30, 3, seed=1), "cpu")
    assert [r["metric"] for r in rows] == ["intra_class_variation", "feature_redundancy", "kmeans_purity",
                                           "kmeans_nmi", "feature_distribution_distance"]
    assert all(np.isfinite(r["value"]) and r["eval"] == "representation" for r in rows)


def test_probe_fits_when_the_validation_split_cannot_hold_every_class():
    from ssl_core.evaluate.linear import fit_linear_probe
    g = torch.Generator().manual_seed(0)
    y = torch.arange(60).repeat(2)                         # 60 classes, 120 images: 24 validation images
    z = torch.nn.functional.one_hot(y, 60).float() + 0.01 * torch.randn(120, 60, generator=g)
    probe = fit_linear_probe(z, y)
    assert probe.accuracy(z, y) == 1.0
