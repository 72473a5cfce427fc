"""Aggregates over tasks (bench/aggregate.py): probability of improvement, IQM, the stratified bootstrap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import mannwhitneyu, norm, trim_mean

from bench import aggregate, plots, report
from bench.recordset import load
from tests.record_factory import write_record


def test_probability_of_improvement_by_hand_and_against_scipy_u() -> None:
    # x = [3, 4] over y = [1, 2, 3]: 3 beats 1 and 2 and ties 3 (2.5), 4 beats all three: 5.5 of 6 pairs
    assert aggregate.probability_of_improvement(np.array([3.0, 4.0]), np.array([1.0, 2.0, 3.0])) == 5.5 / 6
    assert aggregate.probability_of_improvement(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0])) == 0.5
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, size=7).astype(float), rng.integers(0, 5, size=4).astype(float)  # with ties
    assert aggregate.probability_of_improvement(x, y) == pytest.approx(mannwhitneyu(x, y).statistic / 28)
    wins = sum((a > b) + 0.5 * (a == b) for a in x for b in y) / 28
    assert aggregate.probability_of_improvement(x, y) == pytest.approx(wins)


def test_iqm_is_scipys_quarter_trimmed_mean() -> None:
    assert float(aggregate.iqm(np.arange(1.0, 9.0))) == 4.5  # the middle half: 3, 4, 5, 6
    values = np.random.default_rng(1).normal(size=20)
    assert float(aggregate.iqm(values)) == pytest.approx(trim_mean(values, 0.25))
    assert float(aggregate.iqm(values)) == pytest.approx(np.sort(values)[5:15].mean())


def test_resampling_stays_within_each_task() -> None:
    # every run of a cell has the same score: resampled within cells, every resample gives the same statistic
    x = {"a": np.full(4, 1.0), "b": np.full(3, 5.0)}
    y = {"a": np.full(5, 0.0), "b": np.full(4, 9.0)}
    assert aggregate.stratified_interval(aggregate.mean_poi, x, y) == (0.5, 0.5)  # task a: 1, task b: 0


def test_stratified_bootstrap_interval_covers_the_truth() -> None:
    """3 tasks with their own offsets, 8 runs per cell. X one noise sd better than Y: P(X > Y) = Phi(1 / sqrt 2);
    normal scores around 0.5: their IQM is 0.5. Measured: 96 and 89 of 100 intervals cover."""
    truth = norm.cdf(1 / np.sqrt(2))
    rng = np.random.default_rng(0)
    poi, iqm = [], []
    for _ in range(100):
        offsets = rng.normal(0, 10, size=3)
        x = {f"t{i}": rng.normal(o + 1, 1, size=8) for i, o in enumerate(offsets)}
        y = {f"t{i}": rng.normal(o, 1, size=8) for i, o in enumerate(offsets)}
        lo, hi = aggregate.stratified_interval(aggregate.mean_poi, x, y, resamples=500)
        poi.append(lo <= truth <= hi)
    for _ in range(100):
        lo, hi = aggregate.stratified_interval(aggregate.pooled_iqm, {f"t{i}": rng.normal(0.5, 0.1, size=8)
                                                                     for i in range(3)}, resamples=500)
        iqm.append(lo <= 0.5 <= hi)
    assert 0.9 <= np.mean(poi) <= 1.0 and 0.85 <= np.mean(iqm) <= 1.0


def _write_two_tasks(root: Path, seeds: int = 3) -> None:
    # digits (top1, higher is better): adahessian above adam on every seed; ptb (ppl, lower is better): the same
    for seed in range(seeds):
        write_record(root, task="digits", optimizer="adam", seed=seed, curve=[80.0 + seed])
        write_record(root, task="digits", optimizer="adahessian", seed=seed, curve=[90.0 + seed])
        write_record(root, task="ptb", optimizer="adam", seed=seed, curve=[120.0 + seed], metric="ppl", mode="min")
        write_record(root, task="ptb", optimizer="adahessian", seed=seed, curve=[100.0 + seed], metric="ppl",
                     mode="min")


def test_direction_normalisation_and_section(tmp_path: Path) -> None:
    _write_two_tasks(tmp_path)
    write_record(tmp_path, task="ptb", optimizer="adam", seed=3, curve=[200.0], metric="ppl", mode="min",
                 status="diverged")
    runs = load(tmp_path).runs
    scores = aggregate.oriented_scores(runs)
    poi = aggregate.poi_table(scores).set_index(["x", "y"])
    assert poi.loc[("adahessian", "adam"), "value"] == 1.0  # better on both tasks, ppl's direction respected
    normed = aggregate.normalised_scores(scores).set_index(["task", "label", "seed"])["norm"]
    assert normed[("ptb", "adahessian", 0)] == 1.0 and normed[("ptb", "adam", 2)] == 0.0
    assert normed[("ptb", "adam", 3)] == 0.0  # diverged: the worst
    assert normed[("digits", "adahessian", 1)] == pytest.approx(11 / 12)  # (91 - 80) / (92 - 80)
    iqm = aggregate.iqm_table(scores).set_index("label")
    assert iqm.loc["adahessian", "value"] > iqm.loc["adam", "value"]
    assert iqm.loc["adam", "lo"] <= iqm.loc["adam", "value"] <= iqm.loc["adam", "hi"]
    section = report.build(load(tmp_path), None)[-3]  # the default report of two tasks carries the aggregates
    assert section.title.startswith("Aggregates over tasks")
    rows = {(r[0], r[1]): r for r in section.rows}
    assert rows[("adahessian", "P(adahessian > adam)")][2:] == ["1.00", "[1.00, 1.00]", "2", "3"]
    assert any(n.startswith("Zero-width interval (adahessian P(adahessian > adam))") for n in section.notes)
    written, _ = plots.write_all(load(tmp_path), tmp_path / "plots")
    assert {"aggregates.png", "aggregates.svg"} <= {p.name for p in written}


def test_too_few_runs_give_no_interval_and_one_task_no_default_section(tmp_path: Path) -> None:
    _write_two_tasks(tmp_path, seeds=2)
    table = aggregate.poi_table(aggregate.oriented_scores(load(tmp_path).runs))
    assert table["lo"].isna().all() and (table["min_runs"] == 2).all()
    single = tmp_path / "single"
    write_record(single, task="digits", optimizer="adam", seed=0, curve=[80.0])
    titles = [s.title for s in report.build(load(single), None)]
    assert not any(t.startswith("Aggregates") for t in titles)
