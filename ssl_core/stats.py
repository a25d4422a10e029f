"""Effect sizes with their uncertainty, and verdicts computed from them (never written by hand).

An effect is a mean of paired differences (one per seed) with a two-sided 95% Student-t
interval. A claim that predicts a positive effect is
    "reproduced"      when the whole interval is above 0,
    "not reproduced"  when the whole interval is at or below 0 (the effect is absent or reversed),
    "inconclusive"    otherwise (the interval straddles 0, or there are fewer than 2 seeds).
A notebook's verdict is "unconverged" instead when a method it compares is still learning at the budget
where the verdict is taken (ssl_core.regime).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import integrate, optimize, stats as st

from ssl_core.checks import choose
from ssl_core.io import write_json
from ssl_core.plots import figures_dir
from ssl_core.regime import PLATEAU_GAIN, climbing, regime_line

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
UNCONVERGED = "unconverged"
POWER = 0.8              # of the smallest detectable effect (Effect.detectable)
DECIDING_PRESETS = ("default", "paper")   # the others (smoke, quick) check the plumbing or give a first look


@dataclass(frozen=True)
class Effect:
    mean: float
    low: float
    high: float
    n: int
    level: float = 0.95     # coverage of the interval [low, high]

    @property
    def detectable(self) -> float:
        """The smallest true effect this design finds (its interval excludes 0) with probability POWER, given
        the observed spread s of the n paired differences: d = c s / sqrt(n), where c is the noncentrality at
        which the two-sided t-test at this level has that power, P(|T'(n-1, c)| > t_{(1+level)/2, n-1}) = POWER.
        NaN with fewer than 2 values."""
        if self.n < 2 or not np.isfinite(self.high):
            return float("nan")
        return (self.high - self.mean) / st.t.ppf((1 + self.level) / 2, self.n - 1) * noncentrality(self.n, self.level)

    def __str__(self) -> str:
        return (f"{self.mean:+.2f} [{100 * self.level:g}% CI {self.low:+.2f}, {self.high:+.2f}; n={self.n}; "
                f"detects {self.detectable:.2f}]")


@lru_cache(maxsize=None)
def noncentrality(n: int, level: float) -> float:
    """The c at which the two-sided t-test of n paired values at `level` has power POWER (see Effect.detectable);
    a function of n and level alone, so each is solved once (a second of numerical integration)."""
    df, critical = n - 1, st.t.ppf((1 + level) / 2, n - 1)
    return optimize.brentq(lambda c: t_test_power(c, df, critical) - POWER, 0.0, 1e3)


def t_test_power(c: float, df: int, critical: float) -> float:
    """P(|T'| > critical) for T' = (Z + c) / sqrt(V / df), Z ~ N(0, 1), V ~ chi2(df): the power of a two-sided t-test
    at noncentrality c, integrated over V (scipy's noncentral t returns NaN over much of this range)."""
    def given(v):
        bound = critical * np.sqrt(v / df)
        return st.chi2.pdf(v, df) * (st.norm.sf(bound - c) + st.norm.cdf(-bound - c))
    return integrate.quad(given, 0, np.inf, limit=200)[0]


def effect(differences, level: float = 0.95) -> Effect:
    """Mean of `differences` with a two-sided t-interval of coverage `level` (NaN bounds with fewer
    than 2 values)."""
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} is not allowed: must be in (0, 1)")
    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    if len(d) < 2:
        m = float(d.mean()) if len(d) else float("nan")
        return Effect(m, float("nan"), float("nan"), len(d), level)
    half = st.t.ppf((1 + level) / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return Effect(float(d.mean()), float(d.mean() - half), float(d.mean() + half), len(d), level)


def paired_effect(df: pd.DataFrame, column: str, a, b, on: str = "seed", value: str = "value") -> Effect:
    """Effect of `column == a` minus `column == b`, paired on `on` (seeds present in both)."""
    wide = df[df[column].isin([a, b])].pivot_table(index=on, columns=column, values=value)
    if a not in wide or b not in wide:
        return effect([])
    return effect((wide[a] - wide[b]).dropna())



def blocked_anova(df: pd.DataFrame, column: str, block: str = "seed", value: str = "value") -> tuple[float, float]:
    """Do the groups of `column` differ beyond noise? A two-way ANOVA without replication (randomised
    blocks: one value per (group, block), e.g. per (method, seed)): with grand mean m, group means g_i,
    block means b_j over I groups and J blocks,
        F = [J sum_i (g_i - m)^2 / (I - 1)] / [sum_ij (x_ij - g_i - b_j + m)^2 / ((I - 1)(J - 1))],
    p = P(F(I - 1, (I - 1)(J - 1)) > F). Blocks missing a group are dropped. Returns (F, p); (nan, nan)
    with fewer than 2 groups or 2 complete blocks.
    """
    wide = df.pivot_table(index=block, columns=column, values=value).dropna()
    i, j = wide.shape[1], wide.shape[0]
    if i < 2 or j < 2:
        return float("nan"), float("nan")
    x = wide.to_numpy(dtype=float)
    m, g, b = x.mean(), x.mean(0), x.mean(1)
    between = j * ((g - m) ** 2).sum() / (i - 1)
    error = ((x - g[None] - b[:, None] + m) ** 2).sum() / ((i - 1) * (j - 1))
    if error == 0:
        return (float("inf"), 0.0) if between > 0 else (float("nan"), float("nan"))
    f = between / error
    return float(f), float(st.f.sf(f, i - 1, (i - 1) * (j - 1)))

def verdict(e: Effect) -> str:
    """The verdict for a claim that predicts a positive effect (see the module docstring)."""
    if e.n < 2 or not np.isfinite(e.low):
        return INCONCLUSIVE
    if e.low > 0:
        return REPRODUCED
    if e.high <= 0:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def combine(*verdicts: str) -> str:
    """A claim made of parts holds only if every part holds; one part that fails fails it."""
    if all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    return NOT_REPRODUCED if NOT_REPRODUCED in verdicts else INCONCLUSIVE


def save_verdict(notebook: str, claim_verdict: str, effects: dict[str, Effect], preset: str = "default",
                 regime: list[dict] | None = None, primary: str | None = None, folder: Path | None = None) -> str:
    """Write the verdict and its effects beside the figures (the README's claims table is written from these
    files by scripts/claims_table.py) and return the verdict written: `claim_verdict`, or UNCONVERGED when a
    row of `regime` (ssl_core.regime.regime_rows) is still climbing. `primary` names the effect the README
    shows (default: the first); `folder` is where (default: the preset's figures_dir). Under a preset that cannot decide a claim (not in DECIDING_PRESETS) the file
    and the printed line carry that caveat."""
    regime = regime or []
    still = climbing(regime)
    final = UNCONVERGED if still else claim_verdict
    primary = primary or next(iter(effects), None)
    choose("primary", primary, effects)
    record = {"notebook": notebook, "preset": preset, "verdict": final, "primary": primary,
              "effects": {k: dataclasses.asdict(e) | {"detectable": e.detectable} for k, e in effects.items()}, "regime": regime}
    if still:
        record["unconverged"] = (f"still learning at the verdict's budget (more than {PLATEAU_GAIN:g} points over the "
                                 f"last doubling): " + "; ".join(regime_line(r) for r in still)
                                 + f"; the effects would give '{claim_verdict}'")
    if preset not in DECIDING_PRESETS:
        record["caveat"] = f"preset {preset!r} checks the code paths or gives a first look; it decides nothing"
    write_json(record, Path(folder or figures_dir(preset)) / f"{notebook}_verdict.json")
    print(f"verdict: {final}" + (f" ({record['unconverged']})" if still else "")
          + (f" [{record['caveat']}]" if "caveat" in record else ""))
    return final
