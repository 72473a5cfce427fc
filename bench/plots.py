"""Learning curves per task and a performance profile across optimizers, as PNG and SVG files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # no pyplot: no global state, PNGs through the Agg canvas
from matplotlib.ticker import MaxNLocator

from bench import stats
from bench.recordset import RecordSet

LINESTYLES = ("-", "--", ":", "-.")


def _band(ax: Axes, x: pd.Series, y: pd.DataFrame, style: dict[str, Any], label: str) -> None:
    """Mean line with a ± std band (over seeds) around it."""
    mean, std = y["mean"].to_numpy(), y["std"].fillna(0).to_numpy()
    ax.plot(x, mean, label=label, marker="o", markersize=3, linewidth=1.8, **style)
    ax.fill_between(x, mean - std, mean + std, color=style["color"], alpha=0.18, linewidth=0)


def _curves(task: str, runs: pd.DataFrame, history: pd.DataFrame, styles: dict[str, dict[str, Any]]) -> Figure:
    """One task, three views: metric per epoch (sample efficiency), per second (cost), train loss per step."""
    metric, mode = runs["metric"].iloc[0], runs["mode"].iloc[0]
    fig = Figure(figsize=(15, 4.6), layout="constrained")
    by_epoch, by_wall, by_step = fig.subplots(1, 3)
    h = history.join(runs[["label"]], on="rid", how="inner")
    for label, g in h.groupby("label", sort=True):
        style = styles[label]
        e = g.dropna(subset=["value", "epoch"]).groupby("epoch")["value"].agg(["mean", "std"])
        _band(by_epoch, e.index, e, style, label)
        w = g.dropna(subset=["value"]).groupby("step").agg(x=("wall_s", "mean"), mean=("value", "mean"),
                                                             std=("value", "std"))
        _band(by_wall, w["x"], w, style, label)
        tl = g.dropna(subset=["train_loss"]).groupby("step")["train_loss"].agg(["mean", "std"])
        _band(by_step, tl.index, tl, style, label)
    ylabel = f"{metric} ({'higher' if mode == 'max' else 'lower'} is better)"
    for ax, title, xlabel, yl in ((by_epoch, f"{metric} vs epoch", "epoch", ylabel),
                                  (by_wall, f"{metric} vs wall-clock", "training wall-clock (s)", ylabel),
                                  (by_step, "train loss vs step", "step", "train loss")):
        ax.set(title=title, xlabel=xlabel, ylabel=yl)
        ax.grid(alpha=0.3)
    loss = h["train_loss"].dropna()
    if len(loss) and loss.min() > 0 and loss.max() / loss.min() > 10:
        by_step.set_yscale("log")
    by_epoch.xaxis.set_major_locator(MaxNLocator(integer=True))
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


def _profile(times: pd.DataFrame, styles: dict[str, dict[str, Any]]) -> Figure:
    """AlgoPerf-style: for each optimizer, the fraction of tasks it solves within τ times the best time."""
    ratios = times.div(times.min(axis=1), axis=0)
    finite = ratios.to_numpy()[np.isfinite(ratios.to_numpy())]
    taus = np.linspace(1.0, max(2.0, 1.1 * finite.max()), 400)
    fig = Figure(figsize=(8, 4.6), layout="constrained")
    ax = fig.subplots()
    labels = sorted(ratios.columns)
    for i, label in enumerate(labels):
        r = ratios[label].to_numpy()
        # ties are common here: each later curve is drawn thinner, on top, so all stay visible
        ax.step(taus, [(r <= tau).mean() for tau in taus], where="post", label=label,
                linewidth=1.5 + 0.9 * (len(labels) - 1 - i), **styles[label])
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
    palette = colormaps["tab10"]
    # one look per optimizer in every figure; dash styles keep identical curves (adam = adamw at wd 0) apart
    styles = {label: {"color": palette(i % 10), "linestyle": LINESTYLES[i % len(LINESTYLES)]}
              for i, label in enumerate(sorted(set(rs.runs["label"])))}
    done = rs.runs[rs.runs["status"] == "completed"]
    written, skipped = [], []
    for task in sorted(set(rs.runs["task"])):
        runs = done[done["task"] == task]
        history = rs.history[rs.history["rid"].isin(runs.index)]
        if history.empty:
            skipped.append(f"{task}: no completed run with evaluations to plot")
            continue
        written += _save(_curves(task, runs, history, styles), out_dir / task)
    times = profile_times(rs.runs, rs.history)
    if np.isfinite(times.to_numpy()).any():
        written += _save(_profile(times[np.isfinite(times.min(axis=1))], styles), out_dir / "performance_profile")
    else:
        skipped.append("performance profile: no run reached a config.task.target")
    return written, skipped
