"""Claim 1's helpers: the budget grid, crossover and gaps against hand-computed answers; the -C sets
against corrupt() applied directly; cached per-encoder rows."""
import math
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from ssl_core.config import RunConfig
from ssl_core.data import load_dataset
from ssl_core.data.corruptions import corrupt
from ssl_core.robustness import (CLEAN, budget_grid, budget_gaps, corruption_benchmark, check_corruptions,
                                 corruption_summary, crossover, encoder_rows, spread_random_init, transfer_rows)
from ssl_core.runs import load_encoder

BASE = RunConfig(dataset="curated", dataset_size=64, encoder="resnet10", width=8, batch_size=32, device="cpu")
METHODS = ("supervised", "simclr")


def test_budget_grid_sweeps_budgets_and_runs_random_init_once_per_seed():
    grid = budget_grid(BASE, METHODS, 4, [0.25, 0.5, 1], seeds=2)
    random = [c for c in grid if c.epochs == 0]
    assert [(c.method, c.seed) for c in random] == [("supervised", 0), ("supervised", 1)]
    trained = {(c.method, c.epochs, c.seed) for c in grid if c.epochs > 0}
    assert trained == {(m, b, s) for m in METHODS for b in (1.0, 2.0, 4.0) for s in (0, 1)}
    assert len(grid) == 2 + 12
    # an integer budget gives the same run (same cache key) as the float one another notebook asks for
    assert BASE.replace(method="simclr", epochs=4.0, seed=1).key() in {c.key() for c in grid}
    with pytest.raises(ValueError, match="fractions"):
        budget_grid(BASE, METHODS, 4, [0, 1], seeds=2)


def test_random_init_is_one_encoder_for_every_method(private_cache):
    a, b = (load_encoder(BASE.replace(method=m, epochs=0.0, seed=1)).state_dict() for m in METHODS)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = load_encoder(BASE.replace(method="supervised", epochs=0.0, seed=2)).state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_spread_random_init_repeats_budget_zero_under_each_method():
    df = pd.DataFrame({"method": ["supervised", "supervised", "simclr"], "epochs": [0.0, 1.0, 1.0],
                       "seed": [0, 0, 0], "value": [0.3, 0.5, 0.4]})
    out = spread_random_init(df, METHODS)
    assert sorted(zip(out.method, out.epochs, out.value)) == sorted(
        [("supervised", 0.0, 0.3), ("simclr", 0.0, 0.3), ("supervised", 1.0, 0.5), ("simclr", 1.0, 0.4)])


@pytest.mark.parametrize("a, b, expected", [
    ([3, 2, 1], [1, 1, 2], 3.0),          # a - b = 2, 1, -1: zero between budgets 2 and 4, at 2 + 2 * 1/2
    ([1, 2, 5], [2, 2, 3], 2.0),          # reaches zero exactly at budget 2
    ([1, 1, 1], [2, 3, 4], math.nan),     # never crosses
    ([2, 1, 1], [2, 3, 4], 1.0),          # level at the first budget
])
def test_crossover_known_answers(a, b, expected):
    got = crossover([1, 2, 4], a, b)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


def test_budget_gaps_pair_seeds_at_the_smallest_budget():
    rows = []
    for task, shift in (("t1", 0.0), ("t2", 0.2)):
        for seed, (s_sup, s_clr) in enumerate([(0.50, 0.40), (0.55, 0.41), (0.60, 0.48)]):
            for epochs, lift in ((0.0, 0.0), (1.0, 0.0), (2.0, 0.3)):    # simclr gains 0.3 at budget 2
                rows += [{"eval_dataset": task, "method": "supervised", "seed": seed, "epochs": epochs,
                          "value": s_sup + shift}, {"eval_dataset": task, "method": "simclr", "seed": seed,
                                                    "epochs": epochs, "value": s_clr + shift + lift}]
    gaps = budget_gaps(pd.DataFrame(rows), "supervised", "simclr").set_index("eval_dataset")
    d = np.array([0.10, 0.14, 0.12])
    half = 4.302652729911275 * d.std(ddof=1) / np.sqrt(3)                # t(0.975, 2)
    for task in ("t1", "t2"):
        assert gaps.loc[task, "budget"] == 1.0 and gaps.loc[task, "n"] == 3
        assert gaps.loc[task, ["gap", "low", "high"]].tolist() == pytest.approx([d.mean(), d.mean() - half,
                                                                              d.mean() + half])
        # mean gap 0.12 at budget 1, 0.12 - 0.3 = -0.18 at budget 2: crossing at 1 + 0.12 / 0.30
        assert gaps.loc[task, "crossover"] == pytest.approx(1.4)


def test_corruption_benchmark_corrupts_one_seeded_subset(private_cache):
    train, sets = corruption_benchmark("suite/digits", ["gaussian_noise", "contrast"], [1, 5], images=40, seed=3)
    test = load_dataset("suite/digits", "test", seed=3)
    assert len(train) == len(load_dataset("suite/digits", "train", seed=3))
    clean = sets[CLEAN]
    assert set(sets) == {CLEAN, ("gaussian_noise", 1), ("gaussian_noise", 5), ("contrast", 1), ("contrast", 5)}
    assert len(clean) == 40 and len(set(map(tuple, clean.images.flatten(1).tolist()))) == 40
    index = [next(j for j in range(len(test)) if torch.equal(test.images[j], x)) for x in clean.images]
    assert torch.equal(test.labels[index], clean.labels)
    for (name, severity), data in sets.items():
        if (name, severity) != CLEAN:
            assert torch.equal(data.images, corrupt(clean.images, name, severity, 3))
            assert torch.equal(data.labels, clean.labels)
    assert len(corruption_benchmark("suite/digits", ["fog"], [2], images=0)[1][("fog", 2)]) == len(test)


def test_corruption_benchmark_reads_the_same_images_of_cifar10c(tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_CORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SSL_CORE_DATA", str(tmp_path))
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    test = rng.integers(0, 256, (6, 3 * 32 * 32), dtype=np.uint8)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        x = test if name == "test_batch" else rng.integers(0, 256, (2, 3 * 32 * 32), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": x, "labels": list(range(len(x))), "batch_label": name}, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{k}" for k in range(10)]}, f, protocol=2)
    (tmp_path / "CIFAR-10-C").mkdir()
    fog = rng.integers(0, 256, (5 * 6, 32, 32, 3), dtype=np.uint8)          # 5 severities x the 6 test images
    np.save(tmp_path / "CIFAR-10-C" / "fog.npy", fog)
    np.save(tmp_path / "CIFAR-10-C" / "labels.npy", np.tile(np.arange(6), 5))
    train, sets = corruption_benchmark("cifar10c", ["fog"], [2], images=3, seed=1)
    assert len(train) == 10
    clean, foggy = sets[CLEAN], sets[("fog", 2)]
    picked = [next(j for j in range(6) if np.array_equal(test[j], x.numpy().reshape(-1))) for x in clean.images]
    assert len(set(picked)) == 3 and clean.labels.tolist() == picked
    assert torch.equal(foggy.images, torch.from_numpy(fog[6 + np.array(picked)]).permute(0, 3, 1, 2))
    assert foggy.labels.tolist() == picked


def test_check_corruptions_follows_the_benchmark():
    check_corruptions("curated", ["saturate", "gaussian_blur"], [1, 5])
    check_corruptions("cifar10c", ["snow"], [3])
    with pytest.raises(ValueError, match="corruptions='snow'"):
        check_corruptions("curated", ["snow"], [3])
    with pytest.raises(ValueError, match="severities=6"):
        check_corruptions("curated", ["fog"], [6])


def test_encoder_rows_evaluates_each_run_once_then_reads_the_cache(private_cache):
    grid = [BASE.replace(method="supervised", epochs=0.0, seed=s) for s in (0, 1)]
    calls = []

    def evaluate(encoder, device):
        calls.append(encoder.dim)
        return [{"metric": "dim", "value": float(encoder.dim) + len(calls)}]

    first = encoder_rows(grid, evaluate, "probe", "curated", images=5)
    again = encoder_rows(grid, evaluate, "probe", "curated", images=5)
    assert len(calls) == 2
    pd.testing.assert_frame_equal(first, again)
    assert first.seed.tolist() == [0, 1] and first.value.tolist() == [65.0, 66.0]   # width 8: 64 channels
    assert set(first.eval_dataset) == {"curated"} and first.key.tolist() == [c.key() for c in grid]
    encoder_rows(grid, evaluate, "probe", "curated", images=6)                # another spec: computed anew
    assert len(calls) == 4


def test_corruption_summary_known_answer():
    rows = []
    for method, seed, clean, corrupted in (("supervised", 0, 0.8, [0.6, 0.4]), ("simclr", 0, 0.5, [0.2, 0.3])):
        rows.append({"metric": "linear_acc", "method": method, "seed": seed, "corruption": CLEAN[0], "value": clean})
        rows += [{"metric": "linear_acc", "method": method, "seed": seed, "corruption": "fog", "value": v}
                 for v in corrupted]
    out = corruption_summary(pd.DataFrame(rows)).set_index("method")
    assert out.loc["supervised", ["clean", "corrupted", "relative"]].tolist() == pytest.approx([0.8, 0.5, 0.625])
    assert out.loc["simclr", "relative"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="clean"):
        corruption_summary(pd.DataFrame(rows[1:3]))


def test_transfer_rows_probe_on_fewer_train_images_matches_linear_probe(private_cache):
    from ssl_core.evaluate.features import extract_features
    from ssl_core.evaluate.linear import linear_probe
    cfg = BASE.replace(method="supervised", epochs=0.0, seed=0)
    rows = transfer_rows([cfg], "suite/colour", train_images=300)
    train = load_dataset("suite/colour", "train", size=300)
    test = load_dataset("suite/colour", "test")
    assert len(train) == 300
    encoder = load_encoder(cfg)
    expected = linear_probe(extract_features(encoder, train.images), train.labels,
                            extract_features(encoder, test.images), test.labels)
    assert rows.metric.tolist() == ["linear_acc"] and set(rows.eval_dataset) == {"suite/colour"}
    assert rows.value.iloc[0] == pytest.approx(expected["accuracy"], abs=1e-3)
