"""The CI guard's statistics by simulation (fixed RNG): at the committed baseline's seed noise and seed counts,
the whole check false-alarms at most 2 % of the time, and an entry that drops by 3 seed SDs fails >= 80 %."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bench import baseline as bl
from bench import check, tolerance

CI_BASELINE = Path(__file__).resolve().parents[1] / "results" / "baselines" / "ci.yaml"
TRIALS = 20_000


def _matrix(task: bl.TaskResult) -> np.ndarray:
    """Seeds x labels of the baseline's per-seed values (seeds every label ran)."""
    seeds = sorted(set.intersection(*(set(c.seeds) for c in task.cells.values())))
    return np.array([[c.seeds[s] for c in task.cells.values()] for s in seeds])


def _entries(task: bl.TaskResult, draws: np.ndarray) -> np.ndarray:
    """(trials, entries, seeds): each label's values, then each guarded delta's, as the check forms them."""
    labels = list(task.cells)
    values = [draws[..., labels.index(label)] for label in labels]
    deltas = [draws[..., labels.index(a)] - draws[..., labels.index(b)] for a, b in task.deltas]
    return np.stack(values + deltas, axis=1)


def simulated_false_alarm(study: bl.Study, alpha: float, trials: int, seed: int = 0) -> float:
    """How often the check fails when nothing changed but the seed draws: baseline and new study both drawn from
    a normal law with each task's measured mean and covariance across optimizers (so deltas keep their noise)."""
    rng = np.random.default_rng(seed)
    each = tolerance.entry_alpha(alpha, study.entry_count())
    alarm = np.zeros(trials, dtype=bool)
    for task in study.tasks.values():
        x = _matrix(task)
        n = len(x)
        mean, cov = x.mean(axis=0), np.cov(x, rowvar=False)
        base, new = (_entries(task, rng.multivariate_normal(mean, cov, size=(trials, n))) for _ in range(2))
        sign = 1.0 if task.higher_is_better else -1.0
        alarm |= tolerance.regressed(sign * base, sign * new, each).any(axis=1)
    return float(alarm.mean())


def simulated_power(n: int, m: int, drop_sds: float, alpha: float, trials: int, seed: int = 0) -> float:
    """How often an entry whose true mean dropped by `drop_sds` seed SDs fails (the rule is scale-free)."""
    rng = np.random.default_rng(seed)
    base, new = rng.normal(0, 1, (trials, n)), rng.normal(-drop_sds, 1, (trials, m))
    return float(tolerance.regressed(base, new, alpha).mean())


@pytest.fixture(scope="module")
def committed() -> bl.Study:
    return bl.read(CI_BASELINE)


def test_false_alarm_rate_of_the_whole_check_at_the_baselines_noise(committed: bl.Study) -> None:
    rate = simulated_false_alarm(committed, check.ALPHA, TRIALS)
    assert rate <= 0.02, rate


def test_power_at_three_seed_sds_at_the_baselines_seed_counts(committed: bl.Study) -> None:
    each = tolerance.entry_alpha(check.ALPHA, committed.entry_count())
    counts = {len(v) for t in committed.tasks.values() for v in t.entries().values()}
    for n in counts:
        power = simulated_power(n, n, check.POWER_DROP_SDS, each, TRIALS)
        assert power >= 0.8, (n, power)
        assert power == pytest.approx(tolerance.power(n, n, check.POWER_DROP_SDS, each), abs=0.02)


@pytest.mark.parametrize("n", [3, 5, 7])
def test_one_entrys_false_alarm_rate_is_its_alpha(n: int) -> None:
    """Under the null the statistic is exactly Student t: the rate matches the level at any seed count."""
    assert simulated_power(n, n, 0.0, 0.01, TRIALS, seed=n) == pytest.approx(0.01, abs=0.004)


def test_the_rule_is_the_t_test() -> None:
    """compare's verdict, its tolerance and scipy's one-sided p-value agree."""
    base, worse = np.array([90.0, 91.0, 92.0, 91.5]), np.array([88.0, 88.5, 89.0, 88.2])
    c = tolerance.compare(base, worse, 0.01)
    assert c.verdict == tolerance.REGRESSED and c.p < 0.01 and c.change < -c.tolerance
    assert tolerance.compare(worse, base, 0.01).verdict == tolerance.IMPROVED
    assert tolerance.compare(worse, base, 0.01, higher_is_better=False).verdict == tolerance.REGRESSED
    same = tolerance.compare(base, base, 0.01)
    assert same.verdict == tolerance.OK and same.change == 0 and same.p == pytest.approx(0.5)
    flat = tolerance.compare(np.full(3, 10.0), np.full(3, 9.0), 0.01)
    assert flat.verdict == tolerance.REGRESSED and flat.tolerance == 0  # no noise seen: any drop is beyond it
    assert math.isnan(flat.p)
