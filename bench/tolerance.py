"""The CI guard's decision rule: a drop fails only when seed noise cannot explain it.

A code change that merely perturbs training (another summation order, one more random draw) turns each seed's
result into a fresh draw from the seed distribution. Under that null, a study's seeds and the baseline's seeds
come from one distribution, so Student's two-sample t statistic (equal variances, here exact) has a known law,
and a one-sided test at level alpha false-alarms with probability alpha. The tolerance is the drop at which
that test rejects: t(1 - alpha, n + m - 2) * pooled seed SD * sqrt(1/n + 1/m).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

METHOD = ("one-sided two-sample Student t-test per entry (scipy.stats.ttest_ind, equal variances, pooled seed "
          "SD of baseline and new seeds), each of the k entries at alpha/k (Bonferroni)")
OK, REGRESSED, IMPROVED = "ok", "REGRESSED", "improved"
EPS = 1e-9  # values are compared at 4 decimals; a change this small is no change


@dataclass(frozen=True)
class Comparison:
    """New seeds against baseline seeds, oriented so that a positive change is an improvement."""

    change: float  # new mean - baseline mean (sign flipped for metrics where lower is better)
    tolerance: float  # the drop beyond which the entry fails, from the pooled seed noise
    p: float  # one-sided p-value of "new is worse" (NaN when neither side shows any noise)
    verdict: str  # OK, REGRESSED or IMPROVED


def entry_alpha(alpha: float, entries: int) -> float:
    """Bonferroni: each of `entries` tests at alpha / entries, so the whole check false-alarms at most alpha."""
    return alpha / max(entries, 1)


def limits(base: np.ndarray, new: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(change, tolerance) over the last axis; leading axes are independent studies (for simulation)."""
    n, m = base.shape[-1], new.shape[-1]
    df = n + m - 2
    pooled = np.sqrt((base.var(axis=-1, ddof=1) * (n - 1) + new.var(axis=-1, ddof=1) * (m - 1)) / df)
    return new.mean(axis=-1) - base.mean(axis=-1), stats.t.ppf(1 - alpha, df) * pooled * np.sqrt(1 / n + 1 / m)


def regressed(base: np.ndarray, new: np.ndarray, alpha: float) -> np.ndarray:
    """The guard's rule: the drop exceeds the tolerance (equivalently, the one-sided p-value is below alpha)."""
    change, tolerance = limits(base, new, alpha)
    return change < -tolerance - EPS


def compare(base: np.ndarray, new: np.ndarray, alpha: float, higher_is_better: bool = True) -> Comparison:
    """One entry: at least 2 seeds on each side (a seed SD needs 2)."""
    sign = 1.0 if higher_is_better else -1.0
    b, x = sign * np.asarray(base, float), sign * np.asarray(new, float)
    if len(b) < 2 or len(x) < 2:
        raise ValueError(f"need >= 2 seeds on each side, got {len(b)} baseline and {len(x)} new")
    change, tolerance = (float(v) for v in limits(b, x, alpha))
    noise = b.std() + x.std() > 0  # with no spread on either side there is no t statistic (and no p)
    p = float(stats.ttest_ind(x, b, equal_var=True, alternative="less").pvalue) if noise else math.nan
    verdict = REGRESSED if change < -tolerance - EPS else IMPROVED if change > tolerance + EPS else OK
    return Comparison(change, tolerance, p, verdict)


def power(n: int, m: int, drop_sds: float, alpha: float) -> float:
    """P(the rule fails a study whose mean dropped by `drop_sds` seed SDs), n baseline and m new seeds, normal
    seed noise: the t statistic is then noncentral t (scipy.stats.nct)."""
    df = n + m - 2
    return float(stats.nct.cdf(-stats.t.ppf(1 - alpha, df), df, -drop_sds / np.sqrt(1 / n + 1 / m)))


def seeds_for(drop_sds: float, alpha: float, target: float, most: int = 100) -> int:
    """The fewest seeds (the same on both sides) whose power reaches `target`."""
    return next((n for n in range(2, most + 1) if power(n, n, drop_sds, alpha) >= target), most)
