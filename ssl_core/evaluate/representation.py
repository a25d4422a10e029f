"""Representation metrics of frozen features (SL-MLP's and DnC's): variation, redundancy, clusters, distance."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ssl_core.checks import at_least
from ssl_core.data import ImageSet
from ssl_core.evaluate import register_eval
from ssl_core.evaluate.features import features_for


def intra_class_variation(z: torch.Tensor, y: torch.Tensor) -> float:
    """Intra-class variation (SL-MLP, Wang et al. 2022): with features l2-normalised,
    the mean over classes of the mean squared distance of a class's features to its class mean.

    0 when every class collapses to a point; at most 1 (features spread evenly on the sphere).
    Shape: z (N, D), y (N,).
    """
    z = F.normalize(z.double(), dim=1)
    return float(np.mean([(z[y == c] - z[y == c].mean(0)).square().sum(1).mean().item() for c in y.unique()]))


def feature_distribution_distance(z_a: torch.Tensor, z_b: torch.Tensor) -> float:
    """Frechet distance between Gaussian fits of two feature sets (the FID formula, Heusel et al.
    2017), on l2-normalised features so encoders of any scale compare:

        ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2).

    SL-MLP reports a distance between pretraining and evaluation features; this is our
    choice of that distance. 0 for identical distributions. Shape: z_a (N, D), z_b (M, D).
    """
    def gaussian(z):
        z = F.normalize(z.double(), dim=1)
        return z.mean(0), torch.cov(z.T)

    def sqrt_psd(s):
        values, vectors = torch.linalg.eigh(s)
        return vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T

    (mu_a, s_a), (mu_b, s_b) = gaussian(z_a), gaussian(z_b)
    root_a = sqrt_psd(s_a)
    cross = torch.linalg.eigvalsh(root_a @ s_b @ root_a).clamp(min=0).sqrt().sum()   # tr (.)^1/2
    return ((mu_a - mu_b).square().sum() + s_a.trace() + s_b.trace() - 2 * cross).item()


def feature_redundancy(z: torch.Tensor) -> float:
    """Feature redundancy (SL-MLP, Wang et al. 2022): the mean absolute Pearson correlation between pairs of
    feature dimensions (off-diagonal entries of the correlation matrix).

    About 0 for independent dimensions (sampling noise ~ sqrt(2 / (pi N))), 1 when every dimension
    copies one signal. Constant dimensions carry no signal and are left out. Shape: z (N, D).
    """
    z = z.double()
    z = z[:, z.std(0) > 1e-12]
    if z.shape[1] < 2:
        raise ValueError(f"z has {z.shape[1]} non-constant dimensions: redundancy needs at least 2")
    corr = torch.corrcoef(z.T).abs()
    d = corr.shape[0]
    return ((corr.sum() - corr.diagonal().sum()) / (d * (d - 1))).item()


def kmeans_purity_nmi(z: torch.Tensor, y: torch.Tensor, k: int, seed: int = 0) -> dict:
    """Cluster quality of features (as DnC's clustering stage sees them): spherical k-means, i.e.
    sklearn KMeans on l2-normalised features, scored against the labels y.

    purity = (1/N) sum over clusters of the count of its most frequent label; NMI = sklearn's
    normalized_mutual_info_score (arithmetic mean normalisation). Shape: z (N, D), y (N,).
    Returns {"purity", "nmi"}.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score
    from sklearn.metrics.cluster import contingency_matrix
    at_least("k", k, 1)
    assign = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(F.normalize(z.float(), dim=1).numpy())
    labels = y.cpu().numpy()
    purity = contingency_matrix(labels, assign).max(0).sum() / len(labels)
    return {"purity": float(purity), "nmi": float(normalized_mutual_info_score(labels, assign))}


@register_eval("representation")
def representation_eval(encoder, train: ImageSet, test: ImageSet, device, cache: dict | None = None,
                        seed: int = 0) -> list[dict]:
    """Representation metrics of the `test` features; the distribution distance is between `train`
    and `test` features, so pass the pretraining set as `train` for SL-MLP's pretrain-to-eval distance.
    """
    train_z, test_z = features_for(encoder, train, device, cache), features_for(encoder, test, device, cache)
    clusters = kmeans_purity_nmi(test_z, test.labels, k=int(test.labels.max()) + 1, seed=seed)
    values = {"intra_class_variation": intra_class_variation(test_z, test.labels),
              "feature_redundancy": feature_redundancy(test_z),
              "kmeans_purity": clusters["purity"], "kmeans_nmi": clusters["nmi"],
              "feature_distribution_distance": feature_distribution_distance(train_z, test_z)}
    return [{"metric": name, "value": value, "eval": "representation"} for name, value in values.items()]
