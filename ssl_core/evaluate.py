"""Frozen-feature evaluation: kNN, linear probe, segmentation probe, robustness, representation metrics.

Every evaluation freezes the encoder, extracts features once, and returns tidy rows
`{"metric": str, "value": float, "eval": str, ...}` that the caller extends with the run's columns
(method, dataset, budget, seed, ...). `EVALS` maps a name to `fn(encoder, train, test, device)`;
`evaluate(...)` runs several of them on one shared feature cache.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssl_core.checks import at_least, choose, positive
from ssl_core.data import ImageSet
from ssl_core.data.views import normalize
from ssl_core.registry import registrar

L2_GRID = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5)   # lambda of the probe's loss, strongest first
EVALS: dict[str, Callable[..., list[dict]]] = {}


# @register_eval(name) adds `fn(encoder, train, test, device, cache=None) -> rows`
register_eval = registrar(EVALS, "evaluation")


# --- features -----------------------------------------------------------------------------------

def _device_of(encoder: nn.Module, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    param = next(encoder.parameters(), None)
    return torch.device("cpu") if param is None else param.device


def inference_batch(device: torch.device) -> int:
    """Images per forward of a frozen network: 512 on an accelerator, 64 on a CPU.

    On a CPU a 512-image batch's activations (128 MB for ResNet-18's first stage at 32x32, 68 MB for the
    ViT's MLP) are too large for glibc's malloc to keep: it maps each afresh (above 32 MB) and every page
    faults on first touch. At 64, frozen features of ResNet-18 (width 64) come 2.2x faster and the ViT's
    1.6x, bitwise the same (2 cores; a batch's rows never mix in eval mode).
    """
    return 64 if device.type == "cpu" else 512


def extract_features(encoder: nn.Module, images: torch.Tensor, device=None, batch_size: int | None = None,
                     amp: bool = False, spatial: bool = False) -> torch.Tensor:
    """Frozen features of uint8 images: `encoder(normalize(x))`, or `encoder.features(...)` if spatial.

    The encoder runs in eval mode under no_grad on `device` (default: where its parameters are; it is
    moved there otherwise), `batch_size` images at a time (default: `inference_batch`), and gets its
    training mode back afterwards; `amp` = bf16 autocast.
    Shape: images (N, C, H, W) uint8; returns (N, D) float32 on the CPU, or (N, D, h, w) if spatial.
    """
    device = _device_of(encoder, device)
    batch_size = inference_batch(device) if batch_size is None else batch_size
    at_least("batch_size", batch_size, 1)
    encoder.to(device)
    forward = encoder.features if spatial else encoder
    was_training = encoder.training
    encoder.eval()
    chunks = []
    try:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            for start in range(0, len(images), batch_size):
                x = normalize(images[start:start + batch_size].to(device, non_blocking=True))
                chunks.append(forward(x).float().cpu())
    finally:
        encoder.train(was_training)
    return torch.cat(chunks)


def features_for(encoder: nn.Module, images: ImageSet, device, cache: dict | None = None) -> torch.Tensor:
    """Pooled features of an ImageSet, memoised in `cache` (a dict the caller owns for one evaluation).

    The cache keys on id(images) and keeps the ImageSet alive beside its features, so an id cannot
    be reused while the cache lives. Shape: returns (N, D) float32 on the CPU.
    """
    if cache is None:
        return extract_features(encoder, images.images, device)
    if id(images) not in cache:
        cache[id(images)] = (images, extract_features(encoder, images.images, device))
    return cache[id(images)][1]


# --- kNN ----------------------------------------------------------------------------------------

def knn_accuracy(train_z: torch.Tensor, train_y: torch.Tensor, test_z: torch.Tensor, test_y: torch.Tensor,
                 k: int = 200, temperature: float = 0.1, chunk: int = 1024) -> float:
    """Weighted kNN accuracy: the classifier of InstDisc (Wu et al. 2018), as lightly and solo-learn run it.

    Each test point takes the k training points of highest cosine similarity s_j and votes for
    their labels with weights exp(s_j / temperature); k is clipped to the train size. Test points
    are processed `chunk` at a time so the similarity matrix never exceeds chunk x N_train.
    Shape: train_z (N, D), train_y (N,), test_z (M, D), test_y (M,); runs on train_z's device.
    """
    at_least("k", k, 1)
    positive("temperature", temperature)
    device = train_z.device
    train_z = F.normalize(train_z.float(), dim=1)
    train_y = train_y.to(device)
    k = min(k, len(train_z))
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    correct = 0
    for start in range(0, len(test_z), chunk):
        z = F.normalize(test_z[start:start + chunk].to(device).float(), dim=1)
        sim, index = (z @ train_z.T).topk(k, dim=1)                          # (B, k)
        votes = torch.zeros(len(z), num_classes, device=device)
        votes.scatter_add_(1, train_y[index], (sim / temperature).exp())    # (B, C)
        correct += (votes.argmax(1).cpu() == test_y[start:start + chunk].cpu()).sum().item()
    return correct / len(test_z)


# --- linear probe -------------------------------------------------------------------------------

@dataclass
class LinearProbe:
    """A multinomial logistic regression fitted on standardised frozen features.

    Shape: mean, std (D,); weight (C, D); bias (C,).
    """

    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    l2: float
    val_accuracy: float

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Shape: z (N, D) -> (N, C)."""
        z = z.to(self.weight.device, torch.float32)
        return ((z - self.mean) / self.std) @ self.weight.T + self.bias

    def accuracy(self, z: torch.Tensor, y: torch.Tensor) -> float:
        return (self.logits(z).argmax(1) == y.to(self.weight.device)).float().mean().item()


def _standardiser(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std; constant dimensions get std 1 so they stay 0."""
    std = z.std(0)
    return z.mean(0), torch.where(std > 1e-6, std, torch.ones_like(std))


def _fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float,
                  init: tuple[torch.Tensor, torch.Tensor] | None, tolerance: float,
                  max_iter: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise mean cross-entropy + l2/2 ||W||^2 (bias unpenalised) with full-batch L-BFGS,
    until the largest gradient entry is below `tolerance` (or `max_iter` iterations).

    Shape: x (N, D) float32, y (N,); returns weight (C, D), bias (C,).
    """
    if init is None:
        weight = x.new_zeros(num_classes, x.shape[1])
        bias = x.new_zeros(num_classes)
    else:
        weight, bias = (t.clone() for t in init)
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    opt = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iter, history_size=10,
                            tolerance_grad=tolerance, tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y) + 0.5 * l2 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return weight.detach(), bias.detach()


def _stratified_split(y: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified when every class has 2 images and each side can hold every class; random otherwise."""
    from sklearn.model_selection import train_test_split
    labels = y.cpu().numpy()
    index = np.arange(len(y))
    counts = np.bincount(labels)
    classes, n_val = int((counts > 0).sum()), int(np.ceil(val_fraction * len(y)))
    stratify = counts[counts > 0].min() >= 2 and classes <= min(n_val, len(y) - n_val)
    fit, val = train_test_split(index, test_size=val_fraction, stratify=labels if stratify else None, random_state=seed)
    return torch.from_numpy(np.sort(fit)), torch.from_numpy(np.sort(val))


def fit_linear_probe(train_z: torch.Tensor, train_y: torch.Tensor, *, l2_grid=L2_GRID,
                     val_fraction: float = 0.2, seed: int = 0, num_classes: int | None = None) -> LinearProbe:
    """Linear transfer evaluation of SimCLR (Chen et al. 2020) and DnC (Tian et al. 2021).

    Multinomial logistic regression on standardised frozen features, minimising
    mean CE + l2/2 ||W||^2 with full-batch L-BFGS. The L2 strength is chosen on a stratified
    validation split (`val_fraction` of train, fixed by `seed`), walking the grid from strongest to
    weakest with warm starts and a loose tolerance (selection only needs the ranking); ties keep
    the stronger. The winner is refit on all of train to a tight tolerance. A one-value grid
    skips the selection (val_accuracy is then nan).
    Hand-written in torch rather than sklearn's LogisticRegression: warm-started float32 L-BFGS on
    the features' device is several times faster at the same accuracy (bench/probe_vs_sklearn.py).
    Shape: train_z (N, D), train_y (N,); runs on train_z's device.
    """
    if not l2_grid:
        raise ValueError("l2_grid=() is not allowed: give at least one L2 strength")
    for l2 in l2_grid:
        at_least("l2_grid value", l2, 0)
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction!r} is not allowed: must be in (0, 1)")
    z, y = train_z.float(), train_y.to(train_z.device)
    num_classes = num_classes or int(y.max()) + 1
    grid = sorted(l2_grid, reverse=True)
    best_l2, best_acc, init = grid[0], float("nan"), None
    if len(grid) > 1:
        fit, val = (i.to(z.device) for i in _stratified_split(y, val_fraction, seed))
        mean, std = _standardiser(z[fit])
        x_fit, x_val = (z[fit] - mean) / std, (z[val] - mean) / std
        best_acc = -1.0
        for l2 in grid:
            weight, bias = _fit_logistic(x_fit, y[fit], num_classes, l2, init, tolerance=1e-3)
            acc = ((x_val @ weight.T + bias).argmax(1) == y[val]).float().mean().item()
            if acc > best_acc:
                best_l2, best_acc, best = l2, acc, (weight, bias)
            init = (weight, bias)
        init = best
    mean, std = _standardiser(z)
    weight, bias = _fit_logistic((z - mean) / std, y, num_classes, best_l2, init, tolerance=1e-4)
    return LinearProbe(mean, std, weight, bias, best_l2, best_acc)


def linear_probe(train_z: torch.Tensor, train_y: torch.Tensor, test_z: torch.Tensor, test_y: torch.Tensor,
                 *, l2_grid=L2_GRID, val_fraction: float = 0.2, seed: int = 0) -> dict:
    """Test accuracy of `fit_linear_probe` (see there): {"accuracy", "l2", "val_accuracy"}.

    Shape: train_z (N, D), train_y (N,), test_z (M, D), test_y (M,).
    """
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    probe = fit_linear_probe(train_z, train_y, l2_grid=l2_grid, val_fraction=val_fraction, seed=seed,
                             num_classes=num_classes)
    return {"accuracy": probe.accuracy(test_z, test_y), "l2": probe.l2, "val_accuracy": probe.val_accuracy}


# --- the registry -------------------------------------------------------------------------------

def _on(device, *tensors):
    return tuple(t.to(device) for t in tensors)


@register_eval("knn")
def knn_eval(encoder, train: ImageSet, test: ImageSet, device, cache: dict | None = None,
             k: int = 200, temperature: float = 0.1) -> list[dict]:
    train_z, test_z = features_for(encoder, train, device, cache), features_for(encoder, test, device, cache)
    train_z, train_y = _on(device, train_z, train.labels)
    acc = knn_accuracy(train_z, train_y, test_z, test.labels, k=k, temperature=temperature)
    return [{"metric": "knn_acc", "value": acc, "eval": "knn", "k": k, "knn_temperature": temperature}]


@register_eval("linear")
def linear_eval(encoder, train: ImageSet, test: ImageSet, device, cache: dict | None = None) -> list[dict]:
    train_z, test_z = features_for(encoder, train, device, cache), features_for(encoder, test, device, cache)
    result = linear_probe(*_on(device, train_z, train.labels, test_z, test.labels))
    return [{"metric": "linear_acc", "value": result["accuracy"], "eval": "linear", "l2": result["l2"],
             "val_acc": result["val_accuracy"]}]


# --- segmentation probe ---------------------------------------------------------------------------

def miou(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    """Mean intersection-over-union over the whole set (the PASCAL VOC / ADE20K convention).

    IoU_c = |pred = c and target = c| / |pred = c or target = c|, pixels pooled over all images;
    the mean runs over classes whose union is non-empty, background (class 0) included.
    Shape: pred, target (N, H, W) integer class indices in [0, num_classes).
    """
    confusion = torch.bincount(target.flatten().long() * num_classes + pred.flatten().long(),
                               minlength=num_classes ** 2).view(num_classes, num_classes)
    inter = confusion.diag().double()
    union = confusion.sum(0) + confusion.sum(1) - confusion.diag()
    present = union > 0
    return (inter[present] / union[present]).mean().item()


def segmentation_probe(encoder, train: ImageSet, test: ImageSet, device, epochs: int = 20,
                       batch_size: int = 128, lr: float = 1e-2, seed: int = 0) -> float:
    """Linear segmentation probe on frozen spatial features; returns test mIoU (see `miou`).

    A 1x1 convolution maps standardised `encoder.features(x)` (N, D, h, w) to per-class logits,
    upsampled bilinearly to the image size and trained with pixel cross-entropy against the masks
    (AdamW, cosine-decayed learning rate). Classes: 0 .. max mask value over train and test.
    Our small-scale analogue of the FLOPs paper's frozen-backbone segmentation transfer.
    """
    for name, split in (("train", train), ("test", test)):
        if split.masks is None:
            raise ValueError(f"{name} has no masks: the segmentation probe needs an ImageSet with masks")
    at_least("epochs", epochs, 1)
    device = _device_of(encoder, device)
    train_f = extract_features(encoder, train.images, device, spatial=True)   # (N, D, h, w)
    test_f = extract_features(encoder, test.images, device, spatial=True)
    num_classes = int(max(train.masks.max(), test.masks.max())) + 1
    mean = train_f.mean((0, 2, 3), keepdim=True)
    std = train_f.std((0, 2, 3), keepdim=True).clamp(min=1e-6)
    size = tuple(train.masks.shape[-2:])
    head = nn.Conv2d(train_f.shape[1], num_classes, 1).to(device)
    for param in head.parameters():   # a convex problem: start from zero, so the seed alone fixes the result
        nn.init.zeros_(param)
    logits = lambda f: F.interpolate(head(((f - mean) / std).to(device)), size=size, mode="bilinear",
                                     align_corners=False)
    steps_per_epoch = -(-len(train_f) // batch_size)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for index in torch.randperm(len(train_f), generator=g).split(batch_size):
            loss = F.cross_entropy(logits(train_f[index]), train.masks[index].to(device).long())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
    with torch.no_grad():
        pred = torch.cat([logits(test_f[i:i + batch_size]).argmax(1).cpu()
                          for i in range(0, len(test_f), batch_size)])
    return miou(pred, test.masks, num_classes)


@register_eval("segmentation")
def segmentation_eval(encoder, train: ImageSet, test: ImageSet, device, cache: dict | None = None) -> list[dict]:
    return [{"metric": "miou", "value": segmentation_probe(encoder, train, test, device), "eval": "segmentation"}]


# --- robustness -----------------------------------------------------------------------------------

def _probe_accuracies(encoder, train: ImageSet, sets: dict, device) -> dict:
    """Fit one linear probe on clean train features; its accuracy on each set of `sets`."""
    cache: dict = {}
    train_z, train_y = _on(device, features_for(encoder, train, device, cache), train.labels)
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


# --- representation metrics ---------------------------------------------------------------------

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


# --- several evaluations at once ------------------------------------------------------------------

def evaluate(encoder, train: ImageSet, test: ImageSet, device, names=("knn", "linear")) -> list[dict]:
    """Run the evaluations `names` (keys of EVALS) on one feature cache; their rows, concatenated."""
    for name in names:
        choose("evaluation", name, EVALS)
    cache: dict = {}
    return [row for name in names for row in EVALS[name](encoder, train, test, device, cache=cache)]
