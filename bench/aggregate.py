"""Aggregates over tasks, as rliable defines them (Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of
the Statistical Precipice", NeurIPS): the probability that one optimizer beats another and the interquartile mean
(IQM) of normalised scores, each with a stratified-bootstrap interval. rliable itself does not import with pandas 3
(DESIGN.md), so the statistics come from scipy.stats and the resampling loop is numpy with a fixed seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu, trim_mean

from bench import stats
from bench.section import Section

RESAMPLES = 2000
SEED = 0  # one fixed generator per statistic: the same runs always give the same interval
LEVEL = 0.95
MIN_RUNS = 3  # runs per (task, optimizer) cell below which no interval is given (a resample of 2 is too coarse)
IQM_CUT = 0.25  # trim a quarter from each end: the interquartile mean

Cells = dict[str, np.ndarray]  # task -> one optimizer's scores on it


def oriented_scores(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, label, seed): the final metric turned so that higher is better (a `min` metric is
    negated); a diverged run scores -inf, below every finished one. Failed and running runs are not outcomes of
    the optimizer and are left out; a seed completed twice counts once, the latest (as stats.latest_per_seed)."""
    done = pd.concat([stats.latest_per_seed(runs), runs[runs["status"] == "diverged"]])
    sign = np.where(done["mode"] == "min", -1.0, 1.0)
    score = pd.Series(np.where(done["status"] == "diverged", -np.inf, sign * done["final"]), index=done.index)
    frame = done[["task", "label", "seed"]].assign(score=score).dropna(subset=["score"])
    return frame.groupby(["task", "label", "seed"], as_index=False)["score"].mean()


def cells_of(scores: pd.DataFrame, label: str, column: str = "score") -> Cells:
    """The optimizer's scores per task."""
    mine = scores[scores["label"] == label]
    return {task: g[column].to_numpy() for task, g in mine.groupby("task", sort=True)}


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) on one task: the Mann-Whitney U of x over y divided by n_x n_y (ties count one half). Works on the
    last axis, so a stack of bootstrap resamples goes in one call."""
    u = mannwhitneyu(x, y, axis=-1, method="asymptotic").statistic
    return np.asarray(u / (x.shape[-1] * y.shape[-1]))


def iqm(values: np.ndarray) -> np.ndarray:
    """Interquartile mean over the last axis: the mean of the middle half (scipy's 25 % trimmed mean)."""
    return np.asarray(trim_mean(values, IQM_CUT, axis=-1))


def normalised_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """`scores` plus `norm`: each run's score min-max normalised over all finished runs of its task (every
    optimizer's), so 1 is the task's best run and 0 its worst; a diverged run is 0. A task whose runs all score
    the same gives every run 1."""
    finite = scores[np.isfinite(scores["score"])]
    lo = finite.groupby("task")["score"].min().reindex(scores["task"]).to_numpy()
    hi = finite.groupby("task")["score"].max().reindex(scores["task"]).to_numpy()
    span = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(span > 0, (scores["score"].to_numpy() - lo) / span, 1.0)
    return scores.assign(norm=np.where(np.isfinite(scores["score"]), norm, 0.0))


def _resample(cells: Cells, rng: np.random.Generator, resamples: int) -> Cells:
    """Each cell's runs drawn with replacement, independently per cell: `resamples` rows per cell."""
    return {key: values[rng.integers(0, len(values), size=(resamples, len(values)))] for key, values in cells.items()}


def stratified_interval(statistic: Callable[..., np.ndarray], *strata: Cells, resamples: int = RESAMPLES,
                        seed: int = SEED, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of `statistic(*strata)` under the stratified bootstrap: runs are resampled within each
    (task, optimizer) cell, never across tasks, so every resample keeps the study's design (rliable's
    StratifiedBootstrap). `statistic` takes the cells with a leading resample axis and returns one value per
    resample."""
    rng = np.random.default_rng(seed)
    values = statistic(*(_resample(cells, rng, resamples) for cells in strata))
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def mean_poi(x: Cells, y: Cells) -> np.ndarray:
    """P(X > Y) averaged over the tasks both ran (cells may carry a leading resample axis)."""
    return np.mean([probability_of_improvement(x[task], y[task]) for task in sorted(x)], axis=0)


def pooled_iqm(cells: Cells) -> np.ndarray:
    """IQM of all the optimizer's normalised run scores, every task's runs pooled (as rliable pools its
    runs x tasks matrix)."""
    return iqm(np.concatenate([cells[task] for task in sorted(cells)], axis=-1))


@dataclass(frozen=True)
class Estimate:
    """A point estimate over `n_tasks` tasks and its stratified-bootstrap interval (NaN when a cell is too small)."""

    value: float
    lo: float
    hi: float
    n_tasks: int
    min_runs: int


def _estimate(statistic: Callable[..., np.ndarray], *strata: Cells) -> Estimate:
    value = float(statistic(*strata))
    min_runs = min(len(v) for cells in strata for v in cells.values())
    lo, hi = stratified_interval(statistic, *strata) if min_runs >= MIN_RUNS else (np.nan, np.nan)
    return Estimate(value, lo, hi, len(strata[0]), min_runs)


def poi_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Every pair of optimizers that share at least one task, X before Y in name order: P(X > Y) averaged over their
    common tasks, with its interval (P(Y > X) is 1 - P(X > Y))."""
    rows = []
    for x, y in combinations(sorted(set(scores["label"])), 2):
        cx, cy = cells_of(scores, x), cells_of(scores, y)
        common = sorted(set(cx) & set(cy))
        if not common:
            continue
        est = _estimate(mean_poi, {t: cx[t] for t in common}, {t: cy[t] for t in common})
        rows.append({"x": x, "y": y, **asdict(est)})
    return pd.DataFrame(rows, columns=["x", "y", "value", "lo", "hi", "n_tasks", "min_runs"])


def iqm_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer: the IQM of its min-max normalised scores over the tasks it ran, with its interval."""
    normed = normalised_scores(scores)
    rows = [{"label": label, **asdict(_estimate(pooled_iqm, cells_of(normed, label, "norm")))}
            for label in sorted(set(normed["label"]))]
    return pd.DataFrame(rows, columns=["label", "value", "lo", "hi", "n_tasks", "min_runs"])


def _row(label: str, statistic: str, e: Any) -> list[str]:
    interval = "–" if np.isnan(e.lo) else f"[{e.lo:.2f}, {e.hi:.2f}]"
    return [label, statistic, f"{e.value:.2f}", interval, str(e.n_tasks), str(e.min_runs)]


def aggregate_section(runs: pd.DataFrame) -> Section:
    """The report's `aggregate` table: IQM per optimizer, then P(X > Y) for every pair."""
    scores = oriented_scores(runs)
    tasks = sorted(set(scores["task"]))
    estimates = [(r.label, "IQM of normalised score", r) for r in iqm_table(scores).itertuples()]
    estimates += [(r.x, f"P({r.x} > {r.y})", r) for r in poi_table(scores).itertuples()]
    rows = [_row(label, statistic, e) for label, statistic, e in estimates]
    flat = [f"{label} {statistic}" for label, statistic, e in estimates if e.lo == e.hi]
    notes = [f"Over {len(tasks)} task(s): {', '.join(tasks)}. Each run's final metric (the test metric where the "
             "task has one); a diverged run is worse than every finished one, failed runs are left out.",
             "P(X > Y): per task, the Mann-Whitney U of X's runs over Y's divided by n_X n_Y (the chance that a "
             "random run of X beats a random run of Y; ties count half; lower is better for ppl, logloss, rel_l2), "
             "averaged over the tasks both ran. 0.5 = no difference; P(Y > X) = 1 - P(X > Y).",
             "IQM: the mean of the middle 50 % of the optimizer's runs pooled over its tasks, each run's score "
             "min-max normalised per task over all optimizers' runs (1 = the task's best run, 0 = its worst; a "
             "diverged run 0). It depends on which optimizers the study ran.",
             f"{100 * LEVEL:.0f}% interval: stratified percentile bootstrap (runs resampled within each task and "
             f"optimizer), {RESAMPLES} resamples, RNG seed {SEED}; needs >= {MIN_RUNS} runs in every cell "
             "(min runs column). scipy.stats (mannwhitneyu, trim_mean), not rliable: see DESIGN.md."]
    if flat:
        notes.append(f"Zero-width interval ({'; '.join(flat)}): every resample gave the same value, as when one "
                     "optimizer's runs all beat the other's on each task. That is the spread a few runs can show, "
                     "not certainty.")
    ran = scores.groupby("label")["task"].nunique()
    if ran.nunique() > 1:
        notes.append("Optimizers ran different task sets (tasks column): their IQMs are not over the same tasks.")
    return Section("Aggregates over tasks: IQM and probability of improvement",
                   ["optimizer", "statistic", "estimate", f"{100 * LEVEL:.0f}% CI", "tasks", "min runs"], rows, notes,
                   align="llrrrr")
