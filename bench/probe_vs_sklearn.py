"""Linear probe: ssl_core.evaluate.linear.linear_probe (torch L-BFGS) vs scikit-learn's LogisticRegression.

Both fit the same problem: multinomial logistic regression on the same standardised synthetic
features (10,000 train x 512, 10 classes: Gaussian class means plus isotropic noise, so accuracy
is well below 100%), with the L2 strength chosen from the same grid on the same stratified
validation split, then refit on all of train. sklearn minimises C * sum CE + 1/2 ||W||^2, which
is our mean CE + l2/2 ||W||^2 with C = 1 / (l2 * n). Run: `python bench/probe_vs_sklearn.py`.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from ssl_core.evaluate.linear import L2_GRID, _stratified_split, linear_probe


def synthetic(n: int, dim: int, classes: int, separation: float, seed: int):
    """Shape: returns z (n, dim) float32, y (n,) int64; means ~ N(0, separation^2 / dim) per coordinate."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(classes, dim, generator=torch.Generator().manual_seed(1234)) * separation / dim ** 0.5
    y = torch.randint(classes, (n,), generator=g)
    return means[y] + torch.randn(n, dim, generator=g), y


def sklearn_probe(train_z, train_y, test_z, test_y, l2_grid, val_fraction, seed, max_iter, warm):
    """The same protocol with sklearn: grid on the same split (strongest first), refit on all of train."""
    x, y = train_z.numpy().astype(np.float64), train_y.numpy()
    fit, val = (i.numpy() for i in _stratified_split(train_y, val_fraction, seed))
    scale = lambda a, ref: (a - ref.mean(0)) / ref.std(0)
    make = lambda l2, n: LogisticRegression(C=1 / (l2 * n), max_iter=max_iter, warm_start=warm)
    best, model = (-1.0, None), make(max(l2_grid), len(fit))
    for l2 in sorted(l2_grid, reverse=True):
        model.set_params(C=1 / (l2 * len(fit)))
        model.fit(scale(x[fit], x[fit]), y[fit])
        acc = model.score(scale(x[val], x[fit]), y[val])
        best = max(best, (acc, l2), key=lambda t: t[0])
        if not warm:
            model = make(l2, len(fit))
    final = make(best[1], len(x)).fit(scale(x, x), y)
    return {"accuracy": final.score(scale(test_z.numpy().astype(np.float64), x), test_y.numpy()),
            "l2": best[1], "val_accuracy": best[0]}


def timed(fn, *args, **kw):
    """(result, wall seconds, CPU seconds of this process over all threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kw)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--separation", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train_z, train_y = synthetic(args.n, args.dim, args.classes, args.separation, seed=0)
    test_z, test_y = synthetic(args.n // 2, args.dim, args.classes, args.separation, seed=1)
    warnings.simplefilter("ignore", ConvergenceWarning)

    linear_probe(train_z[:500], train_y[:500], test_z[:100], test_y[:100])     # warm-up (allocations)
    on = lambda *t: [v.to(args.device) for v in t]
    ours, wall_ours, cpu_ours = timed(linear_probe, *on(train_z, train_y, test_z, test_y))
    print(f"features {args.n} x {args.dim}, {args.classes} classes, grid {L2_GRID}, {args.threads} threads")
    print(f"{'':24s} {'wall s':>7s} {'cpu s':>7s} {'test acc':>9s} {'val acc':>8s} {'l2':>7s}"
          f"  {'sklearn/ours wall':>17s} {'cpu':>5s}")
    row = lambda name, r, wall, cpu: print(f"{name:24s} {wall:7.2f} {cpu:7.2f} {r['accuracy']:9.4f} "
                                           f"{r['val_accuracy']:8.4f} {r['l2']:7.0e}", end="")
    row("ssl_core (torch L-BFGS)", ours, wall_ours, cpu_ours)
    print()
    for max_iter, warm in ((100, False), (1000, False), (1000, True)):
        ref, wall, cpu = timed(sklearn_probe, train_z, train_y, test_z, test_y, L2_GRID, 0.2, 0, max_iter, warm)
        row(f"sklearn it={max_iter}{' warm' if warm else ''}", ref, wall, cpu)
        print(f"  {wall / wall_ours:16.1f}x {cpu / cpu_ours:4.1f}x")
    # context: one sklearn fit at the L2 strength both chose, no selection (a lower bound for sklearn)
    x = train_z.numpy().astype(np.float64)
    scale = lambda a: (a - x.mean(0)) / x.std(0)
    single = lambda: LogisticRegression(C=1 / (ours["l2"] * len(x)), max_iter=1000).fit(scale(x), train_y.numpy())
    model, wall, cpu = timed(single)
    acc = model.score(scale(test_z.numpy().astype(np.float64)), test_y.numpy())
    print(f"{'sklearn one fit, no grid':24s} {wall:7.2f} {cpu:7.2f} {acc:9.4f} {'-':>8s} {ours['l2']:7.0e}"
          f"  {wall / wall_ours:16.1f}x {cpu / cpu_ours:4.1f}x")

if __name__ == "__main__":
    main()
