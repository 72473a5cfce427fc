"""The numbers behind every report and check: per-config summaries, seed comparisons with t intervals and Holm's
rule, time to target, and the reproduction verdict. Distributions and tests come from scipy.stats."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import stats as sps

ALPHA = 0.05  # `bench report --alpha`: each interval has level 1 - alpha, verdicts are decided at alpha
MIN_SEEDS = 3  # fewer seeds (pairs) than this: no interval, no test; the values are listed instead
BETTER, WORSE, TIE = "better", "worse", "not distinguishable"
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


def no_spread(x: np.ndarray) -> bool:
    """Every value equal, up to float noise (a metric read back from JSON): no interval can be honest then."""
    x = np.asarray(x, dtype=float)
    return bool(np.ptp(x) <= 1e-9 * max(1.0, float(np.abs(x).max())))


# ---- time to target -----------------------------------------------------------------------------------

def cell_time_to_target(times: np.ndarray | pd.Series) -> float:
    """A cell's time to target from all its seeds, a miss given as inf: the median, which is finite exactly when a
    strict majority of seeds reached (AlgoPerf's 3 of 5). inf: the cell does not reach; NaN: no seeds."""
    t = np.asarray(times, dtype=float)
    return float(np.median(t)) if len(t) else float("nan")


def time_to_target(runs: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Steps and wall-seconds at the first eval reaching the run's target (NaN: no target, or not reached)."""
    h = history.join(runs[["target", "mode"]], on="rid")
    hit = np.where(h["mode"] == "min", h["value"] <= h["target"], h["value"] >= h["target"])
    first = h[hit].sort_values("step", kind="stable").drop_duplicates("rid").set_index("rid")
    out = pd.DataFrame(index=runs.index)
    out["steps_to_target"] = first["step"]
    out["s_to_target"] = first["wall_s"]
    return out


# ---- one run per seed ---------------------------------------------------------------------------------

def latest_per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """Completed runs with a result, one per (task, label, seed): a seed run twice with the same config counts once,
    the latest finished run (duplicates() lists the others)."""
    done = runs[runs["status"] == "completed"].dropna(subset=["final"])
    order = done.sort_values(["finished_at", "path"], kind="stable")
    return order.drop_duplicates(["task", "label", "seed"], keep="last")


def duplicates(runs: pd.DataFrame) -> list[str]:
    """One line per seed of a config that completed more than once: which run the report kept."""
    done = runs[runs["status"] == "completed"].dropna(subset=["final"])
    kept = latest_per_seed(runs).set_index(["task", "label", "seed"])["path"]
    lines = []
    for (task, label, seed), g in done.groupby(["task", "label", "seed"], sort=True):
        if len(g) > 1:
            lines.append(f"{task} {label} seed {seed} completed {len(g)} times with the same config: kept the "
                         f"latest ({kept[(task, label, seed)]}), not an average")
    return lines


def per_seed(runs: pd.DataFrame, task: str, label: str, value: str = "final") -> pd.Series:
    """`value` (final or best) of (task, label), one per seed (latest_per_seed), indexed by seed."""
    sel = latest_per_seed(runs)
    sel = sel[(sel["task"] == task) & (sel["label"] == label)].dropna(subset=[value])
    return sel.set_index("seed")[value].sort_index()


# ---- summary --------------------------------------------------------------------------------------------

def summarize(runs: pd.DataFrame, ttt: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, config label): seeds completed, final (and best) metric over seeds, cost, failures, and
    time to target under cell_time_to_target (every finished seed counts; a miss is never)."""
    df = runs.join(ttt)
    one = latest_per_seed(runs)
    rows = []
    for (task, label), g in df.groupby(["task", "label"], sort=True):
        done = one[(one["task"] == task) & (one["label"] == label)]
        finished = g[g["status"] != "running"].sort_values(["finished_at", "path"], kind="stable")
        finished = finished.drop_duplicates("seed", keep="last")  # one attempt per seed, the latest
        steps = finished["steps_to_target"].fillna(np.inf)
        rows.append({
            "task": task,
            "label": label,
            "name": g["name"].iloc[0],
            "optimizer": g["optimizer"].iloc[0],
            "update_each": g["update_each"].iloc[0],
            "hessian_batch_fraction": g["hessian_batch_fraction"].iloc[0],
            "metric": g["metric"].iloc[0],
            "mode": g["mode"].iloc[0],
            "n_done": len(done),
            "mean": done["final"].mean(),
            "std": done["final"].std(ddof=1),
            "best_mean": done["best"].mean(),
            "best_std": done["best"].std(ddof=1),
            "s_per_step": done["s_per_step"].mean(),
            "hvp_count": done["hvp_count"].mean(),
            "grad_evals": done["grad_evals"].mean(),
            "state_bytes": done["state_bytes"].mean(),
            "n_diverged": int((g["status"] == "diverged").sum()),
            "n_failed": int((g["status"] == "failed").sum()),
            "n_running": int((g["status"] == "running").sum()),
            "has_target": bool(g["target"].notna().any()),
            "n_finished": len(finished),
            "n_reached": int(np.isfinite(steps).sum()),
            "steps_to_target": cell_time_to_target(steps),
            "s_to_target": cell_time_to_target(finished["s_to_target"].fillna(np.inf)),
        })
    return pd.DataFrame(rows)


# ---- two configs compared over seeds --------------------------------------------------------------------

def t_interval(diffs: np.ndarray, level: float = 1 - ALPHA) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                           np.ndarray]:
    """Student-t interval and two-sided p (mean = 0) of the mean of paired differences along the last axis:
    (mean, lo, hi, p). Vectorised, so the coverage test runs the function the report runs."""
    d = np.asarray(diffs, dtype=float)
    res = sps.ttest_1samp(d, 0.0, axis=-1)
    ci = res.confidence_interval(level)
    return d.mean(axis=-1), np.asarray(ci.low), np.asarray(ci.high), np.asarray(res.pvalue)


@dataclass(frozen=True)
class Welch:
    """Difference of two means from summary statistics, its Welch interval, two-sided p and df."""

    diff: float
    se: float
    df: float
    lo: float
    hi: float
    p: float


def welch_from_stats(m1: float, s1: float, n1: int, m2: float, s2: float, n2: int | None,
                     level: float = 1 - ALPHA) -> Welch:
    """Welch's t for m1 - m2 with the Welch-Satterthwaite df. n2 None: the second mean is a constant (a single
    published run), so this is the one-sample t of the first against it."""
    v1 = s1 ** 2 / n1
    v2 = 0.0 if n2 is None else s2 ** 2 / n2
    se = float(np.sqrt(v1 + v2))
    df = float((v1 + v2) ** 2 / (v1 ** 2 / (n1 - 1) + (0.0 if n2 is None else v2 ** 2 / (n2 - 1))))
    diff = m1 - m2
    t = diff / se
    half = float(sps.t.ppf(0.5 + level / 2, df)) * se
    return Welch(diff, se, df, diff - half, diff + half, float(2 * sps.t.sf(abs(t), df)))


@dataclass(frozen=True)
class Comparison:
    """Config `a` against `b` on one task over seeds. method: "paired t" (on the seeds both completed), "Welch t"
    (unpaired, when fewer than MIN_SEEDS seeds pair up), or "" (too few seeds / no spread: no interval, no test)."""

    a: str
    b: str
    method: str
    n: str  # pairs, or "n_a vs n_b" for Welch
    mean: float  # effect: mean of a - b
    lo: float
    hi: float
    p: float
    values: tuple[float, ...] = ()  # when there is no interval: the paired differences, or a's values (unpaired)
    values_b: tuple[float, ...] = ()  # b's values (unpaired)
    unpaired: bool = False
    no_spread: bool = False
    a_only: tuple[int, ...] = ()  # seeds without a partner
    b_only: tuple[int, ...] = ()
    p_holm: float = float("nan")
    verdict: str = ""
    notes: list[str] = field(default_factory=list)


def compare_seeds(a: pd.Series, b: pd.Series, names: tuple[str, str] = ("a", "b"),
                  level: float = 1 - ALPHA) -> Comparison:
    """`a` minus `b`, each a result per seed (index). Paired t on the common seeds when at least MIN_SEEDS pair
    up (the others are named as left out); otherwise Welch t on all seeds when each side has MIN_SEEDS;
    otherwise no interval. Equal differences (or no spread in either group) give no interval either."""
    common = sorted(set(a.index) & set(b.index))
    a_only = tuple(sorted(set(a.index) - set(common)))
    b_only = tuple(sorted(set(b.index) - set(common)))
    nan = float("nan")
    if len(common) >= MIN_SEEDS or (len(common) == len(a) == len(b)):
        d = (a[common] - b[common]).to_numpy(dtype=float)
        mean = float(d.mean()) if len(d) else nan
        base = Comparison(names[0], names[1], "", str(len(d)), mean, nan, nan, nan, tuple(d), a_only=a_only,
                          b_only=b_only)
        if len(d) < MIN_SEEDS:
            return base
        if no_spread(d):
            return replace(base, no_spread=True)
        _, lo, hi, p = t_interval(d, level)
        return replace(base, method="paired t", lo=float(lo), hi=float(hi), p=float(p), values=())
    x, y = a.to_numpy(dtype=float), b.to_numpy(dtype=float)
    mean = float(x.mean() - y.mean()) if len(x) and len(y) else nan
    base = Comparison(names[0], names[1], "", f"{len(x)} vs {len(y)}", mean, nan, nan, nan, tuple(x), tuple(y),
                      unpaired=True, a_only=a_only, b_only=b_only)
    if min(len(x), len(y)) < MIN_SEEDS:
        return base
    if no_spread(x) and no_spread(y):
        return replace(base, no_spread=True)
    w = welch_from_stats(x.mean(), x.std(ddof=1), len(x), y.mean(), y.std(ddof=1), len(y), level)
    return replace(base, method="Welch t", lo=w.lo, hi=w.hi, p=w.p, values=(), values_b=())


def holm(p: np.ndarray | list[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error <= alpha under any dependence); NaNs stay NaN and
    are not members of the family."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    m = len(order)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def verdict(p_adjusted: float, diff: float, mode: str, alpha: float = ALPHA) -> str:
    """better / worse (for the first of the pair, taking the metric's direction) when the adjusted p is below
    alpha, else not distinguishable; "" when there is no test."""
    if np.isnan(p_adjusted):
        return ""
    if p_adjusted >= alpha:
        return TIE
    return BETTER if (diff > 0) == (mode != "min") else WORSE


def flip(c: Comparison, mode: str, alpha: float = ALPHA) -> Comparison:
    """The same comparison read from `b`'s side: b - a."""
    values, values_b = (c.values_b, c.values) if c.unpaired else (tuple(-v for v in c.values), ())
    n = " vs ".join(reversed(c.n.split(" vs ")))
    return replace(c, a=c.b, b=c.a, n=n, mean=-c.mean, lo=-c.hi, hi=-c.lo, values=values, values_b=values_b,
                   a_only=c.b_only, b_only=c.a_only, verdict=verdict(c.p_holm, -c.mean, mode, alpha))


@dataclass(frozen=True)
class Table:
    """One comparison of a report, with the task and metric it is about."""

    task: str
    metric: str
    mode: str
    comparison: Comparison
    value: str = "final"  # which result of each run: final, or best over epochs


def _ranked(summary: pd.DataFrame, task: str) -> list[str]:
    """The task's configs with completed seeds, best mean first (ties by name)."""
    g = summary[(summary["task"] == task) & (summary["n_done"] > 0)]
    sign = 1 if len(g) and g["mode"].iloc[0] == "min" else -1
    return list(g.assign(key=sign * g["mean"]).sort_values(["key", "label"], kind="stable")["label"])


def pairwise(runs: pd.DataFrame, summary: pd.DataFrame, alpha: float = ALPHA, tasks: tuple[str, ...] | None = None,
             best_of_epochs: frozenset[str] = frozenset()) -> list[Table]:
    """Every config against every other on each task (the better mean first), Holm-adjusted over the whole list:
    the family is every tested comparison of the report, so its family-wise error is at most alpha. Tasks in
    `best_of_epochs` compare each run's best value over epochs (as the paper's table does), others the final."""
    out = []
    for task in sorted(set(summary["task"])):
        if tasks is not None and task not in tasks:
            continue
        labels = _ranked(summary, task)
        row = summary[summary["task"] == task].iloc[0]
        value = "best" if task in best_of_epochs else "final"
        results = {label: per_seed(runs, task, label, value) for label in labels}
        out += [Table(task, row["metric"], row["mode"], compare_seeds(results[a], results[b], (a, b), 1 - alpha),
                      value) for i, a in enumerate(labels) for b in labels[i + 1:]]
    adjusted = holm([t.comparison.p for t in out])
    return [replace(t, comparison=replace(t.comparison, p_holm=float(q),
                                          verdict=verdict(q, t.comparison.mean, t.mode, alpha)))
            for t, q in zip(out, adjusted, strict=True)]


def strongest(tables: list[Table], summary: pd.DataFrame, alpha: float = ALPHA) -> list[Table]:
    """Per task, each config against the strongest other (the best mean): the pair's comparison from `tables`,
    read from the config's side."""
    out = []
    for task in sorted({t.task for t in tables}):
        labels = _ranked(summary, task)
        pairs = {(t.comparison.a, t.comparison.b): t for t in tables if t.task == task}
        for label in labels:
            other = next(o for o in labels if o != label)
            t = pairs.get((label, other)) or pairs[(other, label)]
            out.append(t if t.comparison.a == label else replace(t, comparison=flip(t.comparison, t.mode, alpha)))
    return out


# ---- reproduction of a published value ------------------------------------------------------------------

@dataclass(frozen=True)
class Reproduction:
    """Ours against the paper: the difference, its Welch interval at 1 - alpha, Welch p, TOST p at `margin`,
    and the one-word verdict with its reason."""

    diff: float
    lo: float
    hi: float
    p: float
    p_tost: float
    margin: float
    verdict: str
    reason: str


def reproduction(mean: float, std: float, n: int, paper_mean: float, paper_std: float, paper_n: int | None,
                 margin: float, alpha: float = ALPHA) -> Reproduction:
    """Ours (mean, sample std, n seeds) against the paper, from summary statistics.

    reproduced: equivalent within +-margin by TOST (both one-sided Welch tests reject at alpha, i.e. the
    1 - 2 alpha interval lies inside +-margin). not reproduced: the difference is significant (Welch two-sided
    p < alpha) and its estimate lies outside +-margin. inconclusive: neither, or fewer than MIN_SEEDS of ours.
    paper_n None (a single published run, or no std): the paper's value is taken as a constant."""
    nan = float("nan")
    diff = mean - paper_mean
    if n < MIN_SEEDS:
        return Reproduction(diff, nan, nan, nan, nan, margin, INCONCLUSIVE, f"too few seeds ({n} < {MIN_SEEDS})")
    if std <= 1e-9 * max(1.0, abs(mean)) and (paper_n is None or paper_std == 0):
        return Reproduction(diff, nan, nan, nan, nan, margin, INCONCLUSIVE, "no spread observed")
    if math.isnan(margin):
        return Reproduction(diff, nan, nan, nan, nan, margin, INCONCLUSIVE, "no margin for this metric")
    w = welch_from_stats(mean, std, n, paper_mean, paper_std, paper_n, 1 - alpha)
    p_tost = max(float(sps.t.sf((w.diff + margin) / w.se, w.df)), float(sps.t.cdf((w.diff - margin) / w.se, w.df)))
    if p_tost < alpha:
        return Reproduction(w.diff, w.lo, w.hi, w.p, p_tost, margin, REPRODUCED, f"TOST p={p_tost:.2g} < {alpha:g}")
    if w.p < alpha and abs(w.diff) > margin:
        return Reproduction(w.diff, w.lo, w.hi, w.p, p_tost, margin, NOT_REPRODUCED,
                            f"Welch p={w.p:.2g} < {alpha:g}, gap beyond the margin")
    return Reproduction(w.diff, w.lo, w.hi, w.p, p_tost, margin, INCONCLUSIVE,
                        f"interval too wide (TOST p={p_tost:.2g})")
