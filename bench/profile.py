"""Time to target per (task, optimizer) and AlgoPerf's performance profile over tasks, in three units.

The rules are AlgoPerf's (Dahl et al. 2023, "Benchmarking Neural Network Training Algorithms", arXiv:2306.07179,
Section 4 and the benchmark's DOCUMENTATION.md, "Scoring"): a run that misses the target takes forever; a cell's
time is the median over all its seeds, so it is finite only when a strict majority of them reach (3 of 5); the
profile rho(tau) is the fraction of tasks on which an optimizer's time is within tau times the best; the score is
the area under rho on [1, r_max] divided by r_max - 1, with r_max = 4, so more than 4x the best earns nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench import stats
from bench.errors import UsageError
from bench.section import Section

# One Hessian-vector product in gradient evaluations: bench perf's "HVP limit" (forward, create_graph backward, one
# HVP, Adam's update) was 4.49x an Adam step on ResNet-20, quiet 2-core CPU, 6 cycles (README, "Cheaper curvature"),
# so the HVP and the costlier graph-keeping backward add 3.5 gradients. Measure your own with bench perf step-time
# and pass `bench report --hvp-cost X`.
HVP_COST = 3.5
MAX_RATIO = 4.0  # AlgoPerf's r_max
UNITS = {"steps": "optimizer steps", "grad_evals": "gradient-evaluation equivalents", "wall_s": "wall-clock s"}


def device_class(runs: pd.DataFrame) -> pd.Series:
    """What a run's seconds were measured on: the GPU model and count, or the host for a CPU run (CPUs differ from
    host to host). Seconds from different classes are never compared."""
    gpu = runs["gpu"] + " x" + runs["world_size"].astype(str)
    return pd.Series(np.where(runs["gpu"] != "", gpu, "cpu " + runs["host"]), index=runs.index)


def run_costs(runs: pd.DataFrame, history: pd.DataFrame, hvp_cost: float = HVP_COST) -> pd.DataFrame:
    """Per finished run of a task with a target: steps, gradient-evaluation equivalents and seconds at its first
    evaluation at or beyond the target; +inf for a run that never got there (diverged and failed runs included).
    Gradient equivalents are steps x the run's mean (grad_evals + hvp_cost x hvp_count) per step, NaN where the
    record has no grad_evals."""
    if not np.isfinite(hvp_cost) or hvp_cost < 0:
        raise UsageError(f"--hvp-cost {hvp_cost:g}: expected a finite number >= 0, the cost of one Hessian-vector "
                         f"product in gradient evaluations (bench perf step-time measures it; default {HVP_COST:g})")
    done = runs[runs["target"].notna() & (runs["status"] != "running")]
    ttt = stats.time_to_target(done, history)
    reached = ttt["steps_to_target"].notna()
    per_step = (done["grad_evals"] + hvp_cost * done["hvp_count"].fillna(0)) / done["steps"]
    out = done[["task", "label", "seed"]].assign(device=device_class(done))
    out["steps"] = np.where(reached, ttt["steps_to_target"], np.inf)
    out["grad_evals"] = np.where(reached, ttt["steps_to_target"] * per_step, np.inf)
    out["wall_s"] = np.where(reached, ttt["s_to_target"], np.inf)
    out["reached"] = reached
    return out


def cell_times(costs: pd.DataFrame, unit: str, device: str | None = None) -> pd.DataFrame:
    """Tasks x optimizers: the cell time in `unit` (for wall_s, from the runs of one device class only); +inf for an
    optimizer that did not reach or did not run the task, NaN where a reaching run did not record the unit."""
    sel = costs if device is None else costs[costs["device"] == device]
    grouped = sel.groupby(["task", "label"])[unit]
    ran = grouped.size().unstack("label").notna()
    return grouped.agg(stats.cell_time_to_target).unstack("label").where(ran, np.inf)


def ratios(times: pd.DataFrame) -> pd.DataFrame:
    """Each cell over its task's best; +inf where the optimizer never reached, and on a task nobody reached."""
    best = times.min(axis=1)
    return times.div(best.where(np.isfinite(best)), axis=0).fillna(np.inf)


def rho(r: pd.DataFrame, tau: np.ndarray) -> pd.DataFrame:
    """Performance profile: per optimizer (rows) and tau (columns), the fraction of tasks with ratio <= tau."""
    return pd.DataFrame({label: [(r[label] <= t).mean() for t in tau] for label in r.columns}, index=tau).T


def score(r: pd.DataFrame) -> pd.Series:
    """AlgoPerf's benchmark score in [0, 1]: the area under rho on [1, r_max] over r_max - 1. rho is a step function,
    so the integral is exact: a task at ratio r adds (r_max - r)/(r_max - 1) when r <= r_max, else 0."""
    return (MAX_RATIO - r).clip(lower=0).mean() / (MAX_RATIO - 1)


@dataclass(frozen=True)
class Profile:
    """One unit's profile: `ratios` is tasks x optimizers; `dropped` lists tasks left out for an unrecorded unit."""

    unit: str
    device: str | None
    ratios: pd.DataFrame
    dropped: tuple[str, ...]

    @property
    def name(self) -> str:
        return UNITS[self.unit] + (f" on {self.device}" if self.device else "")


def profiles(costs: pd.DataFrame) -> list[Profile]:
    """Steps and gradient equivalents over all runs; wall-clock once per device class, never pooled across them."""
    out = []
    for unit in UNITS:
        for device in sorted(set(costs["device"])) if unit == "wall_s" else [None]:
            times = cell_times(costs, unit, device)
            measured = times.notna().all(axis=1)
            out.append(Profile(unit, device, ratios(times[measured]), tuple(times.index[~measured])))
    return out


def _time(value: float, unit: str) -> str:
    if np.isnan(value):
        return "–"
    return "never" if np.isinf(value) else f"{value:.3g}" if unit == "wall_s" else f"{value:.0f}"


def sections(runs: pd.DataFrame, history: pd.DataFrame, hvp_cost: float = HVP_COST) -> list[Section]:
    """The report's `profile` and `to_target` tables."""
    costs = run_costs(runs, history, hvp_cost)
    return [profile_section(costs, hvp_cost), to_target_section(costs)]


def profile_section(costs: pd.DataFrame, hvp_cost: float) -> Section:
    """Each optimizer's score and rho at 1, 2 and 4 per unit."""
    devices = sorted(set(costs["device"]))
    rows, notes = [], []
    for p in profiles(costs) if len(costs) else []:
        if p.ratios.empty:
            continue
        at = rho(p.ratios, np.array([1.0, 2.0, MAX_RATIO]))
        rows += [[p.name, label, f"{s:.3f}", *(f"{v:.2f}" for v in at.loc[label]), str(len(p.ratios))]
                 for label, s in score(p.ratios).items()]
        if p.dropped:
            notes.append(f"{p.name}: left out {', '.join(p.dropped)} (a run there has no cost.grad_evals).")
    notes[:0] = [
        "AlgoPerf's rules (Dahl et al. 2023, arXiv:2306.07179): a run that misses config.task.target counts as "
        "never (diverged and failed runs too); a (task, optimizer) time is the median over all its seeds, so it "
        "reaches only if a strict majority of the seeds do (3 of 5). rho(tau): fraction of tasks within tau x the "
        f"task's best time; score: area under rho on [1, {MAX_RATIO:g}] / {MAX_RATIO - 1:g} (0-1; beyond "
        f"{MAX_RATIO:g}x the best counts as never). An optimizer with no run of a task counts as never there.",
        f"Gradient-evaluation equivalents: cost.grad_evals + {hvp_cost:g} x cost.hvp_count per step (one HVP = "
        f"{hvp_cost:g} gradients, --hvp-cost; default from bench perf's HVP limit, README \"Cheaper curvature\"), "
        "times the steps to target. Times are read at evaluations (once per epoch)."]
    if len(devices) > 1:
        notes.append(f"Runs from {len(devices)} device classes ({'; '.join(devices)}): wall-clock times are "
                     "profiled within each class and never pooled.")
    if costs.empty:
        notes.append("No finished run of a task with config.task.target: nothing to profile.")
    return Section("Performance profile over tasks (time to target)",
                   ["unit", "optimizer", "score", "rho(1)", "rho(2)", f"rho({MAX_RATIO:g})", "tasks"], rows, notes,
                   align="llrrrrr")


def to_target_section(costs: pd.DataFrame) -> Section:
    """Every cell's time to target in the three units, with how many of its seeds reached."""
    rows = []
    for (task, label), g in costs.groupby(["task", "label"], sort=True):
        walls = "; ".join(f"{_time(stats.cell_time_to_target(d['wall_s']), 'wall_s')} ({device})"
                          for device, d in g.groupby("device", sort=True))
        cell = stats.cell_time_to_target
        rows.append([task, label, f"{int(g['reached'].sum())}/{len(g)}", _time(cell(g["steps"]), "steps"),
                     _time(cell(g["grad_evals"]), "grad_evals"), walls])
    return Section("Time to target per task: median over all seeds, a miss counts as never",
                   ["task", "optimizer", "seeds at target", "steps", "grad-eval equiv.", "wall-clock s (device)"],
                   rows, ["\"never\": fewer than a strict majority of the seeds reached the target."],
                   align="llrrrl")
