"""`bench check`: the CI guard. A study fails only where its seeds are worse than the baseline's by more than
seed noise explains (bench/tolerance.py); a study of another config is refused, not compared."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bench import baseline as bl
from bench import tolerance
from bench.errors import UsageError
from bench.fingerprint import digest
from bench.recordset import load
from bench.report import Section, emit, num

ALPHA = 0.01  # false-alarm rate of the whole check when a change only perturbs training
POWER_DROP_SDS = 3.0  # the drop, in seed SDs, the guard must catch ...
POWER_TARGET = 0.8  # ... with at least this probability (write-baseline warns below it)
FAIL = "FAIL"


def _spread(values: dict[int, float], metric: str) -> str:
    x = np.array(list(values.values()))
    sd = num(float(x.std(ddof=1)), metric) if len(x) > 1 else "–"
    return f"{num(float(x.mean()), metric)} ± {sd} ({len(x)})" if len(x) else "–"


def refuse_other_config(runs: pd.DataFrame, configs: pd.Series, base: bl.Study, where: str, baseline: Path) -> None:
    """A study of another config (budget, batch, task options, optimizer hyperparameters) is not a regression
    test of this baseline: one line naming the keys that differ, exit 2."""
    diffs: dict[str, set[str]] = {}
    for rid, run in runs.iterrows():
        cell = base.tasks[run["task"]].cells.get(run["label"]) if run["task"] in base.tasks else None
        if cell is not None and digest(configs[rid]) != cell.fingerprint:
            for diff in bl.differing(cell.config, configs[rid]):
                diffs.setdefault(diff, set()).add(f"{run['task']} {run['label']}")
    if diffs:
        shown = "; ".join(f"{d} ({len(cells)} entries)" for d, cells in sorted(diffs.items())[:6])
        more = f"; and {len(diffs) - 6} more" if len(diffs) > 6 else ""
        raise UsageError(f"{where}: config differs from the baseline {baseline}: {shown}{more}; the guard compares "
                         f"like with like: rerun the baseline's study, or write a new baseline with --write-baseline")


def _missing(runs: pd.DataFrame, seeds: list[int], done: dict[int, float]) -> list[str]:
    """Each baseline seed without a completed run here, and what it has instead."""
    return [f"seed {s} {'/'.join(sorted(set(runs.loc[runs['seed'] == s, 'status']))) or 'missing'}"
            for s in seeds if s not in done]


def _row(task: str, name: str, metric: str, higher: bool, before: dict[int, float], after: dict[int, float],
         alpha: float) -> list[str]:
    """One guarded entry: baseline and new seeds, the change, the noise-derived tolerance, p and the verdict."""
    row = [task, name, _spread(before, metric), _spread(after, metric)]
    if min(len(before), len(after)) < bl.MIN_SEEDS:
        return [*row, "–", "–", "–", f"{FAIL} (< {bl.MIN_SEEDS} seeds)"]
    c = tolerance.compare(np.array(list(before.values())), np.array(list(after.values())), alpha, higher)
    verdict = {tolerance.REGRESSED: FAIL, tolerance.IMPROVED: "improved", tolerance.OK: "ok"}[c.verdict]
    sign = 1 if higher else -1
    p = "–" if math.isnan(c.p) else f"{c.p:.2g}"
    return [*row, num(sign * c.change, metric, signed=True), f"{'-' if higher else '+'}{num(c.tolerance, metric)}",
            p, verdict]


def check(runs: pd.DataFrame, base: bl.Study, alpha: float, unreadable: list[str] | None = None) -> Section:
    """One row per required run set and guarded entry. An unreadable record fails the check: it may be a run
    the baseline needs, and its result cannot be verified."""
    k = base.entry_count()
    each = tolerance.entry_alpha(alpha, k)
    rows = [["?", "unreadable record", "a readable record", problem, "", "", "", FAIL] for problem in unreadable or []]
    for task, spec in base.tasks.items():
        mine = runs[runs["task"] == task]
        other_metrics = sorted(set(mine["metric"]) - {spec.metric})
        if other_metrics:
            rows.append([task, "metric", spec.metric, f"runs report {', '.join(other_metrics)}", "", "", "", FAIL])
        cells = {}
        for label, cell in spec.cells.items():
            sel = mine[mine["label"] == label]
            cells[label] = bl.Cell(cell.config, bl.finals(sel))
            problems = _missing(sel, sorted(cell.seeds), cells[label].seeds)
            if problems:
                rows.append([task, f"{label} runs", f"seeds {','.join(map(str, sorted(cell.seeds)))}",
                             "; ".join(problems), "", "", "", FAIL])
        now = bl.TaskResult(spec.metric, spec.higher_is_better, cells, spec.deltas).entries()
        for name, before in spec.entries().items():
            shown = f"{name} {spec.metric}" if name in spec.cells else name
            rows.append(_row(task, shown, spec.metric, spec.higher_is_better, before, now[name], each))
    unguarded = sorted({f"{r.task} {r.label}" for r in runs.itertuples()
                        if r.task in base.tasks and r.label not in base.tasks[r.task].cells})
    failed = sum(row[-1].startswith(FAIL) for row in rows)
    improved = [f"{row[0]} {row[1]}" for row in rows if row[-1] == "improved"]
    n = min(len(v) for t in base.tasks.values() for v in t.entries().values())
    notes = [
        f"{failed} of {len(rows)} entries FAILED" if failed else f"all {len(rows)} entries hold",
        f"Method: {tolerance.METHOD}; alpha = {alpha:g} over k = {k} entries (each at {each:.2g}), so a change that "
        f"only perturbs training fails this check with probability <= {alpha:g}. Tolerance: the drop that fails at "
        f"the pooled seed noise (a rise, where lower is better); p: one-sided p-value of a regression.",
        f"At {n} seeds a side, an entry whose mean drops by {POWER_DROP_SDS:g} seed SDs fails with probability "
        f"{tolerance.power(n, n, POWER_DROP_SDS, each):.2f} (normal seed noise).",
    ]
    if unguarded:
        notes.append(f"Not in the baseline, not checked: {', '.join(unguarded)}.")
    if improved:
        notes.append(f"Improved beyond noise (passes): {', '.join(improved)}; guard the gain with --write-baseline.")
    return Section("bench check", ["task", "entry", "baseline mean ± sd (n)", "these runs", "change", "tolerance",
                                   "p", "verdict"], rows, notes, align="llrrrrrl")


def _origin(code: dict, platform: dict) -> str:
    return f"code {str(code.get('git_sha', '?'))[:12]}{' (dirty)' if code.get('dirty') else ''} on " \
           f"{platform.get('device', '?')}, torch {platform.get('torch', '?')}"


def provenance_note(base: bl.Study, code: dict, platform: dict) -> str:
    """What produced the baseline and these runs; a platform change is noted (the tolerance is seed noise only)."""
    differs = " The platforms differ: the tolerance covers seed noise, not platform changes." \
        if platform != base.platform else ""
    return f"Baseline: {_origin(base.code, base.platform)}; these runs: {_origin(code, platform)}.{differs}"


def diff(old: bl.Study, new: bl.Study) -> tuple[Section, list[str]]:
    """Old baseline against the new one, entry by entry; and the guarded values the new one lowers or drops."""
    rows, lowered = [], []
    for task in sorted(set(old.tasks) | set(new.tasks)):
        before = old.tasks[task].entries() if task in old.tasks else {}
        after = new.tasks[task].entries() if task in new.tasks else {}
        spec = new.tasks.get(task) or old.tasks[task]
        sign = 1 if spec.higher_is_better else -1
        for name in list(dict.fromkeys([*before, *after])):
            b, a = before.get(name), after.get(name)
            change = float(np.mean(list(a.values())) - np.mean(list(b.values()))) if a and b else math.nan
            if a is None:
                what = "dropped"
            elif b is None:
                what = "new entry"
            else:
                what = "lowered" if sign * change < -tolerance.EPS else "raised" if sign * change > tolerance.EPS \
                    else "unchanged"
            cells = [old.tasks[task].cells.get(name) if task in old.tasks else None,
                     new.tasks[task].cells.get(name) if task in new.tasks else None]
            if all(cells) and cells[0].fingerprint != cells[1].fingerprint:
                what += "; config: " + ", ".join(bl.differing(cells[0].config, cells[1].config)[:4])
            if what.startswith(("lowered", "dropped")):
                lowered.append(f"{task} {name} {num(change, spec.metric, signed=True)}" if b and a else
                               f"{task} {name} dropped")
            rows.append([task, name, _spread(b or {}, spec.metric), _spread(a or {}, spec.metric),
                         num(change, spec.metric, signed=True), what])
    notes = [f"Old: {_origin(old.code, old.platform)}; new: {_origin(new.code, new.platform)}."]
    return Section("bench check --write-baseline: old -> new", ["task", "entry", "old mean ± sd (n)",
                                                                "new mean ± sd (n)", "change", "what"],
                   rows, notes, align="llrrrl"), lowered


def _previous(out: Path) -> bl.Study | None:
    """The baseline being replaced: None when there is none, or when it is schema 1 (no per-seed values to diff:
    the migration writes over it, saying so)."""
    if not out.exists():
        return None
    try:
        if bl.load_doc(out)["schema"] == 1:
            print(f"warning: {out}: replacing a schema-1 baseline; it has no per-seed values to diff against",
                  file=sys.stderr)
            return None
        return bl.read(out)
    except UsageError as exc:
        raise UsageError(f"{out} exists and is not a readable baseline ({exc}); nothing written: move it away "
                         f"first") from None


def write(runs: pd.DataFrame, out: Path, accept_regression: bool, alpha: float) -> None:
    """Write the baseline after showing what changes; lowering or dropping a guarded value needs consent."""
    study, warnings = bl.measure(runs)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    each = tolerance.entry_alpha(alpha, study.entry_count())
    for task, spec in study.tasks.items():
        for name, values in spec.entries().items():
            n = len(values)
            if tolerance.power(n, n, POWER_DROP_SDS, each) < POWER_TARGET:
                print(f"warning: {task} {name}: at {n} seeds a drop of {POWER_DROP_SDS:g} seed SDs fails with "
                      f"probability {tolerance.power(n, n, POWER_DROP_SDS, each):.2f} only; "
                      f"{tolerance.seeds_for(POWER_DROP_SDS, each, POWER_TARGET)} seeds reach {POWER_TARGET:g}",
                      file=sys.stderr)
    old = _previous(out)
    if old is not None:
        section, lowered = diff(old, study)
        emit([section])
        if lowered and not accept_regression:
            raise UsageError(f"{out}: the new baseline lowers or drops {len(lowered)} guarded value(s) "
                             f"({'; '.join(lowered)}); nothing written: pass --accept-regression to write it anyway")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(bl.dump(study))
    print(f"wrote {out}", file=sys.stderr)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a runs folder (<study>/<run_id>/record.json) or one study folder")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--baseline", metavar="FILE", help="baseline YAML to check against (results/baselines/)")
    mode.add_argument("--write-baseline", metavar="FILE", help="write a baseline from these runs instead; shows the "
                      "change against FILE's current content")
    parser.add_argument("--accept-regression", action="store_true",
                        help="with --write-baseline: write even if it lowers or drops a guarded value")
    parser.add_argument("--alpha", type=float, default=ALPHA, metavar="A",
                        help=f"false-alarm rate of the whole check under seed noise (default {ALPHA:g})")


def run(args: argparse.Namespace) -> int:
    """0: every entry holds (improvements included); 1: an entry regressed beyond seed noise, or a required run
    is missing/failed/diverged/unreadable; 2: unusable input, another config than the baseline's."""
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha {args.alpha:g}: expected a probability in (0, 1), e.g. --alpha 0.01")
    records = load(args.path)
    if args.write_baseline:
        write(records.runs, Path(args.write_baseline), args.accept_regression, args.alpha)
        return 0
    if args.accept_regression:
        raise UsageError("--accept-regression goes with --write-baseline FILE, not with --baseline")
    base = bl.read(Path(args.baseline))
    runs = records.runs[records.runs["task"].isin(base.tasks)]
    docs = bl.records(runs)
    refuse_other_config(runs, bl.run_configs(docs, runs), base, args.path, Path(args.baseline))
    section = check(runs, base, args.alpha, records.unreadable)
    section.notes.append(provenance_note(base, *bl.provenance(docs.values())))
    emit([section])
    return 1 if any(row[-1].startswith(FAIL) for row in section.rows) else 0
