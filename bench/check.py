"""`bench check`: the CI guard. Compare a study's metrics and deltas with a committed baseline YAML."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from bench import paper, stats
from bench.errors import UsageError
from bench.recordset import load
from bench.report import Section, emit, num

SCHEMA = 1
DECIMALS = 4  # values are written, and compared, at this resolution, so a written baseline round-trips
HEADER = """\
# bench check baseline (schema 1). Written by `bench check RUNS --write-baseline FILE --tolerance X`;
# edit freely. `bench check RUNS --baseline FILE` exits 1 when any entry below does not hold.
#
# tasks:
#   <task>:                           task name as in the run records
#     metric: top1                    primary metric the runs must report
#     optimizers:
#       <optimizer>:                  label as reports show it (adahessian@2 = Hessian every 2 steps)
#         value: 97.2                 expected mean final metric over `seeds`
#         tolerance: 0.5              |observed - value| <= tolerance, both rounded to 4 decimals
#         seeds: [0, 1, 2]            required runs: each seed must have a completed run
#     deltas:
#       "<optimizer> - <baseline>":   difference of the two means above (both must be listed)
#         value: 0.6
#         tolerance: 0.5
"""


def _fail(path: Path, what: str) -> UsageError:
    return UsageError(f"{path}: {what}; see the comment header that --write-baseline writes")


def _entry(path: Path, where: str, spec: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """A {value, tolerance[, seeds]} mapping, checked for types so the guard never half-runs."""
    if not isinstance(spec, dict) or any(k not in spec for k in keys):
        raise _fail(path, f"{where} needs {', '.join(keys)}")
    for key in ("value", "tolerance"):
        if not isinstance(spec[key], (int, float)) or isinstance(spec[key], bool) or not math.isfinite(spec[key]):
            raise _fail(path, f"{where}.{key} must be a number")
    if spec["tolerance"] < 0:
        raise _fail(path, f"{where}.tolerance must be >= 0")
    seeds = spec.get("seeds")
    if "seeds" in keys and not (isinstance(seeds, list) and seeds
                                and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise _fail(path, f"{where}.seeds must be a non-empty list of integers")
    return spec


def read_baseline(path: Path) -> dict[str, Any]:
    """Parse and validate a baseline file; anything unusable is a UsageError naming the file and the key."""
    if not path.is_file():
        raise UsageError(f"{path}: no such baseline file; write one with --write-baseline {path} --tolerance X")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise _fail(path, f"not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("tasks"), dict):
        raise _fail(path, f"expected a mapping with schema: {SCHEMA} and tasks:")
    for task, spec in doc["tasks"].items():
        if not isinstance(spec, dict) or not isinstance(spec.get("metric"), str):
            raise _fail(path, f"tasks.{task} needs metric: and optimizers:")
        optimizers = spec.get("optimizers")
        if not isinstance(optimizers, dict) or not optimizers:
            raise _fail(path, f"tasks.{task}.optimizers must map optimizer names to value/tolerance/seeds")
        for opt, entry in optimizers.items():
            _entry(path, f"tasks.{task}.optimizers.{opt}", entry, ("value", "tolerance", "seeds"))
        deltas = spec.get("deltas") or {}
        if not isinstance(deltas, dict):
            raise _fail(path, f"tasks.{task}.deltas must map 'A - B' to value/tolerance")
        for key, entry in deltas.items():
            pair = str(key).split(" - ")
            if len(pair) != 2 or not all(p in optimizers for p in pair):
                raise _fail(path, f"tasks.{task}.deltas key {key!r} must be 'A - B' with A and B under optimizers")
            _entry(path, f"tasks.{task}.deltas.{key}", entry, ("value", "tolerance"))
    return doc


def _holds(observed: float, value: float, tolerance: float) -> bool:
    return not math.isnan(observed) and abs(round(observed, DECIMALS) - value) <= tolerance + 1e-12


def _missing(runs: pd.DataFrame, task: str, label: str, seeds: list[int], done: pd.Index) -> list[str]:
    """Each required seed without a completed, evaluated run, and what it has instead."""
    mine = runs[(runs["task"] == task) & (runs["label"] == label)]
    return [f"seed {seed} {'/'.join(sorted(set(mine.loc[mine['seed'] == seed, 'status']))) or 'missing'}"
            for seed in seeds if seed not in done]


def check(runs: pd.DataFrame, baseline: dict[str, Any], unreadable: list[str] | None = None) -> Section:
    """One row per required run set, metric and delta: expected, observed, verdict. An unreadable record fails
    the check: it may be a run the baseline needs, and its result cannot be verified."""
    rows = [["?", "unreadable record", "a readable record", problem, "FAIL"] for problem in unreadable or []]
    for task, spec in baseline["tasks"].items():
        metric = spec["metric"]
        other_metrics = sorted(set(runs.loc[runs["task"] == task, "metric"]) - {metric})
        means = {}
        for label, entry in spec["optimizers"].items():
            finals = stats.per_seed(runs, task, label)
            problems = _missing(runs, task, label, entry["seeds"], finals.index)
            rows.append([task, f"{label} runs", f"seeds {','.join(map(str, entry['seeds']))} completed",
                         "; ".join(problems) or "all completed", "FAIL" if problems else "ok"])
            means[label] = observed = float(finals[finals.index.isin(entry["seeds"])].mean())
            ok = _holds(observed, entry["value"], entry["tolerance"]) and not other_metrics
            shown = num(observed, metric) + (f" (runs report {', '.join(other_metrics)})" if other_metrics else "")
            rows.append([task, f"{label} {metric}", f"{num(entry['value'], metric)} ± {entry['tolerance']}",
                         shown, "ok" if ok else "FAIL"])
        for key, entry in (spec.get("deltas") or {}).items():
            a, b = key.split(" - ")
            observed = means[a] - means[b]
            rows.append([task, f"{a} − {b}", f"{num(entry['value'], metric, True)} ± {entry['tolerance']}",
                         num(observed, metric, signed=True),
                         "ok" if _holds(observed, entry["value"], entry["tolerance"]) else "FAIL"])
    failed = sum(row[-1] == "FAIL" for row in rows)
    verdict = f"{failed} of {len(rows)} entries FAILED" if failed else f"all {len(rows)} entries hold"
    return Section("bench check", ["task", "entry", "expected", "observed", "verdict"], rows,
                   [f"{verdict}. Metric: mean final over the listed seeds; delta: difference of those means."],
                   align="llrrl")


def write_baseline(runs: pd.DataFrame, tolerance: float) -> tuple[str, list[str]]:
    """A baseline from the runs: every optimizer's mean, every delta to the task's baseline optimizer.

    Seeds without a completed run are left out, and said so in the returned warnings.
    """
    tasks: dict[str, Any] = {}
    warnings = []
    for task, group in runs.groupby("task", sort=True):
        optimizers, means = {}, {}
        for label, sel in group.groupby("label", sort=True):
            finals = stats.per_seed(runs, task, label)
            left_out = sel[~sel["seed"].isin(finals.index)]
            warnings += [f"{task} {label} seed {r.seed} is {r.status}: left out" for r in left_out.itertuples()]
            if len(finals):
                means[label] = float(finals.mean())
                optimizers[label] = {"value": round(means[label], DECIMALS), "tolerance": tolerance,
                                     "seeds": [int(s) for s in finals.index]}
        if not optimizers:
            continue
        base = paper.baseline_for(task, optimizers)
        # from the unrounded means, as check computes them, so a fresh baseline always passes
        deltas = {f"{label} - {base}": {"value": round(means[label] - means[base], DECIMALS), "tolerance": tolerance}
                  for label in optimizers if base in optimizers and label != base}
        tasks[task] = {"metric": group["metric"].iloc[0], "optimizers": optimizers,
                       **({"deltas": deltas} if deltas else {})}
    if not tasks:
        raise UsageError("no completed run with a final metric to write a baseline from; rerun the study")
    body = yaml.safe_dump({"schema": SCHEMA, "tasks": tasks}, sort_keys=False, default_flow_style=None)
    return HEADER + body, warnings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a runs folder (<study>/<run_id>/record.json) or one study folder")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--baseline", metavar="FILE", help="baseline YAML to check against (results/baselines/)")
    mode.add_argument("--write-baseline", metavar="FILE", help="write a baseline from these runs instead")
    parser.add_argument("--tolerance", type=float, metavar="X",
                        help="with --write-baseline: the tolerance of every metric and delta, in metric units")


def run(args: argparse.Namespace) -> int:
    """0: every entry holds; 1: a metric or delta is off, or a required run is missing/failed/diverged."""
    if args.write_baseline:
        if args.tolerance is None or args.tolerance < 0:
            raise UsageError("--write-baseline needs --tolerance X (X >= 0, in metric units), e.g. --tolerance 0.5")
        text, warnings = write_baseline(load(args.path).runs, args.tolerance)
        out = Path(args.write_baseline)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"wrote {out}", file=sys.stderr)
        return 0
    baseline = read_baseline(Path(args.baseline))
    records = load(args.path)
    section = check(records.runs, baseline, records.unreadable)
    emit([section])
    return 1 if any(row[-1] == "FAIL" for row in section.rows) else 0
