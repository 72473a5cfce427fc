"""The numbers behind every report and check: per-group summaries, paired seed comparisons, time to target."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0  # fixed, so the same runs always give the same interval


def time_to_target(runs: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Steps and wall-seconds at the first eval reaching the run's target (NaN: no target, or not reached)."""
    h = history.join(runs[["target", "mode"]], on="rid")
    hit = np.where(h["mode"] == "min", h["value"] <= h["target"], h["value"] >= h["target"])
    first = h[hit].sort_values("step", kind="stable").drop_duplicates("rid").set_index("rid")
    out = pd.DataFrame(index=runs.index)
    out["steps_to_target"] = first["step"]
    out["s_to_target"] = first["wall_s"]
    return out


def summarize(runs: pd.DataFrame, ttt: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, optimizer label): completed count, final metric over seeds, cost, failures."""
    df = runs.join(ttt)
    rows = []
    for (task, label), g in df.groupby(["task", "label"], sort=True):
        done = g[g["status"] == "completed"]
        finals = done["final"].dropna()
        reached = done.dropna(subset=["steps_to_target"])
        rows.append({
            "task": task,
            "label": label,
            "optimizer": g["optimizer"].iloc[0],
            "update_each": g["update_each"].iloc[0],
            "hessian_batch_fraction": g["hessian_batch_fraction"].iloc[0],
            "metric": g["metric"].iloc[0],
            "mode": g["mode"].iloc[0],
            "n_done": len(done),
            "mean": finals.mean(),
            "std": finals.std(ddof=1),
            "s_per_step": done["s_per_step"].mean(),
            "hvp_count": done["hvp_count"].mean(),
            "grad_evals": done["grad_evals"].mean(),
            "state_bytes": done["state_bytes"].mean(),
            "n_diverged": int((g["status"] == "diverged").sum()),
            "n_failed": int((g["status"] == "failed").sum()),
            "n_running": int((g["status"] == "running").sum()),
            "has_target": bool(g["target"].notna().any()),
            "n_reached": len(reached),
            "steps_to_target": reached["steps_to_target"].median(),
            "s_to_target": reached["s_to_target"].median(),
        })
    return pd.DataFrame(rows)


def per_seed(runs: pd.DataFrame, task: str, label: str) -> pd.Series:
    """Final metric of the completed runs of (task, label), one per seed (a seed run twice is averaged)."""
    sel = runs[(runs["task"] == task) & (runs["label"] == label) & (runs["status"] == "completed")]
    return sel.dropna(subset=["final"]).groupby("seed")["final"].mean()


@dataclass(frozen=True)
class Paired:
    """Mean of (a - b) over seeds both ran, with a bootstrap 95% interval (NaN when fewer than 2 pairs)."""

    n: int
    mean: float
    lo: float
    hi: float


def bootstrap_ci(diffs: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile 95% interval of the mean of `diffs`, resampling pairs with replacement."""
    rng = np.random.default_rng(seed)
    means = rng.choice(diffs, size=(resamples, len(diffs)), replace=True).mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def paired(runs: pd.DataFrame, task: str, a: str, b: str) -> Paired:
    """Optimizer `a` against `b` on `task`, pairing runs by seed so seed-to-seed noise cancels."""
    diffs = (per_seed(runs, task, a) - per_seed(runs, task, b)).dropna().to_numpy()
    if len(diffs) == 0:
        return Paired(0, np.nan, np.nan, np.nan)
    lo, hi = bootstrap_ci(diffs) if len(diffs) > 1 else (np.nan, np.nan)
    return Paired(len(diffs), float(diffs.mean()), lo, hi)
