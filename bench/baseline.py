"""The CI baseline file (schema 2): one study's per-seed results, each cell's config, the code and the platform.

Per-seed values (not means with a hand-set tolerance) let `bench check` measure the seed noise it must tolerate;
the config of every cell lets it refuse a study that is not the baseline's; code and platform say what produced it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from bench.errors import UsageError
from bench.fingerprint import digest, study_config

SCHEMA = 2
DECIMALS = 4  # per-seed values are written, and compared, at this resolution
MIN_SEEDS = 2  # a seed SD needs two seeds
# The comparisons the harness exists to answer; guarded wherever both optimizers are in the baseline.
GUARDED_DELTAS = (("adahessian", "adam"), ("adahessian", "sgd"))
REGENERATE = "make ci-baseline"
HEADER = f"""\
# bench check baseline (schema {SCHEMA}). Written by `bench check RUNS --write-baseline FILE` from real runs
# (`{REGENERATE}` for this project's CI study); do not edit numbers by hand.
#
# code / platform:  git sha of the runs, device class and torch version they ran on
# config:           semantic config keys (the run_id's, minus seed) shared by every entry
# tasks:
#   <task>:
#     metric, mode:  primary metric and its direction (max: higher is better)
#     config:        keys shared by the task's entries beyond the study-wide ones
#     optimizers:
#       <label>:     optimizer as reports label it (adahessian@2 = Hessian every 2 steps)
#         fingerprint: digest of the entry's full config (study + task + entry keys)
#         config:    the entry's own keys
#         seeds:     {{seed: final metric}} of each completed run
#     deltas:        guarded differences "A - B", taken per seed over the seeds both ran
"""


@dataclass(frozen=True)
class Cell:
    """One (task, optimizer label) of a study: its config (semantic, minus seed, flat) and per-seed finals."""

    config: dict[str, Any]
    seeds: dict[int, float]

    @property
    def fingerprint(self) -> str:
        return digest(self.config)


@dataclass(frozen=True)
class TaskResult:
    metric: str
    higher_is_better: bool
    cells: dict[str, Cell]
    deltas: tuple[tuple[str, str], ...] = ()

    def entries(self) -> dict[str, dict[int, float]]:
        """Every guarded entry's per-seed values: each label's, then each delta's (paired by seed)."""
        out = {label: cell.seeds for label, cell in self.cells.items()}
        for a, b in self.deltas:
            sa, sb = self.cells[a].seeds, self.cells[b].seeds
            out[f"{a} - {b}"] = {s: round(sa[s] - sb[s], DECIMALS) for s in sorted(set(sa) & set(sb))}
        return out


@dataclass(frozen=True)
class Study:
    tasks: dict[str, TaskResult]
    code: dict[str, Any] = field(default_factory=dict)
    platform: dict[str, Any] = field(default_factory=dict)

    def entry_count(self) -> int:
        return sum(len(t.cells) + len(t.deltas) for t in self.tasks.values())


# ---- from run records ------------------------------------------------------------------------------------

def records(runs: pd.DataFrame) -> dict[Any, dict[str, Any]]:
    """Each run's record document, by the runs frame's index (configs and envs are not in the frame)."""
    return {rid: json.loads(Path(path).read_text()) for rid, path in runs["path"].items()}


def run_configs(docs: dict[Any, dict[str, Any]], runs: pd.DataFrame) -> pd.Series:
    """Each run's flat study config (semantic config minus seed)."""
    out = {}
    for rid in runs.index:
        try:
            out[rid] = study_config(docs[rid]["config"])
        except (KeyError, TypeError):
            raise UsageError(f"{runs.at[rid, 'path']}: record has no task/optimizer/trainer config; rerun the run") \
                from None
    return pd.Series(out, dtype=object)


def _joined(values: Iterable[Any]) -> str:
    return ", ".join(sorted({str(v) for v in values}))


def provenance(docs: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(code, platform) of the records: git sha and dirtiness; device class and torch version (joined if mixed)."""
    envs = [doc.get("env") or {} for doc in docs]
    code = {"git_sha": _joined(e.get("git_sha") or "unknown" for e in envs),
            "dirty": any(bool(e.get("dirty")) for e in envs)}
    return code, {"device": _joined(e.get("gpu") or "cpu" for e in envs),
                  "torch": _joined(e.get("torch") or "unknown" for e in envs)}


def finals(runs: pd.DataFrame) -> dict[int, float]:
    """Final metric per seed of the completed runs in `runs`, at DECIMALS (a seed run twice is averaged)."""
    done = runs[runs["status"] == "completed"].dropna(subset=["final"])
    return {int(s): round(float(v), DECIMALS) for s, v in done.groupby("seed")["final"].mean().items()}


def differing(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """'key a -> b' for every key whose value differs (absent shows as '-')."""
    return [f"{k} {a.get(k, '-')} -> {b.get(k, '-')}" for k in sorted(set(a) | set(b))
            if a.get(k, "-") != b.get(k, "-")]


def measure(runs: pd.DataFrame) -> tuple[Study, list[str]]:
    """The study as a baseline: cells with >= MIN_SEEDS completed seeds, and the guarded deltas among them."""
    docs = records(runs)
    configs, warnings, tasks = run_configs(docs, runs), [], {}
    for task, group in runs.groupby("task", sort=True):
        cells = {}
        for label, sel in group.groupby("label", sort=True):
            distinct = {digest(c): c for c in configs[sel.index]}
            if len(distinct) > 1:
                first, second = list(distinct.values())[:2]
                raise UsageError(f"{task} {label}: runs of {len(distinct)} different configs ("
                                 f"{'; '.join(differing(first, second)[:4])}); a baseline entry needs one config: "
                                 f"pass one study's folder")
            warnings += [f"{task} {label} seed {r.seed} is {r.status}: left out"
                         for r in sel.itertuples() if r.status != "completed"]
            seeds = finals(sel)
            if len(seeds) < MIN_SEEDS:
                warnings.append(f"{task} {label}: {len(seeds)} completed seed(s); a seed-noise estimate needs "
                                f">= {MIN_SEEDS}: left out")
                continue
            cells[label] = Cell(next(iter(distinct.values())), seeds)
        deltas = tuple((a, b) for a, b in GUARDED_DELTAS if a in cells and b in cells
                       and len(set(cells[a].seeds) & set(cells[b].seeds)) >= MIN_SEEDS)
        if cells:
            tasks[task] = TaskResult(group["metric"].iloc[0], group["mode"].iloc[0] != "min", cells, deltas)
    if not tasks:
        raise UsageError(f"no optimizer with >= {MIN_SEEDS} completed seeds to write a baseline from; run more seeds")
    code, platform = provenance(docs.values())
    return Study(tasks, code, platform), warnings


# ---- the file --------------------------------------------------------------------------------------------

class _Flow(dict):
    """A mapping written on one line (per-seed values)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Flow, lambda d, data: d.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True))
_Dumper.add_representer(list, lambda d, data: d.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True))


def _shared(configs: list[dict[str, Any]]) -> dict[str, Any]:
    """The keys every config has, with one value."""
    first, *rest = configs
    return {k: v for k, v in first.items() if all(k in c and c[k] == v for c in rest)}


def dump(study: Study) -> str:
    """The baseline file's text; configs are factored into study-wide, per-task and per-entry keys."""
    common = _shared([c.config for t in study.tasks.values() for c in t.cells.values()])
    tasks = {}
    for name, task in study.tasks.items():
        mine = {k: v for k, v in _shared([c.config for c in task.cells.values()]).items() if k not in common}
        own = {label: {k: v for k, v in cell.config.items() if k not in common and k not in mine}
               for label, cell in task.cells.items()}
        tasks[name] = {
            "metric": task.metric, "mode": "max" if task.higher_is_better else "min", "config": mine,
            "optimizers": {label: {"fingerprint": cell.fingerprint, "config": own[label], "seeds": _Flow(cell.seeds)}
                           for label, cell in task.cells.items()},
            "deltas": [f"{a} - {b}" for a, b in task.deltas],
        }
    doc = {"schema": SCHEMA, "code": study.code, "platform": study.platform, "config": common, "tasks": tasks}
    return HEADER + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)


def _fail(path: Path, what: str) -> UsageError:
    return UsageError(f"{path}: {what}; regenerate the baseline from real runs ({REGENERATE}, docs/reports.md)")


def load_doc(path: Path) -> dict[str, Any]:
    """The file as YAML, with a known schema (1 or 2)."""
    if not path.is_file():
        raise UsageError(f"{path}: no such baseline file; write one with `bench check RUNS --write-baseline {path}` "
                         f"({REGENERATE} for the CI study)")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise _fail(path, f"not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(doc, dict) or doc.get("schema") not in (1, SCHEMA):
        raise _fail(path, f"expected a mapping with schema: {SCHEMA}")
    return doc


def _mapping(path: Path, where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, f"{where} must be a mapping")
    return value


def _seeds(path: Path, where: str, value: Any) -> dict[int, float]:
    ok = isinstance(value, dict) and len(value) >= MIN_SEEDS and all(
        isinstance(s, int) and not isinstance(s, bool) and isinstance(v, (int, float)) and not isinstance(v, bool)
        and math.isfinite(v) for s, v in value.items())
    if not ok:
        raise _fail(path, f"{where} must map >= {MIN_SEEDS} integer seeds to finite numbers")
    return {int(s): float(v) for s, v in value.items()}


def _task(path: Path, name: str, spec: Any, common: dict[str, Any]) -> TaskResult:
    spec = _mapping(path, f"tasks.{name}", spec)
    if not isinstance(spec.get("metric"), str) or spec.get("mode") not in ("max", "min"):
        raise _fail(path, f"tasks.{name} needs metric: and mode: max|min")
    shared = {**common, **_mapping(path, f"tasks.{name}.config", spec.get("config", {}))}
    cells = {}
    for label, entry in _mapping(path, f"tasks.{name}.optimizers", spec.get("optimizers")).items():
        where = f"tasks.{name}.optimizers.{label}"
        entry = _mapping(path, where, entry)
        cell = Cell({**shared, **_mapping(path, f"{where}.config", entry.get("config", {}))},
                    _seeds(path, f"{where}.seeds", entry.get("seeds")))
        if entry.get("fingerprint") != cell.fingerprint:
            raise _fail(path, f"{where}.fingerprint {entry.get('fingerprint')!r} does not match its config "
                              f"({cell.fingerprint})")
        cells[str(label)] = cell
    deltas = []
    for key in spec.get("deltas") or []:
        pair = tuple(str(key).split(" - "))
        if len(pair) != 2 or not all(p in cells for p in pair):
            raise _fail(path, f"tasks.{name}.deltas entry {key!r} must be 'A - B' with A and B under optimizers")
        deltas.append(pair)
    return TaskResult(spec["metric"], spec["mode"] == "max", cells, tuple(deltas))


def read(path: Path) -> Study:
    """A schema-2 baseline, validated so the guard never half-runs; schema 1 is refused with how to regenerate."""
    doc = load_doc(path)
    if doc["schema"] == 1:
        raise UsageError(f"{path}: baseline schema 1 (means with a hand-set tolerance, no per-seed values or "
                         f"config) is no longer read; regenerate it from real runs: {REGENERATE}")
    common = _mapping(path, "config", doc.get("config", {}))
    tasks = {str(name): _task(path, str(name), spec, common)
             for name, spec in _mapping(path, "tasks", doc.get("tasks")).items()}
    if not tasks:
        raise _fail(path, "tasks: is empty")
    code, platform = (_mapping(path, key, doc.get(key, {})) for key in ("code", "platform"))
    return Study(tasks, code, platform)
