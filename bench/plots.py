"""Learning curves per task and a performance profile across optimizers, as PNG and SVG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # no pyplot: no global state, PNGs through the Agg canvas
from matplotlib.ticker import MaxNLocator

from bench import stats
from bench.recordset import RecordSet

LINESTYLES = ("-", "--", ":", "-.")


def _band(ax: Axes, x: pd.Series, y: pd.DataFrame, color: tuple, label: str) -> None:
    """Mean line with a ± std band (over seeds) around it."""
    mean, std = y["mean"].to_numpy(), y["std"].fillna(0).to_numpy()
    ax.plot(x, mean, color=color, label=label, marker="o", markersize=3, linewidth=1.6)
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.18, linewidth=0)


def _curves(task: str, runs: pd.DataFrame, history: pd.DataFrame, colors: dict[str, tuple]) -> Figure:
    metric, mode = runs["metric"].iloc[0], runs["mode"].iloc[0]
    fig = Figure(figsize=(15, 4.6), layout="constrained")
    by_epoch, by_wall, by_step = fig.subplots(1, 3)
    h = history.join(runs[["label"]], on="rid", how="inner")
    for label, g in h.groupby("label", sort=True):
        color = colors[label]
        e = g.dropna(subset=["value", "epoch"]).groupby("epoch")["value"].agg(["mean", "std"])
        _band(by_epoch, e.index, e, color, label)
        w = g.dropna(subset=["value"]).groupby("step").agg(x=("wall_s", "mean"), mean=("value", "mean"),
                                                             std=("value", "std"))
        _band(by_wall, w["x"], w, color, label)
        tl = g.dropna(subset=["train_loss"]).groupby("step")["train_loss"].agg(["mean", "std"])
        _band(by_step, tl.index, tl, color, label)
    better = "higher" if mode == "max" else "lower"
    for ax, xlabel, ylabel in ((by_epoch, "epoch", f"{metric} ({better} is better)"),
                               (by_wall, "training wall-clock (s)", f"{metric} ({better} is better)"),
                               (by_step, "step", "train loss")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    loss = h["train_loss"].dropna()
    if len(loss) and loss.min() > 0 and loss.max() / loss.min() > 10:
        by_step.set_yscale("log")
    by_epoch.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_epoch.set_title(f"{metric} vs epoch")
    by_wall.set_title(f"{metric} vs wall-clock")
    by_step.set_title("train loss vs step")
    handles, labels = by_epoch.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", title="optimizer", fontsize=10)
    fig.suptitle(f"{task}: completed runs, mean ± std over seeds", fontsize=13)
    return fig


def profile_times(runs: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Median seconds to target per task (rows) and optimizer (columns); inf where it was not reached."""
    df = runs.join(stats.time_to_target(runs, history))
    df = df[df["target"].notna() & (df["status"] != "running")]
    seconds = df["s_to_target"].fillna(np.inf)
    return seconds.groupby([df["task"], df["label"]]).median().unstack("label").fillna(np.inf)


def _profile(times: pd.DataFrame, colors: dict[str, tuple]) -> Figure:
    """AlgoPerf-style: for each optimizer, the fraction of tasks it solves within τ times the best time."""
    ratios = times.div(times.min(axis=1), axis=0)
    finite = ratios.to_numpy()[np.isfinite(ratios.to_numpy())]
    taus = np.linspace(1.0, max(2.0, 1.1 * finite.max()), 400)
    fig = Figure(figsize=(8, 4.6), layout="constrained")
    ax = fig.subplots()
    labels = sorted(ratios.columns)
    for i, label in enumerate(labels):
        r = ratios[label].to_numpy()
        # tied curves are common: each later one is drawn thinner, on top, in its own dash style
        ax.step(taus, [(r <= tau).mean() for tau in taus], where="post", color=colors[label], label=label,
                linewidth=1.5 + 0.9 * (len(labels) - 1 - i), linestyle=LINESTYLES[i % len(LINESTYLES)])
    ax.set_xlim(1.0, taus[-1])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("τ: time to target / best time on the task")
    ax.set_ylabel("fraction of tasks")
    ax.set_title(f"Performance profile over {len(ratios)} task(s), wall-clock to target")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", title="optimizer")
    return fig


def _save(fig: Figure, stem: Path) -> list[Path]:
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in paths:
        fig.savefig(path, dpi=150)
    return paths


def write_all(rs: RecordSet, out_dir: Path) -> tuple[list[Path], list[str]]:
    """Write `<task>.png/.svg` curves and `performance_profile.png/.svg`; say why anything was left out."""
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = sorted(set(rs.runs["label"]))
    palette = colormaps["tab10"]
    colors = {label: palette(i % 10) for i, label in enumerate(labels)}
    done = rs.runs[rs.runs["status"] == "completed"]
    written, skipped = [], []
    for task in sorted(set(rs.runs["task"])):
        runs = done[done["task"] == task]
        history = rs.history[rs.history["rid"].isin(runs.index)]
        if history.empty:
            skipped.append(f"{task}: no completed run with evaluations to plot")
            continue
        written += _save(_curves(task, runs, history, colors), out_dir / task)
    times = profile_times(rs.runs, rs.history)
    if np.isfinite(times.to_numpy()).any():
        written += _save(_profile(times[np.isfinite(times.min(axis=1))], colors), out_dir / "performance_profile")
    else:
        skipped.append("performance profile: no run reached a config.task.target")
    return written, skipped
