"""`bench report`: turn run records into the summary, the paper's tables beside ours, and plots."""

from __future__ import annotations

import argparse
import csv
import html
import io
import math
import sys
from pathlib import Path

import pandas as pd

from bench import aggregate, ledger, paper, plots, profile, stats, tuning
from bench.recordset import RecordSet, load
from bench.section import Section

FORMATS = ("md", "latex", "csv", "html")
# `all` is every paper table; the harness's own sweep tables (lr, lr_scale) are asked for by name.
SECTIONS = ("summary", "runs", "paired", "strongest", "aggregate", "profile", "to_target", *paper.LAYOUTS,
            "reproduction", paper.DELAYED, paper.PINN, *(name for name, table in paper.SWEEPS.items() if table.source))
TABLES = (*SECTIONS, *(name for name, table in paper.SWEEPS.items() if not table.source), *paper.ALIASES, "all")
# metric or quantity -> (unit, format spec); anything else prints 4 significant digits
DISPLAY = {"top1": ("%", ".2f"), "accuracy": ("%", ".3f"), "glue": ("", ".2f"), "glue_avg": ("", ".2f"),
           "bleu": ("", ".2f"), "ppl": ("", ".2f"), "rel_l2": ("", ".3g"), "logloss": ("", ".4f"), "auc": ("", ".4f"),
           "steps": ("", ".0f"), "hvp": ("", ".0f"), "s": ("", ".1f"), "s/step": ("", ".3g"), "ratio": ("", ".2f"),
           "grad_evals": ("", ".0f"), "MB": ("", ".4g")}
MAX_ERROR_NOTES = 10
DATA_BOUND_FRAC = 0.1  # a run that waited longer than this fraction of its training time for data is data-bound


# ---- numbers as text ----------------------------------------------------------------------------------

def _nan(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def num(x: float | None, metric: str = "", signed: bool = False) -> str:
    """A metric value as the paper prints it ("–" when there is none)."""
    if _nan(x):
        return "–"
    spec = DISPLAY.get(metric, ("", ".4g"))[1]
    return f"{x:{'+' if signed else ''}{spec}}"


def metric_header(name: str, mode: str) -> str:
    unit = DISPLAY.get(name, ("", 0))[0]
    return f"{name}{' ' + unit if unit else ''} {'↑' if mode == 'max' else '↓'}"


def mean_std(mean: float, std: float, metric: str) -> str:
    return num(mean, metric) + ("" if _nan(std) else f" ± {num(std, metric)}")


def beside_paper(ours: str, paper_value: float, diff: float, metric: str, signed: bool = False) -> str:
    """`ours; paper P; diff D`, the paper's parts only where it has a value."""
    if _nan(paper_value):
        return ours
    parts = [ours, f"paper {num(paper_value, metric, signed)}"]
    if not _nan(diff):
        parts.append(f"diff {num(diff, metric, signed=True)}")
    return "; ".join(parts)


# ---- sections -----------------------------------------------------------------------------------------

def _target_cell(row: pd.Series) -> str:
    if not row["has_target"] or row["n_finished"] == 0:
        return "–"
    reached = f"({row['n_reached']}/{row['n_finished']})"
    if not math.isfinite(row["steps_to_target"]):
        return f"not reached {reached}"
    return f"{row['steps_to_target']:.0f} steps, {row['s_to_target']:.1f} s {reached}"


def data_bound_notes(runs: pd.DataFrame) -> list[str]:
    """Runs whose loader could not keep up: their s/step measures the data pipeline, not the optimizer."""
    bound = runs[runs["data_wait_frac"] > DATA_BOUND_FRAC].sort_values(["task", "label", "seed"])
    return [f"data-bound: {r.task} {r.label} seed {r.seed} waited {100 * r.data_wait_frac:.0f}% of its training "
            f"time for data (> {100 * DATA_BOUND_FRAC:.0f}%): its s/step is inflated by the loader (bench perf loader)"
            for r in bound.itertuples()]


def summary_section(rs: RecordSet, summary: pd.DataFrame) -> Section:
    """Per task and optimizer: completed runs, final metric over seeds, cost, and every run that did not finish."""
    columns = ["task", "optimizer", "metric", "done", "final", "s/step", "HVPs", "grad evals", "state MB",
               "to target", "diverged", "failed"]
    running = bool(summary["n_running"].any())  # a column only while a study is still going
    rows = [[r["task"], r["label"], metric_header(r["metric"], r["mode"]), str(r["n_done"]),
             mean_std(r["mean"], r["std"], r["metric"]), num(r["s_per_step"], "s/step"), num(r["hvp_count"], "hvp"),
             num(r["grad_evals"], "grad_evals"), num(r["state_bytes"] / 1e6, "MB"), _target_cell(r),
             str(r["n_diverged"]), str(r["n_failed"]), *([str(r["n_running"])] * running)]
            for _, r in summary.iterrows()]
    studies = ", ".join(sorted(set(rs.runs["study"])))
    notes = [f"{len(rs.runs)} runs under {rs.root} (studies: {studies}). Rows: one per config (the run's semantic "
             "config, seed aside; configs of one optimizer that differ are labelled by the keys that differ). done: "
             "seeds completed. Final metric: mean ± sample std over those seeds.",
             "To target: median over every finished seed (completed, diverged or failed) of the first eval at "
             "config.task.target, a seed that missed counting as never; so a config reaches only when a strict "
             "majority of its seeds do (AlgoPerf: 3 of 5), else \"not reached (k/n)\" (stats.cell_time_to_target)."]
    notes += stats.duplicates(rs.runs)
    if rs.unreadable:
        notes.append(f"{len(rs.unreadable)} unreadable record(s) skipped: " + "; ".join(rs.unreadable))
    bad = rs.runs[rs.runs["status"].isin(["diverged", "failed"])].sort_values(["task", "label", "seed"])
    notes += [f"{r.status}: {r.task} {r.label} seed {r.seed}: {r.error or 'no error recorded'}"
              for r in bad.head(MAX_ERROR_NOTES).itertuples()]
    if len(bad) > MAX_ERROR_NOTES:
        notes.append(f"... and {len(bad) - MAX_ERROR_NOTES} more; see --table runs")
    notes += data_bound_notes(rs.runs)
    return Section("Summary", columns + ["running"] * running, rows, notes, align="lll" + "r" * (9 + running))


def runs_section(rs: RecordSet, ttt: pd.DataFrame) -> Section:
    """Every run on its own line, with its time to target."""
    df = rs.runs.join(ttt).sort_values(["task", "label", "seed", "study"])
    rows = [[r.study, r.task, r.label, str(r.seed), r.status, num(r.final, r.metric), num(r.best, r.metric),
             num(r.steps, "steps"), num(r.s_per_step, "s/step"), num(r.hvp_count, "hvp"), num(r.target, r.metric),
             num(r.steps_to_target, "steps"), num(r.s_to_target, "s"), r.error[:80]]
            for r in df.itertuples()]
    return Section("Runs", ["study", "task", "optimizer", "seed", "status", "final", "best", "steps", "s/step",
                            "HVPs", "target", "steps to target", "s to target", "error"], rows,
                   ["to target: first eval at or beyond config.task.target (– when none set or not reached)."],
                   align="llllrlrrrrrrrl")


def _signed(x: float, metric: str) -> str:
    return num(x, metric, signed=True)


def _interval_cell(c: stats.Comparison, metric: str) -> str:
    """The interval, or why there is none and the values instead."""
    if c.method:
        return f"[{_signed(c.lo, metric)}, {_signed(c.hi, metric)}]"
    if c.no_spread:
        return "no spread observed in either config" if c.unpaired else \
            f"no spread observed (every difference {_signed(c.mean, metric)})"
    if c.unpaired:
        a = ", ".join(num(v, metric) for v in c.values)
        b = ", ".join(num(v, metric) for v in c.values_b)
        return f"too few seeds (< {stats.MIN_SEEDS} each): {c.a} {a or '–'}; {c.b} {b or '–'}"
    diffs = ", ".join(_signed(v, metric) for v in c.values)
    return f"too few seeds ({len(c.values)} < {stats.MIN_SEEDS} pairs): differences {diffs or '–'}"


def _p(x: float) -> str:
    return "–" if _nan(x) else f"{x:.2g}"


def _comparison_cells(c: stats.Comparison, metric: str) -> list[str]:
    return [c.method or "–", c.n, _signed(c.mean, metric), _interval_cell(c, metric), _p(c.p), _p(c.p_holm),
            c.verdict or "no test"]


def _seed_notes(task: str, c: stats.Comparison) -> list[str]:
    if not (c.a_only or c.b_only):
        return []
    left = "; ".join(f"{name} seed(s) {', '.join(map(str, seeds))}" for name, seeds in ((c.a, c.a_only),
                                                                                     (c.b, c.b_only)) if seeds)
    if c.method == "paired t":
        return [f"{task} {c.a} − {c.b}: paired on the {c.n} seeds both completed; left out, no partner: {left}."]
    return [f"{task} {c.a} − {c.b}: seeds do not match (no partner: {left}); unpaired, Welch t on every seed."]


def _family_notes(comparisons: list[stats.Table], alpha: float) -> list[str]:
    tested = sum(1 for t in comparisons if t.comparison.method)
    untested = len(comparisons) - tested
    family = f"all {tested} tested comparisons in this report" if tested else "empty: no comparison has a test"
    level = f"{100 * (1 - alpha):g}%"
    best = sorted({t.task for t in comparisons if t.value == "best"})
    on = f"best value over epochs on {', '.join(best)} (as the paper's table), elsewhere the " if best else ""
    notes = [f"Each config against every other on its task, {on}final metric (the test metric where the task has "
             f"one), first minus second. Paired t on the seeds both completed ({level} Student-t interval of the mean "
             f"difference, n = pairs); Welch t (unpaired, Welch–Satterthwaite df) when fewer than "
             f"{stats.MIN_SEEDS} seeds pair up; below {stats.MIN_SEEDS} seeds, or when every difference is equal, "
             "no interval and no test: the values are listed instead.",
             f"Family: {family}, over every task shown; p Holm-adjusted over "
             f"that family, so the chance of any false better/worse verdict in the report is at most α = {alpha:g} "
             "(bench report --alpha). Verdict for the first config: better/worse when Holm p < α, in the metric's "
             "direction (↑ higher is better, ↓ lower), else not distinguishable. Intervals are per comparison, not "
             "adjusted: one that excludes 0 can still be not distinguishable."]
    if untested:
        notes.append(f"{untested} comparison(s) without a test (too few seeds or no spread) are not in the family.")
    return notes


def paired_section(comparisons: list[stats.Table], alpha: float = stats.ALPHA) -> Section:
    """Every config against every other on its task (stats.pairwise), Holm over the report, a verdict per row."""
    rows = [[t.task, f"{t.comparison.a} − {t.comparison.b}", *_comparison_cells(t.comparison, t.metric)]
            for t in comparisons]
    notes = _family_notes(comparisons, alpha)
    notes += [n for t in comparisons for n in _seed_notes(t.task, t.comparison)]
    if not rows:
        notes.append("No task has completed runs of two configs.")
    level = f"{100 * (1 - alpha):g}% CI"
    return Section("Comparisons: every config against every other, paired by seed",
                   ["task", "comparison", "test", "n", "mean diff", level, "p", "p Holm", "verdict"], rows, notes,
                   align="llllrrrrl")


def strongest_section(comparisons: list[stats.Table], summary: pd.DataFrame, alpha: float = stats.ALPHA) -> Section:
    """Each config against the strongest other config of its task (the best mean), from the family above."""
    rows = [[t.task, t.comparison.a, t.comparison.b, *_comparison_cells(t.comparison, t.metric)]
            for t in stats.strongest(comparisons, summary, alpha)]
    notes = ["Strongest other: the other config with the best mean on the task. Each row is that pair's row of the "
             "comparisons above (same test, same Holm p), read from this config's side."]
    return Section("Each config against the strongest other", ["task", "config", "strongest other", "test", "n",
                                                               "mean diff", f"{100 * (1 - alpha):g}% CI", "p",
                                                               "p Holm", "verdict"], rows, notes,
                   align="lllllrrrrl")


def _reproductions(layout: paper.Layout, cmp: pd.DataFrame, alpha: float) -> dict[tuple[str, str],
                                                                                  stats.Reproduction]:
    """The reproduction verdict of every (optimizer, task) cell with a paper value and runs of ours."""
    out = {}
    for c in cmp.itertuples():
        if _nan(c.paper) or c.n == 0 or c.task == layout.average:
            continue
        out[(c.optimizer, c.task)] = _reproduce(c.mean, c.std, c.n, c.paper, c.paper_std, c.paper_n, layout.metric,
                                                alpha)
    return out


def _reproduce(mean: float, std: float, n: int, paper_mean: float, paper_std: float, paper_n: float, metric: str,
               alpha: float) -> stats.Reproduction:
    """One paper cell's verdict; a paper value without a std or n is a constant (one published run)."""
    margin, _ = paper.margin_for(metric, paper_std)
    known = None if _nan(paper_std) or _nan(paper_n) else int(paper_n)
    return stats.reproduction(mean, std, n, paper_mean, paper_std, known, margin, alpha)


def layout_section(layout: paper.Layout, summary: pd.DataFrame, reference: pd.DataFrame,
                   alpha: float | None = None) -> Section:
    """A paper table with ours beside it: rows optimizers, columns tasks, plus a Δ-to-baseline per task; with
    `alpha`, each cell also gets its reproduction verdict (reproduction_section has the details)."""
    cmp = paper.compare(layout, summary, reference)
    verdicts = {} if alpha is None else _reproductions(layout, cmp, alpha)
    cmp = cmp.set_index(["optimizer", "task"])
    m = layout.metric
    columns = ["optimizer"]
    for task in layout.tasks:
        columns += [task, f"{task}: Δ vs {layout.baseline}"]
    rows = []
    for opt in cmp.index.get_level_values("optimizer").unique():
        row = [opt]
        for task in layout.tasks:
            c = cmp.loc[(opt, task)]
            ours = mean_std(c["mean"], c["std"], m) + (f" (n={c['n']:.0f})" if c["n"] else "")
            delta = num(c["delta"], m, signed=True)
            verdict = [verdicts[(opt, task)].verdict] if (opt, task) in verdicts else []
            row += ["; ".join([beside_paper(ours, c["paper"], c["diff"], m), *verdict]),
                    "" if opt == layout.baseline else beside_paper(delta, c["paper_delta"], math.nan, m, True)]
        rows.append(row)
    ref = reference[(reference["table"] == layout.table) & reference["task"].isin(layout.tasks)]
    sources = "; ".join(dict.fromkeys(ref["source"]))
    notes = [f"Cells: ours mean ± std over completed seeds (n seeds); paper value; diff = ours − paper"
             f"{'; the reproduction verdict (see Reproduction)' if verdicts else ''}. "
             f"Δ: optimizer − {layout.baseline}, ours then the paper's. Metric: {metric_header(m, layout.mode)}.",
             f"Source: {sources}."]
    best = [t for t in layout.tasks if paper.value_of(t) == "best"]
    if best:
        notes.append(f"{', '.join(best)}: ours is each run's best test {m} over epochs (metric.best), as the "
                     "authors' CIFAR script reports it (`Best Acc`); elsewhere the final value.")
    if layout.average:
        notes.append(f"{layout.average} with no runs of its own: mean of the columns the optimizer ran; when some "
                     "columns have no runs at all, the paper's averages are its means over the columns that do.")
    notes += [f"Model, {task}: {note}" for task, note in paper.model_notes(layout.tasks).items()]
    return Section(layout.title, columns, rows, notes)


def reproduction_section(layouts: list[paper.Layout], summary: pd.DataFrame, reference: pd.DataFrame,
                         alpha: float = stats.ALPHA) -> Section:
    """Per paper cell with runs of ours: paper and ours with their n, the difference with its Welch interval, the
    equivalence margin, and reproduced / not reproduced / inconclusive."""
    rows = []
    for layout in layouts:
        cmp = paper.compare(layout, summary, reference)
        verdicts = _reproductions(layout, cmp, alpha)
        m = layout.metric
        for c in cmp.itertuples():
            r = verdicts.get((c.optimizer, c.task))
            if r is None:
                continue
            n = "single run" if _nan(c.paper_std) else f"n={c.paper_n:.0f}" if not _nan(c.paper_n) else "n not stated"
            theirs = f"{mean_std(c.paper, c.paper_std, m)} ({n})"
            ours = f"{mean_std(c.mean, c.std, m)} (n={c.n}, {c.value})"
            interval = "–" if _nan(r.lo) else f"[{_signed(r.lo, m)}, {_signed(r.hi, m)}]"
            _, source = paper.margin_for(m, c.paper_std)
            rows.append([layout.table, c.task, c.optimizer, theirs, ours, _signed(r.diff, m), interval, _p(r.p),
                         f"±{num(r.margin, m)} ({source})", r.verdict, r.reason])
    level = f"{100 * (1 - alpha):g}%"
    notes = [f"diff = ours − paper, with its {level} Welch interval from both means, stds and n (Welch–Satterthwaite "
             "df); a paper value without a std (a single run, or n not stated) is taken as exact: one-sample t of "
             "ours against it. p: Welch two-sided.",
             f"reproduced: equivalent within ±margin by TOST at α = {alpha:g} (both one-sided Welch tests reject, i.e. "
             f"the {100 * (1 - 2 * alpha):g}% interval lies inside ±margin). not reproduced: p < α and |diff| > "
             f"margin. inconclusive: neither, or fewer than {stats.MIN_SEEDS} seeds of ours.",
             f"Margin: {paper.MARGIN_STDS:g}× the paper's std where it gives one; else the per-metric default in "
             f"bench/paper.METRIC_MARGINS ({', '.join(f'{k} {v:g}' for k, v in paper.METRIC_MARGINS.items())}).",
             "CIFAR-10 cells compare each run's best test top-1 over epochs (metric.best), as the paper's source "
             "reports (`Best Acc`); every other cell the final value. Cells with no runs of ours are left out."]
    return Section("Reproduction of the paper's cells", ["table", "task", "optimizer", "paper", "ours", "diff",
                                                          f"{level} CI", "p", "margin", "verdict", "why"], rows, notes,
                   align="lll" + "r" * 6 + "ll")


def delayed_section(summary: pd.DataFrame, reference: pd.DataFrame, alpha: float = stats.ALPHA) -> Section:
    """Table 8's cost layout: Hessian every N steps; accuracy, s/step relative to SGD and Adam, HVP count."""
    df = paper.delayed(summary, reference)
    tasks = list(dict.fromkeys(df["task"]))
    columns = ["Hessian every", "fraction"]
    for task in tasks:
        metric = df.loc[df["task"] == task, "metric"].iloc[0]
        columns += [f"{task} {metric}", f"{task} ×SGD", f"{task} ×Adam", f"{task} HVPs"]
    rows = []
    for (n, fraction), group in df.groupby(["every", "fraction"], sort=False):
        row = [str(n), f"{fraction:g}"]
        for c in group.itertuples():
            ours = mean_std(c.mean, c.std, c.metric) + (f" (n={c.n})" if c.n else "")
            verdict = [] if _nan(c.paper) or not c.n else \
                [_reproduce(c.mean, c.std, c.n, c.paper, c.paper_std, math.nan, c.metric, alpha).verdict]
            row += ["; ".join([beside_paper(ours, c.paper, c.diff, c.metric), *verdict]),
                    beside_paper(num(c.x_sgd, "ratio"), c.paper_x_sgd, math.nan, "ratio"),
                    beside_paper(num(c.x_adam, "ratio"), c.paper_x_adam, math.nan, "ratio"),
                    num(c.hvp_count, "hvp")]
        rows.append(row)
    notes = ["Rows: adahessian runs with config.optimizer.update_each = N and the Hessian estimated from this "
             "fraction of each batch (config.trainer.hessian_batch_fraction; the gradient is the full batch's). "
             "×SGD/×Adam: mean s/step over "
             "mean s/step of SGD/Adam on the same task (completed runs). HVPs: mean Hessian-vector products "
             "per run. Paper: arXiv 2006.00719v2 Table 8 (cost relative to SGD/Adam).",
             "Accuracy: each run's best test top-1 over epochs (the paper's CIFAR script reports `Best Acc`), then the "
             "reproduction verdict; Table 8 gives a std but no run count, so its mean is taken as exact (one-sample "
             f"t) with a margin of {paper.MARGIN_STDS:g}× its std; see --table reproduction for the rules."]
    return Section("Table 8: delayed Hessian update, accuracy and cost", columns, rows, notes)


def pinn_reproduction(runs: pd.DataFrame, optimizer: str, paper_value: float, conditions: dict[str, str],
                      alpha: float = stats.ALPHA) -> str:
    """One published PINN row against our runs in its setup: the verdict on log10 rel-L2 (within a factor of 2 by
    TOST, the published value taken as exact) and our geometric mean beside it."""
    if not conditions:
        return "no setup given (results/paper/pinn.csv config)"
    mine = paper.pinn_matches(runs, optimizer, conditions)
    if mine.empty:
        return "not run in this setup"
    logs = mine["final"].astype(float).clip(lower=1e-12).map(math.log10)
    verdict = stats.reproduction(float(logs.mean()), float(logs.std(ddof=1)) if len(logs) > 1 else math.nan,
                                 len(logs), math.log10(paper_value), math.nan, None, paper.PINN_LOG_MARGIN, alpha)
    geo = 10 ** float(logs.mean())
    return f"{verdict.verdict} (ours {num(geo, 'rel_l2')} = {geo / paper_value:.3g}x, n={len(logs)})"


def pinn_section(rs: RecordSet, alpha: float = stats.ALPHA) -> Section:
    """PINN problems: rel-L2 median [min, max] over seeds and time per optimizer, beside published numbers, each
    published row with its reproduction verdict against our runs in that row's setup."""
    df = paper.pinn(rs.runs, pd.read_csv(paper.PINN_CSV))
    rows = [[r.task, r.optimizer, r.source, "–" if _nan(r.n) else f"{r.n:.0f}",
             num(r.median, "rel_l2"), "–" if _nan(r.lo) else f"[{num(r.lo, 'rel_l2')}, {num(r.hi, 'rel_l2')}]",
             num(r.wall_s, "s"), "" if _nan(r.diverged) else f"{r.diverged:.0f}",
             "" if _nan(r.failed) else f"{r.failed:.0f}",
             "" if r.source == "ours" else pinn_reproduction(rs.runs, r.optimizer, r.median, r.conditions, alpha)]
            for r in df.itertuples()]
    notes = ["rel-L2 ↓: ||u - u_ref|| / ||u_ref|| on the reference grid at the end of the run (metric.final); median "
             "and [min, max] over completed seeds; time: median wall seconds of training. a→b: optimizer a, then b "
             "from trainer.switch_at. Diverged runs (NaN loss) are counted, never dropped silently.",
             f"Published rows: {paper.PINN_CSV.name} (their value in the median column). Reproduction: our runs of "
             "that optimizer whose config has every key of the row's `config` column, judged on log10 rel-L2: "
             f"reproduced when within a factor of 2 of the published value by TOST at α = {alpha:g} (the published "
             "value taken as exact), not reproduced when the gap is significant and beyond it, else inconclusive; "
             "ours is the geometric mean over seeds. A published best run of a sweep (its source says so) is "
             "compared with our mean, which favours the paper."]
    return Section("PINNs: relative L2 error and time", ["task", "optimizer", "source", "n", "rel-L2 median",
                                                         "[min, max]", "time s", "diverged", "failed",
                                                         "reproduction"], rows, notes,
                   align="lll" + "r" * 6 + "l")


def sweep_section(table: paper.Sweep, runs: pd.DataFrame, reference: pd.DataFrame,
                  alpha: float = stats.ALPHA) -> Section:
    """Tables 6 and 7 and the harness's lr sweep: one row per (task, optimizer), one column per swept value, ours
    beside the paper's where a paper has the table."""
    df = paper.sweep(table, runs, reference)
    values = list(dict.fromkeys(df["value"]))
    rows = []
    for (task, opt), group in df.groupby(["task", "optimizer"], sort=False):
        row = [task, opt]
        for c in group.itertuples():
            ours = mean_std(c.mean, c.std, c.metric) + (f" (n={c.n})" if c.n else "")
            ours += f" [{c.n_diverged} diverged]" if c.n_diverged else ""
            verdict = [] if _nan(c.paper) or not c.n else \
                [_reproduce(c.mean, c.std, c.n, c.paper, c.paper_std, c.paper_n, c.metric, alpha).verdict]
            row.append(f"{ours}; paper diverged" if c.paper_diverged else
                       "; ".join([beside_paper(ours, c.paper, c.diff, c.metric), *verdict]))
        rows.append(row)
    notes = [f"Columns: config {table.key}. Cells: ours mean ± std over completed runs (the test metric where the "
             "task has one); diverged runs counted apart; \"–\" where nothing ran."]
    notes.append(f"Source: {table.source}; paper values from results/paper/adahessian.csv. Each cell with runs ends "
                 "in its reproduction verdict (rules and margins: --table reproduction)." if table.source
                 else "No paper has this table: every cell is this harness's measurement.")
    return Section(table.title, ["task", "optimizer", *[f"{table.key}={v:g}" for v in values]], rows, notes)


def build(rs: RecordSet, table: str | None, alpha: float = stats.ALPHA,
          hvp_cost: float = profile.HVP_COST) -> list[Section]:
    """The sections `--table` asks for; no table means the summary and, where two configs share a task, the
    comparisons and each config against the strongest other; with two or more tasks, aggregates and profiles."""
    ttt = stats.time_to_target(rs.runs, rs.history)
    summary = stats.summarize(rs.runs, ttt)
    reference = paper.load_reference()
    names = ("summary", "paired", "strongest") if table is None else SECTIONS if table == "all" else \
        paper.ALIASES.get(table, (table,))
    shown = [n for n in names if n in paper.LAYOUTS]
    # the family of the Holm rule: the comparisons on the tasks this report shows
    tasks = None if table in (None, "all", "paired", "strongest") else \
        tuple(t for n in shown for t in paper.LAYOUTS[n].tasks)
    best = paper.BEST_OF_EPOCHS if shown and table != "all" else frozenset()  # like the layout's cells
    comparisons = stats.pairwise(rs.runs, summary, alpha, tasks, best) if tasks is None or shown else []
    sections = []
    for name in names:
        if name == "summary":
            sections.append(summary_section(rs, summary))
        elif name == "runs":
            sections.append(runs_section(rs, ttt))
        elif name == "paired" and (comparisons or table is not None):
            sections.append(paired_section(comparisons, alpha))
        elif name == "strongest" and (comparisons or table is not None):
            sections.append(strongest_section(comparisons, summary, alpha))
        elif name == "aggregate":
            sections.append(aggregate.aggregate_section(rs.runs))
        elif name in ("profile", "to_target"):
            sections.append(profile.sections(rs.runs, rs.history, hvp_cost)[name == "to_target"])
        elif name == "reproduction":
            sections.append(reproduction_section(list(paper.LAYOUTS.values()), summary, reference, alpha))
        elif name == paper.DELAYED:
            sections.append(delayed_section(summary, reference, alpha))
        elif name == paper.PINN:
            sections.append(pinn_section(rs, alpha))
        elif name in paper.SWEEPS:
            sections.append(sweep_section(paper.SWEEPS[name], rs.runs, reference, alpha))
            if not paper.SWEEPS[name].source:  # a harness sweep chooses a value: on tuning seeds, judged on others
                sections.append(tuning.selection_section(rs.runs, paper.SWEEPS[name].key))
        elif name in paper.LAYOUTS:
            sections.append(layout_section(paper.LAYOUTS[name], summary, reference, alpha))
    if shown and table != "all":
        sections.append(reproduction_section([paper.LAYOUTS[n] for n in shown], summary, reference, alpha))
        if comparisons:
            sections.append(paired_section(comparisons, alpha))
    if table is None and rs.runs["task"].nunique() >= 2:
        sections += [aggregate.aggregate_section(rs.runs), *profile.sections(rs.runs, rs.history, hvp_cost)]
    for section in sections:  # under each paper table, the declared deviations from the paper its runs show
        section.notes += ledger.section_notes(section.title, rs.runs)
    return sections


# ---- rendering ----------------------------------------------------------------------------------------

def _markdown_table(s: Section) -> list[str]:
    cells = [[c.replace("|", "\\|") for c in row] for row in [s.columns, *s.rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(s.columns))]
    spec = list(zip(widths, s.align, strict=True))

    def line(row: list[str]) -> str:
        padded = (c.ljust(w) if a == "l" else c.rjust(w) for c, (w, a) in zip(row, spec, strict=True))
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(":" + "-" * (w + 1) if a == "l" else "-" * (w + 1) + ":" for w, a in spec) + "|"
    notes = [*s.notes, ""] if s.notes else []
    return [f"### {s.title}", "", line(cells[0]), rule, *map(line, cells[1:]), "", *notes]


def to_markdown(sections: list[Section]) -> str:
    """Pipe tables, padded so they also read well as plain text."""
    return "\n".join(line for s in sections for line in _markdown_table(s)) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "Δ": r"$\Delta$",
        "–": "--", "−": "-", "×": r"$\times$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "→": r"$\rightarrow$",
        "α": r"$\alpha$"}


def tex(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def to_latex(sections: list[Section]) -> str:
    """One table environment per section; plain tabular with \\hline, so it needs no extra packages."""
    out = []
    for s in sections:
        body = [" & ".join(map(tex, row)) + r" \\" for row in s.rows]
        out += [r"\begin{table}[ht]", r"\centering", rf"\caption{{{tex(s.title)}}}",
                rf"\begin{{tabular}}{{{s.align}}}", r"\hline", " & ".join(map(tex, s.columns)) + r" \\",
                r"\hline", *body, r"\hline", r"\end{tabular}"]
        out += [rf"\par{{\footnotesize {tex(note)}}}" for note in s.notes]
        out += [r"\end{table}", ""]
    return "\n".join(out) + "\n"


def to_csv(sections: list[Section]) -> str:
    """Each section: a `# title` line, the header, the rows, `# note` lines, then a blank line."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for s in sections:
        writer.writerow([f"# {s.title}"])
        writer.writerows([s.columns, *s.rows])
        writer.writerows([[f"# {note}"] for note in s.notes])
        buf.write("\n")
    return buf.getvalue()


def _html_row(row: list[str], tag: str, align: str) -> str:
    cells = "".join(f'<{tag} class="{a}">{html.escape(c)}</{tag}>' for c, a in zip(row, align, strict=True))
    return f"<tr>{cells}</tr>"


def to_html(sections: list[Section]) -> str:
    """A standalone page, one table per section."""
    out = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8"><title>bench report</title>',
           "<style>body{font-family:sans-serif}table{border-collapse:collapse;margin-bottom:.5em}"
           "th,td{border:1px solid #ccc;padding:2px 8px}.l{text-align:left}.r{text-align:right}"
           "p.note{color:#555;font-size:90%}</style></head><body>"]
    for s in sections:
        out += [f"<h3>{html.escape(s.title)}</h3>", "<table>",
                f"<thead>{_html_row(s.columns, 'th', s.align)}</thead>", "<tbody>",
                *(_html_row(r, "td", s.align) for r in s.rows), "</tbody></table>"]
        out += [f'<p class="note">{html.escape(n)}</p>' for n in s.notes]
    out.append("</body></html>")
    return "\n".join(out) + "\n"


RENDERERS = {"md": to_markdown, "latex": to_latex, "csv": to_csv, "html": to_html}


def print_rich(sections: list[Section]) -> None:
    """The terminal view of the markdown format."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False)
    for s in sections:
        table = Table(title=escape(s.title), title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
                      pad_edge=False)
        for i, (col, a) in enumerate(zip(s.columns, s.align, strict=True)):
            table.add_column(escape(col), justify="left" if a == "l" else "right", no_wrap=i < 2)
        for row in s.rows:
            table.add_row(*map(escape, row))
        console.print(table)
        for note in s.notes:
            console.print(escape(note), style="dim")
        console.print()


def emit(sections: list[Section], fmt: str = "md", out: str | None = None) -> None:
    """Write to `out`, or to stdout: a rich table on a terminal when the format is markdown."""
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(RENDERERS[fmt](sections))
        print(f"wrote {out}", file=sys.stderr)
    elif fmt == "md" and sys.stdout.isatty():
        print_rich(sections)
    else:
        sys.stdout.write(RENDERERS[fmt](sections))


# ---- command line -------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a runs folder (<study>/<run_id>/record.json) or one study folder")
    parser.add_argument(
        "--table", choices=TABLES, metavar="NAME",
        help="summary (default), runs (one line per run, with time to target), paired (every config against "
             "every other: t intervals, Holm-adjusted verdicts), strongest (each config against the best other), "
             "reproduction (every paper cell: reproduced or not), aggregate (IQM and P(X > Y) over tasks), "
             "profile (AlgoPerf performance profiles: steps, gradient equivalents, wall-clock), to_target (each "
             "cell's time to target by AlgoPerf's rule, in the three units), "
             "paper layouts cifar10, imagenet (Table 2), nmt (Table 3), lm (Table 4), "
             "glue (Table 5), dlrm (text and Fig. 6), delayed (Table 8, cost), pinn (PINN rel-L2); "
             "table2|table3|table4|table5|"
             "fig6|table8 name them by number; table6 (NMT lr scaling), table7 (NMT block size); "
             "lr (any lr sweep, e.g. experiment=zoo_lr_sweep), lr_scale (recipe lr multipliers, e.g. "
             "experiment=paper_glue_tune); all")
    parser.add_argument("--format", choices=FORMATS, default="md", help="output format (default md)")
    parser.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    parser.add_argument("--plots", metavar="DIR", help="also write PNG and SVG plots into DIR")
    parser.add_argument("--hvp-cost", type=float, default=profile.HVP_COST, metavar="X",
                        help=f"one Hessian-vector product in gradient evaluations, for the profile's gradient "
                             f"equivalents (default {profile.HVP_COST:g}, measured by bench perf on CPU)")
    parser.add_argument("--alpha", type=_alpha, default=stats.ALPHA,
                        help="error rate of the verdicts: intervals at 1 - alpha, better/worse when the Holm-adjusted "
                             "p is below alpha, reproduction by TOST at alpha (default 0.05)")


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 0.5:
        raise argparse.ArgumentTypeError(f"--alpha {text!r}: expected a number between 0 and 0.5, e.g. 0.05")
    return value


def run(args: argparse.Namespace) -> int:
    rs = load(args.path)
    emit(build(rs, args.table, args.alpha, args.hvp_cost), args.format, args.out)
    if args.plots:
        written, skipped = plots.write_all(rs, Path(args.plots), args.hvp_cost)
        print(f"wrote {len(written)} plot files to {args.plots}", file=sys.stderr)
        for reason in skipped:
            print(f"skipped: {reason}", file=sys.stderr)
    return 0
