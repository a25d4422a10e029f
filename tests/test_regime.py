"""The regime check: learning curves read off tidy rows, and which methods are still climbing."""
import math

import pandas as pd

from ssl_core.config import RunConfig
from ssl_core.regime import PLATEAU_GAIN, climbing, regime_figure, regime_grid, regime_rows, unlearned


def rows(method, epochs, seed, linear, knn=None):
    out = [dict(method=method, epochs=epochs, seed=seed, metric="linear_acc", value=linear)]
    return out + ([dict(method=method, epochs=epochs, seed=seed, metric="knn_acc", value=knn)] if knn is not None else [])


def test_gain_is_paired_over_seeds_and_random_init_is_the_floor():
    frame = pd.DataFrame(rows("supervised", 0.0, 0, 0.10, 0.05) + rows("supervised", 0.0, 1, 0.20, 0.05)
                         + rows("simclr", 32.0, 0, 0.50, 0.3) + rows("simclr", 32.0, 1, 0.60, 0.3)
                         + rows("simclr", 64.0, 0, 0.52, 0.4) + rows("simclr", 64.0, 1, 0.66, 0.4)
                         + rows("simclr", 64.0, 2, 0.70, 0.4))               # seed 2 has no half-budget run
    [row] = regime_rows(frame, ["simclr"], 64.0)
    assert row["linear"] == round(100 * (0.52 + 0.66 + 0.70) / 3, 2) and row["knn"] == 40.0
    assert row["gain_last_doubling"] == 4.0 and row["random_init_linear"] == 15.0   # (2 + 6) / 2 points
    assert climbing([row]) == [row] and PLATEAU_GAIN == 3.0
    assert climbing([dict(row, gain_last_doubling=3.0)]) == []


def test_a_flat_method_at_random_init_is_unlearned_not_settled():
    frame = pd.DataFrame(rows("supervised", 0.0, 0, 0.30) + rows("byol", 32.0, 0, 0.32) + rows("byol", 64.0, 0, 0.31)
                         + rows("simclr", 32.0, 0, 0.70) + rows("simclr", 64.0, 0, 0.71))
    byol, simclr = regime_rows(frame, ["byol", "simclr"], 64.0)
    assert climbing([byol, simclr]) == [] and unlearned([byol, simclr]) == [byol]
    assert unlearned([dict(byol, linear=33.01)]) == []          # more than PLATEAU_GAIN points above random init


def test_no_knn_and_no_half_budget_are_nan_and_count_as_climbing():
    frame = pd.DataFrame(rows("supervised", 0.0, 0, 0.1) + rows("mae", 4.0, 0, 0.3))
    [row] = regime_rows(frame, ["mae"], 4.0)
    assert math.isnan(row["knn"]) and math.isnan(row["gain_last_doubling"]) and climbing([row]) == [row]


def test_the_figure_draws_a_panel_per_readout_the_runs_have(recwarn):
    both = pd.DataFrame(rows("supervised", 0.0, 0, 0.1, 0.1) + rows("mae", 2.0, 0, 0.2, 0.1)
                        + rows("mae", 4.0, 0, 0.3, 0.2))
    linear = both[both.metric == "linear_acc"]                              # claim 3 probes no kNN
    assert [ax.get_title() for ax in regime_figure(both, ["mae"]).axes] == ["linear probe", "kNN"]
    assert [ax.get_title() for ax in regime_figure(linear, ["mae"]).axes] == ["linear probe"]
    assert not [w for w in recwarn if "palette" in str(w.message)]         # no empty panel's seaborn warning


def test_regime_grid_trains_each_method_at_the_budget_and_half_of_it():
    grid = regime_grid(RunConfig(), ["simclr", "byol"], 64.0, 2)
    assert sorted({(c.method, c.epochs) for c in grid}) == [("byol", 32.0), ("byol", 64.0), ("simclr", 32.0),
                                                            ("simclr", 64.0), ("supervised", 0.0)]
    assert len(grid) == 10
