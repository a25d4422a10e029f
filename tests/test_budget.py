"""Equal-FLOP budgets: counted step FLOPs against a closed form and against a count on real CPU tensors;
epochs, grid, footprint and claim helpers against hand computations."""
import pandas as pd
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ssl_core.budget import (dataset_gap, equal_flop_epochs, flop_grid, footprint_table, method_spread, probe_grid,
                             probe_rows, step_flops)
from ssl_core.config import RunConfig
from ssl_core.flops import DEVICE_WATTS, GRID_G_PER_KWH, training_step_flops
from ssl_core.methods import METHODS
from ssl_core.runs import eval_path

BASE = RunConfig(encoder="vit_tiny_p8", dataset="curated", dataset_size=64, batch_size=4, epochs=2.0)


def test_supervised_vit_step_is_three_forwards_minus_the_patch_input_gradient(private_cache):
    tokens, dim, depth, classes, n = 17, 192, 12, 120, BASE.batch_size       # 4x4 patches + CLS at 32 px
    patch = 2 * (tokens - 1) * (3 * 8 * 8) * dim
    linears = depth * 2 * tokens * dim * dim * (3 + 1 + 4 + 4)               # qkv, proj, fc1, fc2
    attention = depth * 2 * 2 * tokens * tokens * dim
    forward = patch + linears + attention + 2 * dim * classes
    crop = 3 * 2 * (2 * 32 * 32 * 32)                                        # the view's crop: Ry @ x @ Rx^T per channel
    # backward: weight gradients cost one forward, input gradients another, except the image's
    assert step_flops(BASE.replace(method="supervised")) == n * (3 * forward - patch + crop)


def test_meta_count_matches_a_count_on_real_tensors(private_cache):
    # DINO: the one method whose loss indexes with a boolean mask (data-dependent on the meta device)
    cfg = BASE.replace(method="dino", batch_size=2, dino_out_dim=64, dino_local_crops=1)
    torch.manual_seed(0)
    model = METHODS["dino"](cfg, 120).train()
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    y = torch.zeros(2, dtype=torch.long)
    with sdpa_kernel(SDPBackend.MATH):     # the fused CPU attention kernel escapes FlopCounterMode
        real = training_step_flops(lambda x, y: model(x, y, torch.Generator().manual_seed(0)), x, y)
    assert step_flops(cfg) == real


def test_equal_flop_epochs_rounds_to_whole_steps():
    assert equal_flop_epochs(1000, 100, 5) == 2.0          # 10 steps over 5 per epoch
    assert equal_flop_epochs(1040, 100, 4) == 10 / 4       # 10.4 steps -> 10
    assert equal_flop_epochs(10, 100, 4) == 1 / 4          # at least one step
    with pytest.raises(ValueError, match="flops_per_step=0"):
        equal_flop_epochs(1, 0, 1)


def test_flop_grid_gives_every_method_the_supervised_budget(private_cache):
    configs, table = flop_grid(BASE, ["supervised", "mae", "simclr"], ["curated"], [0.5, 1.0], seeds=2)
    assert len(configs) == len(table) == 3 * 2 * 2 and table.key.is_unique
    per_epoch = 64 // 4
    top = table[(table.method == "supervised") & (table.level == 1.0)]
    assert (top.epochs == 2.0).all() and (top.train_flops == 2 * per_epoch * top.step_flops).all()
    # realised FLOPs within half a step of the target, and steps that follow the configs' epochs
    assert ((table.train_flops - table.target_flops).abs() <= table.step_flops / 2).all()
    assert [round(c.epochs * per_epoch) for c in configs] == table.steps.tolist()
    epochs = table[table.level == 1.0].groupby("method").epochs.first()
    assert epochs["mae"] > epochs["supervised"] > epochs["simclr"]     # MAE's step is cheapest, SimCLR's two views dearest
    with pytest.raises(ValueError, match="levels="):
        flop_grid(BASE, ["supervised"], ["curated"], [1.5], seeds=1)


def test_flop_grid_gives_every_dataset_the_budget_of_the_reference_dataset(private_cache):
    # digits (1,198 train images) is the reference; heldout (2,000) gets the same FLOPs, so fewer epochs
    base = BASE.replace(dataset="suite/digits", dataset_size=0, batch_size=64, epochs=1.0)
    _, table = flop_grid(base, ["supervised", "mae"], ["suite/digits", "heldout"], [1.0], seeds=1)
    table = table.set_index(["method", "dataset"])
    assert table.target_flops.nunique() == 1
    assert table.target_flops.iloc[0] == (1198 // 64) * table.loc[("supervised", "suite/digits"), "step_flops"]
    for method in ("supervised", "mae"):
        steps = table.loc[(method, "heldout"), "steps"]
        assert steps == round(table.target_flops.iloc[0] / table.loc[(method, "heldout"), "step_flops"])
        assert table.loc[(method, "heldout"), "epochs"] == steps / (2000 // 64)


def test_probe_rows_cache_a_subset_evaluation(private_cache):
    cfg = BASE.replace(method="mae", dataset_size=8, epochs=1.0, batch_size=4)
    rows = probe_rows(cfg, "linear", "curated", 40, 10)
    assert len(rows) == 1 and rows[0]["metric"] == "linear_acc" and rows[0]["steps"] == 2
    assert rows[0]["value"] in [k / 10 for k in range(11)]               # accuracy over 10 test images
    assert (eval_path(cfg, "linear@curated-40-10")).exists()
    assert probe_rows(cfg, "linear", "curated", 40, 10) == rows          # read back, not recomputed


def test_probe_grid_in_workers_gives_the_rows_of_one_run_after_another(monkeypatch, private_cache, private_store):
    import shutil
    import ssl_core.runs as runs
    monkeypatch.setenv("SSL_CORE_STORE", "write")
    cfgs = [BASE.replace(method="mae", encoder="vit_mini", dataset_size=8, epochs=1.0, batch_size=4, seed=s)
            for s in range(2)]
    for cfg in cfgs:
        runs.pretrain(cfg, progress=False)                                   # stored, no rows: claim 3's runs
    shutil.rmtree(private_cache / "runs")                                     # a fresh clone: no weights
    probes = {cfgs[0]: [("linear", "curated"), ("knn", "curated")], cfgs[1]: [("knn", "curated")]}
    together = probe_grid(probes, 40, 10, parallel=2)                        # each trained again in a worker
    assert {k: set(v) for k, v in together.items()} == {cfgs[0].key(): {"linear", "knn"}, cfgs[1].key(): {"knn"}}
    assert all(row["threads"] == 1 for found in together.values() for rows in found.values() for row in rows)
    with monkeypatch.context() as patched:
        patched.setattr(runs, "train_group", lambda *a, **k: pytest.fail("a probed run was trained again"))
        assert probe_grid(probes, 40, 10, parallel=2) == together             # all there: read here
    shutil.rmtree(private_cache / "runs")
    shutil.rmtree(private_store)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for cfg in cfgs:
            runs.pretrain(cfg, progress=False)
        shutil.rmtree(private_cache / "runs")
        alone = probe_grid(probes, 40, 10, parallel=1)                        # one after another, here
    finally:
        torch.set_num_threads(threads)
    values = lambda found: {k: {n: [r["value"] for r in rows] for n, rows in v.items()} for k, v in found.items()}
    assert values(alone) == values(together)
    with pytest.raises(ValueError, match="probes='segmentaton' is not allowed"):
        probe_grid({cfgs[0]: [("segmentaton", "curated")]}, 40, 10)


def test_footprint_table_follows_the_tables():
    runs = pd.DataFrame(dict(method=["mae", "mae"], dataset="curated", level=1.0, seed=0, steps=10,
                             train_flops=7.2e12, train_seconds=3600.0, key=["k", "k"]))
    table = footprint_table(runs, "cpu-2core", "FRA")
    assert len(table) == 1
    kwh = DEVICE_WATTS["cpu-2core"] / 1000
    assert table.energy_kwh_est[0] == pytest.approx(kwh)
    assert table.co2_kg_est[0] == pytest.approx(kwh * GRID_G_PER_KWH["FRA"] / 1000)
    assert table.gflop_per_s[0] == pytest.approx(2.0)


def test_method_spread_and_dataset_gap_pair_over_seeds():
    df = pd.DataFrame(dict(method=["a", "a", "b", "b", "c", "c"], seed=[0, 1] * 3, value=[5.0, 7.0, 1.0, 2.0, 3.0, 3.0]))
    best, worst, e, p = method_spread(df)
    assert (best, worst) == ("a", "b") and e.mean == pytest.approx(4.5) and e.n == 2 and 0 < p < 1
    gap = pd.DataFrame(dict(method=["a"] * 4 + ["b"] * 4, dataset=["cur", "cur", "unc", "unc"] * 2, seed=[0, 1] * 4,
                            value=[5.0, 6.0, 4.0, 4.0, 1.0, 1.0, 2.0, 3.0]))
    per_method, pooled = dataset_gap(gap, "cur", "unc")
    assert per_method["a"].mean == pytest.approx(1.5) and per_method["b"].mean == pytest.approx(-1.5)
    assert pooled.mean == pytest.approx(0.0) and pooled.n == 4
