"""Learning curves per task, performance profiles, aggregates over tasks and lr sensitivity, as PNG and SVG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # no pyplot: no global state, PNGs through the Agg canvas
from matplotlib.ticker import MaxNLocator

from bench import aggregate, profile, tuning
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


def _profile(profiles: list[profile.Profile], styles: dict[str, dict[str, Any]]) -> Figure:
    """AlgoPerf-style, one panel per unit: for each optimizer, the fraction of tasks it reaches within tau times the
    best, tau in [1, 4]; the legend gives its score (area under the curve / 3)."""
    fig = Figure(figsize=(6 * len(profiles), 4.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(profiles)))
    taus = np.linspace(1.0, profile.MAX_RATIO, 400)
    for ax, p in zip(axes, profiles, strict=True):
        curves, scores = profile.rho(p.ratios, taus), profile.score(p.ratios)
        labels = list(curves.index)
        for i, label in enumerate(labels):
            # ties are common here: each later curve is drawn thinner, on top, so all stay visible
            ax.step(taus, curves.loc[label], where="post", label=f"{label} ({scores[label]:.2f})",
                    linewidth=1.5 + 0.9 * (len(labels) - 1 - i), **styles[label])
        ax.set(xlim=(1.0, profile.MAX_RATIO), ylim=(-0.02, 1.02), xlabel="τ: time to target / best time on the task",
               ylabel="fraction of tasks", title=f"{p.name}, {len(p.ratios)} task(s)")
        ax.grid(alpha=0.3)
        ax.legend(title="optimizer (score)", fontsize=8)
    fig.suptitle("Performance profiles (AlgoPerf rules: median over seeds, a miss counts as never)", fontsize=12)
    return fig


def _aggregates(iqm: pd.DataFrame, poi: pd.DataFrame) -> Figure:
    """rliable's two views: the IQM of normalised scores per optimizer and P(X > Y) per pair, with intervals."""
    fig = Figure(figsize=(12, 1.5 + 0.35 * max(len(iqm), len(poi))), layout="constrained")
    by_iqm, by_poi = fig.subplots(1, 2)
    for ax, frame, names, xlabel in ((by_iqm, iqm, list(iqm["label"]), "IQM of min-max normalised score"),
                                     (by_poi, poi, [f"P({r.x} > {r.y})" for r in poi.itertuples()], "probability")):
        y = np.arange(len(frame))
        err = np.vstack([frame["value"] - frame["lo"], frame["hi"] - frame["value"]])
        ax.errorbar(frame["value"], y, xerr=np.nan_to_num(err), fmt="o", color="tab:blue", capsize=3)
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.set(xlabel=xlabel, xlim=(-0.02, 1.02))
        ax.grid(alpha=0.3, axis="x")
    by_poi.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    fig.suptitle(f"Aggregates over tasks, {100 * aggregate.LEVEL:.0f}% stratified-bootstrap intervals", fontsize=12)
    return fig


def _lr_sensitivity(task: str, runs: pd.DataFrame, styles: dict[str, dict[str, Any]]) -> Figure:
    """DeepOBS's lr sensitivity: final metric against lr per optimizer name, mean ± std over seeds; the tuning seeds'
    runs where a study declares them (the chosen lr starred), else every run. An lr at which a seed diverged is
    marked, not averaged over the seeds that survived."""
    fig = Figure(figsize=(8, 4.6), layout="constrained")
    ax = fig.subplots()
    chosen = tuning.select(runs, "lr").set_index("optimizer")["value"]
    for label, g in runs.groupby("name", sort=True):
        used = g[g["tuning"]] if g["tuning"].any() else g
        diverged = used.groupby("lr")["status"].agg(lambda s: bool((s == "diverged").any()))
        clean = used[used["status"].eq("completed") & ~used["lr"].map(diverged)]
        by_lr = clean.groupby("lr")["final"].agg(["mean", "std"])
        if len(by_lr) + int(diverged.sum()) < 2:
            continue
        _band(ax, by_lr.index, by_lr, styles[label], label)
        # an lr at which a seed diverged has no mean: an x on the axis marks it
        ax.plot(diverged.index[diverged], np.full(int(diverged.sum()), 0.03), marker="x", linestyle="none",
                color=styles[label]["color"], transform=ax.get_xaxis_transform())
        if label in chosen.index and chosen[label] in by_lr.index:
            ax.plot(chosen[label], by_lr.loc[chosen[label], "mean"], marker="*", markersize=14,
                    color=styles[label]["color"])
    metric, mode = runs["metric"].iloc[0], runs["mode"].iloc[0]
    ax.set_xscale("log")
    ax.set(xlabel="optimizer.lr", ylabel=f"final {metric} ({'higher' if mode == 'max' else 'lower'} is better)",
           title=f"{task}: lr sensitivity, mean ± std over seeds (tuning seeds where declared)\n"
                 "★ the lr chosen on them; × a seed diverged at that lr")
    ax.grid(alpha=0.3)
    ax.legend(title="optimizer")
    return fig


def _styles(labels: pd.Series) -> dict[str, dict[str, Any]]:
    """One look per optimizer in every figure; dash styles keep identical curves (adam = adamw at wd 0) apart."""
    palette = colormaps["tab10"]
    return {label: {"color": palette(i % 10), "linestyle": LINESTYLES[i % len(LINESTYLES)]}
            for i, label in enumerate(sorted(set(labels)))}


def _save(fig: Figure, stem: Path) -> list[Path]:
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in paths:
        fig.savefig(path, dpi=150)
    return paths


def write_all(rs: RecordSet, out_dir: Path, hvp_cost: float = profile.HVP_COST) -> tuple[list[Path], list[str]]:
    """Write `<task>.png/.svg` curves, `performance_profile`, `aggregates` (two or more tasks) and
    `lr_sensitivity_<task>` (a task with an lr sweep) as PNG and SVG; say why anything was left out."""
    out_dir.mkdir(parents=True, exist_ok=True)
    styles = _styles(rs.runs["label"])
    done = rs.runs[rs.runs["status"] == "completed"]
    written, skipped = [], []
    for task in sorted(set(rs.runs["task"])):
        runs = done[done["task"] == task]
        history = rs.history[rs.history["rid"].isin(runs.index)]
        if history.empty:
            skipped.append(f"{task}: no completed run with evaluations to plot")
            continue
        written += _save(_curves(task, runs, history, styles), out_dir / task)
    costs = profile.run_costs(rs.runs, rs.history, hvp_cost)
    drawn = [p for p in profile.profiles(costs) if not p.ratios.empty] if len(costs) else []
    if drawn and costs["reached"].any():
        written += _save(_profile(drawn, styles), out_dir / "performance_profile")
    else:
        skipped.append("performance profile: no run reached a config.task.target")
    scores = aggregate.oriented_scores(rs.runs)
    if scores["task"].nunique() >= 2:
        written += _save(_aggregates(aggregate.iqm_table(scores), aggregate.poi_table(scores)), out_dir / "aggregates")
    for task in sorted(set(rs.runs["task"])):
        runs = rs.runs[rs.runs["task"] == task].dropna(subset=["lr"])
        if runs[runs["status"] == "completed"].groupby("name")["lr"].nunique().max() >= 2:
            written += _save(_lr_sensitivity(task, runs, _styles(rs.runs["name"])), out_dir / f"lr_sensitivity_{task}")
    return written, skipped
