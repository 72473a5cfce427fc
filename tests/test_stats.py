"""The statistics of bench.stats tested as statistics: simulated coverage of the t interval, the family-wise error
of Holm's rule on a null zoo, and the pure functions against scipy. Fixed RNG seeds; a few seconds in all."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench import stats

REPLICATES = 4000  # coverage: binomial sd sqrt(.95 * .05 / 4000) = 0.0034, so [0.93, 0.97] is +-6 sd
ZOO_REPLICATES = 2000  # FWER: sd at 0.05 is 0.0049


@pytest.mark.parametrize("n", [3, 5, 10])
def test_paired_t_interval_covers_the_true_difference_95_percent(n: int) -> None:
    rng = np.random.default_rng(20 + n)
    true = 0.7
    # per-seed results of two optimizers with a shared seed effect: only their difference's noise matters
    seed_effect = rng.normal(0.0, 3.0, size=(REPLICATES, n))
    a = 90.0 + true + seed_effect + rng.normal(0.0, 1.0, size=(REPLICATES, n))
    b = 90.0 + seed_effect + rng.normal(0.0, 1.0, size=(REPLICATES, n))
    _, lo, hi, _ = stats.t_interval(a - b, 0.95)
    coverage = float(np.mean((lo <= true) & (true <= hi)))
    assert 0.93 <= coverage <= 0.97, coverage


def _null_zoo_any_verdict(rng: np.random.Generator, replicates: int, alpha: float) -> float:
    """8 optimizers identical to Adam on 4 tasks at 5 seeds: the share of studies with any better/worse verdict
    when every pair on every task is tested and Holm's rule runs over all of them, as `bench report` does."""
    configs, tasks, seeds = 9, 4, 5
    values = (rng.normal(0.0, 5.0, size=(replicates, tasks, 1, 1))  # task level
              + rng.normal(0.0, 2.0, size=(replicates, tasks, 1, seeds))  # seed effect shared by the configs
              + rng.normal(0.0, 1.0, size=(replicates, tasks, configs, seeds)))
    pairs = list(combinations(range(configs), 2))
    diffs = np.stack([values[:, :, i] - values[:, :, j] for i, j in pairs], axis=2)  # (rep, task, pair, seed)
    means, _, _, p = stats.t_interval(diffs)
    means, p = means.reshape(replicates, -1), p.reshape(replicates, -1)
    any_verdict = 0
    for rep in range(replicates):
        adjusted = stats.holm(p[rep])
        verdicts = {stats.verdict(q, d, "max", alpha) for q, d in zip(adjusted, means[rep], strict=True)}
        any_verdict += bool(verdicts & {stats.BETTER, stats.WORSE})
    return any_verdict / replicates


def test_holm_keeps_the_family_wise_error_of_the_null_zoo_at_alpha() -> None:
    fwer = _null_zoo_any_verdict(np.random.default_rng(7), ZOO_REPLICATES, 0.05)
    assert fwer <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / ZOO_REPLICATES), fwer


def test_holm_adjusted_p_values() -> None:
    adjusted = stats.holm([0.01, 0.04, math.nan, 0.03])
    assert adjusted[[0, 1, 3]] == pytest.approx([0.03, 0.06, 0.06])  # 3 x 0.01; max(2 x 0.03, 1 x 0.04) monotone
    assert math.isnan(adjusted[2])
    assert stats.holm([0.5, 0.9]).tolist() == [1.0, 1.0]


def test_verdict_takes_the_metric_direction() -> None:
    assert stats.verdict(0.01, +1.0, "max") == stats.BETTER
    assert stats.verdict(0.01, +1.0, "min") == stats.WORSE  # ppl went up
    assert stats.verdict(0.01, -1.0, "min") == stats.BETTER
    assert stats.verdict(0.2, +1.0, "max") == stats.TIE
    assert stats.verdict(math.nan, +1.0, "max") == ""


def test_welch_matches_scipy() -> None:
    w = stats.welch_from_stats(91.7, 0.12, 5, 92.08, 0.08, 5)
    ref = sps.ttest_ind_from_stats(91.7, 0.12, 5, 92.08, 0.08, 5, equal_var=False)
    assert w.p == pytest.approx(ref.pvalue)
    x, y = np.array([1.0, 2.5, 2.0, 4.0]), np.array([0.5, 0.2, 1.4])
    ci = sps.ttest_ind(x, y, equal_var=False).confidence_interval(0.95)
    w = stats.welch_from_stats(x.mean(), x.std(ddof=1), 4, y.mean(), y.std(ddof=1), 3)
    assert (w.lo, w.hi) == pytest.approx((ci.low, ci.high))
    one = stats.welch_from_stats(x.mean(), x.std(ddof=1), 4, 1.0, math.nan, None)  # paper value as a constant
    assert one.p == pytest.approx(sps.ttest_1samp(x, 1.0).pvalue) and one.df == 3


def test_comparison_without_an_interval() -> None:
    two = stats.compare_seeds(pd.Series([1.5, 2.5]), pd.Series([1.0, 2.0]))
    assert (two.method, two.values, two.no_spread) == ("", (0.5, 0.5), False) and math.isnan(two.lo)
    flat = stats.compare_seeds(pd.Series([1.5, 2.5, 3.0]), pd.Series([1.0, 2.0, 2.5]))
    assert flat.no_spread and flat.method == "" and math.isnan(flat.p)


def test_unmatched_seeds_fall_back_to_welch_and_are_named() -> None:
    a = pd.Series([90.0, 91.0, 92.5], index=[0, 1, 2])
    b = pd.Series([89.0, 89.5, 90.5, 91.0], index=[1, 3, 4, 5])
    c = stats.compare_seeds(a, b, ("x", "y"))
    assert (c.method, c.n, c.a_only, c.b_only) == ("Welch t", "3 vs 4", (0, 2), (3, 4, 5))
    assert c.p == pytest.approx(sps.ttest_ind(a, b, equal_var=False).pvalue)
    flipped = stats.flip(c, "max")
    assert (flipped.a, flipped.n, flipped.mean, flipped.lo) == ("y", "4 vs 3", -c.mean, -c.hi)


def test_cell_time_to_target_needs_a_strict_majority() -> None:
    inf = math.inf
    assert stats.cell_time_to_target(np.array([10.0, inf, inf])) == inf  # 1 of 3
    assert stats.cell_time_to_target(np.array([10.0, 30.0, inf])) == 30.0  # 2 of 3: the median, misses as never
    assert stats.cell_time_to_target(np.array([10.0, 20.0, inf, inf])) == inf  # 2 of 4 is no majority
    assert stats.cell_time_to_target(np.array([10.0, 20.0, 30.0, inf, inf])) == 30.0  # AlgoPerf's 3 of 5
    assert math.isnan(stats.cell_time_to_target(np.array([])))


def _reproduce(values: np.ndarray, paper_mean: float, paper_std: float, margin: float) -> stats.Reproduction:
    return stats.reproduction(values.mean(), values.std(ddof=1), len(values), paper_mean, paper_std, 5, margin)


def test_reproduction_verdicts() -> None:
    z = np.array([-2.0, -1.0, 0.0, 1.0, 2.0]) / math.sqrt(2.5)  # mean 0, sample sd 1
    gap = _reproduce(92.08 - 0.43 + 0.175 * z, 92.08, 0.08, margin=0.16)
    assert gap.p == pytest.approx(0.003, abs=5e-4) and gap.verdict == stats.NOT_REPRODUCED
    close = _reproduce(90.33 - 0.06 + 0.087 * z, 90.33, 0.13, margin=0.26)
    assert close.p == pytest.approx(0.42, abs=0.01) and close.verdict == stats.REPRODUCED
    wide = _reproduce(92.08 - 0.06 + 0.134 * z, 92.08, 0.08, margin=0.16)
    assert wide.verdict == stats.INCONCLUSIVE and wide.lo < -0.16  # can neither show equivalence nor a gap
    few = stats.reproduction(92.05, 0.07, 2, 92.08, 0.08, 5, margin=0.16)
    assert few.verdict == stats.INCONCLUSIVE and "too few seeds" in few.reason
    single = stats.reproduction(70.0, 0.2, 3, 70.08, math.nan, None, margin=0.5)  # ImageNet: one published run
    assert single.p == pytest.approx(sps.ttest_1samp([69.8, 70.0, 70.2], 70.08).pvalue)
    assert single.verdict == stats.REPRODUCED
