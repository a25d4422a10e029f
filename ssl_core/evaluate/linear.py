"""The linear probe on frozen features: logistic regression, L2 chosen on a validation split (EVALS["linear"])."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ssl_core.checks import at_least
from ssl_core.data import ImageSet
from ssl_core.evaluate import register_eval
from ssl_core.evaluate.features import features_for, on_device

L2_GRID = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5)   # lambda of the probe's loss, strongest first


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


@register_eval("linear")
def linear_eval(encoder, train: ImageSet, test: ImageSet, device, cache: dict | None = None) -> list[dict]:
    train_z, test_z = features_for(encoder, train, device, cache), features_for(encoder, test, device, cache)
    result = linear_probe(*on_device(device, train_z, train.labels, test_z, test.labels))
    return [{"metric": "linear_acc", "value": result["accuracy"], "eval": "linear", "l2": result["l2"],
             "val_acc": result["val_accuracy"]}]
