"""Effects, verdicts and the blocked ANOVA against hand computations."""
import math

import numpy as np
import pandas as pd
import pytest

from ssl_core.stats import (INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Effect, blocked_anova, combine, effect,
                            paired_effect, verdict)


def test_effect_is_the_mean_with_a_student_t_interval():
    e = effect([1.0, 2.0, 6.0])
    half = 4.302652729911275 * np.std([1, 2, 6], ddof=1) / math.sqrt(3)        # t(0.975, 2)
    assert (e.mean, e.n) == (3.0, 3)
    assert (e.low, e.high) == pytest.approx((3 - half, 3 + half))
    assert effect([1.0, float("nan"), 3.0]).n == 2                             # non-finite values are dropped
    one = effect([2.0])
    assert one.mean == 2.0 and math.isnan(one.low) and verdict(one) == INCONCLUSIVE


def test_effect_interval_at_another_level():
    e = effect([1.0, 2.0, 6.0], level=0.90)
    half = 2.919985580355516 * np.std([1, 2, 6], ddof=1) / math.sqrt(3)        # t(0.95, 2)
    assert (e.low, e.high, e.level) == pytest.approx((3 - half, 3 + half, 0.90))
    assert str(e).startswith("+3.00 [90% CI") and str(effect([1.0, 2.0])).startswith("+1.50 [95% CI")
    with pytest.raises(ValueError, match="level=1.5"):
        effect([1.0, 2.0], level=1.5)


def test_paired_effect_pairs_on_seeds_present_in_both():
    df = pd.DataFrame({"method": ["a", "a", "a", "b", "b"], "seed": [0, 1, 2, 0, 1], "value": [5.0, 7.0, 100.0, 1.0, 4.0]})
    e = paired_effect(df, "method", "a", "b")
    assert e.n == 2 and e.mean == pytest.approx(3.5)                           # seed 2 has no partner
    assert paired_effect(df, "method", "a", "missing").n == 0


@pytest.mark.parametrize("low, high, expected", [(0.1, 2.0, REPRODUCED), (-1.0, 0.0, NOT_REPRODUCED),
                                                 (-3.0, -1.0, NOT_REPRODUCED), (-0.5, 0.5, INCONCLUSIVE)])
def test_verdict_reads_the_interval(low, high, expected):
    assert verdict(Effect((low + high) / 2, low, high, 3)) == expected


def test_combine_needs_every_part():
    assert combine(REPRODUCED, REPRODUCED) == REPRODUCED
    assert combine(REPRODUCED, INCONCLUSIVE) == INCONCLUSIVE
    assert combine(INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED) == NOT_REPRODUCED


def test_blocked_anova_matches_a_hand_computation():
    x = {("a", 0): 5.0, ("a", 1): 7.0, ("a", 2): 6.5, ("b", 0): 1.0, ("b", 1): 2.5, ("b", 2): 1.0,
         ("c", 0): 3.0, ("c", 1): 3.5, ("c", 2): 2.0}
    df = pd.DataFrame([{"method": m, "seed": s, "value": v} for (m, s), v in x.items()])
    methods, seeds = "abc", range(3)
    m = np.mean(list(x.values()))
    g = {k: np.mean([x[k, s] for s in seeds]) for k in methods}
    b = {s: np.mean([x[k, s] for k in methods]) for s in seeds}
    ss_between = sum(3 * (g[k] - m) ** 2 for k in methods)
    ss_error = sum((x[k, s] - g[k] - b[s] + m) ** 2 for k in methods for s in seeds)
    f_expected = (ss_between / 2) / (ss_error / 4)
    f, p = blocked_anova(df, "method")
    assert f == pytest.approx(f_expected)
    from scipy.stats import f as f_dist
    assert p == pytest.approx(f_dist.sf(f_expected, 2, 4))
    assert p < 0.01


def test_blocked_anova_sees_no_difference_in_noise_and_ignores_block_shifts():
    rng = np.random.default_rng(0)
    rows = [{"method": k, "seed": s, "value": 10.0 * s + rng.normal()} for k in "abcd" for s in range(6)]
    f, p = blocked_anova(pd.DataFrame(rows), "method")
    assert p > 0.05                                                             # big seed shifts, no method effect
    shifted = [dict(r, value=r["value"] + 3.0 * "abcd".index(r["method"])) for r in rows]
    assert blocked_anova(pd.DataFrame(shifted), "method")[1] < 1e-6             # a method effect under the shifts
    assert all(math.isnan(v) for v in blocked_anova(pd.DataFrame(rows[:1]), "method"))


def test_a_climbing_method_makes_the_verdict_unconverged(tmp_path, monkeypatch, capsys):
    import json

    import ssl_core.stats as stats
    monkeypatch.setattr(stats, "figures_dir", lambda preset: tmp_path)
    e = stats.effect([1.0, 2.0, 3.0, 2.5, 1.5])
    settled = [{"method": "simclr", "budget": 64.0, "linear": 70.0, "knn": 50.0, "random_init_linear": 17.0,
                "gain_last_doubling": 1.0}]
    assert stats.save_verdict("nb", stats.REPRODUCED, {"a": e, "b": e}, regime=settled, primary="b") == "reproduced"
    saved = json.loads((tmp_path / "nb_verdict.json").read_text())
    assert saved["primary"] == "b" and saved["regime"] == settled and "caveat" not in saved
    climbing = settled + [dict(settled[0], method="byol", gain_last_doubling=4.2)]
    assert stats.save_verdict("nb", stats.REPRODUCED, {"a": e}, regime=climbing) == stats.UNCONVERGED
    saved = json.loads((tmp_path / "nb_verdict.json").read_text())
    assert saved["verdict"] == "unconverged" and "byol linear 70.0% at 64 epochs, +4.2" in saved["unconverged"]
    assert "would give 'reproduced'" in capsys.readouterr().out.splitlines()[-1]
    stats.save_verdict("nb", stats.REPRODUCED, {"a": e}, preset="smoke", regime=settled)
    assert "decides nothing" in json.loads((tmp_path / "nb_verdict.json").read_text())["caveat"]
    with pytest.raises(ValueError, match="primary='c' is not allowed"):
        stats.save_verdict("nb", stats.REPRODUCED, {"a": e}, primary="c")


def test_detectable_effect_is_found_with_80_percent_power_by_simulation():
    # paired differences ~ N(d, 1) with d the detectable effect of a 5-seed design whose observed spread is 1:
    # the 95% interval should exclude 0 in 80% of simulated experiments
    observed = effect(np.array([-1.0, -0.5, 0.0, 0.5, 1.0]) / np.std([-1.0, -0.5, 0.0, 0.5, 1.0], ddof=1))
    d = observed.detectable
    rng = np.random.default_rng(0)
    runs = [effect(rng.normal(d, 1.0, 5)) for _ in range(20000)]
    power = np.mean([e.low > 0 or e.high < 0 for e in runs])
    assert abs(power - 0.8) < 0.015, power
    assert 1.5 < d < 2.0   # about 1.7 standard deviations at n=5; the normal approximation (2.8 / sqrt(5)) would say 1.25
    assert np.isnan(effect([1.0]).detectable) and "detects" in str(observed)
