"""Run records as pandas frames: one row per run, one row per eval, so reports never walk JSON by hand."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import UsageError
from bench.fingerprint import study_config

RECORD_FILE = "record.json"  # the name bench.records writes; not imported, to keep torch out of reports
SCHEMA = 1
# A run that also scores another column of a paper table is a row of that task too: GLUE's MNLI trains once and
# scores both dev sets (tasks/glue), so a glue_mnli_m run's `accuracy_mm` is its glue_mnli_mm result, unless a
# glue_mnli_mm run of the same study, optimizer and seed exists.
COMPANIONS = {"glue_mnli_m": ("glue_mnli_mm", "accuracy_mm")}


@dataclass(frozen=True)
class RecordSet:
    """`runs`: one row per run (index `rid`); `history`: one row per eval, keyed by `rid`. A run's `name` is its
    optimizer as label_of() names it; its `label` adds the config keys that set it apart from runs of the same
    name on its task (config_labels), so that reports never pool different configs."""

    root: Path
    runs: pd.DataFrame
    history: pd.DataFrame
    unreadable: list[str] = field(default_factory=list)  # one line per record that could not be read


def label_of(optimizer: str, update_each: int, fraction: float = 1.0) -> str:
    """The optimizer as reports name it: `adahessian@2` when the Hessian is refreshed every 2 steps,
    `adahessian@2/f0.25` when it is estimated from a quarter of the batch (as `bench perf` names them)."""
    every = f"@{update_each}" if update_each > 1 or fraction < 1 else ""
    return f"{optimizer}{every}" + (f"/f{fraction:g}" if fraction < 1 else "")


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _run_row(rec: dict[str, Any], path: Path) -> dict[str, Any]:
    config = rec.get("config") or {}
    task_cfg, opt_cfg = config.get("task") or {}, config.get("optimizer") or {}
    switch_to = (config.get("trainer") or {}).get("switch_to")
    switched = f"→{switch_to}" if switch_to else ""  # adam→lbfgs: trainer.switch_to took over mid-run
    update_each = int(opt_cfg.get("update_each") or 1)
    # Only Hessian optimizers (those with update_each) estimate curvature; for the others the fraction is moot.
    fraction = _number((config.get("trainer") or {}).get("hessian_batch_fraction")) if "update_each" in opt_cfg \
        else 1.0
    fraction = 1.0 if math.isnan(fraction) else fraction
    metric, cost, env = rec.get("metric") or {}, rec.get("cost") or {}, rec.get("env") or {}
    return {
        "study": rec.get("study", path.parent.parent.name),
        "run_id": rec.get("run_id", path.parent.name),
        "task": rec["task"],
        "optimizer": rec["optimizer"],
        "update_each": update_each,
        "hessian_batch_fraction": fraction,
        "name": label_of(rec["optimizer"], update_each, fraction) + switched,
        "seed": int(rec["seed"]),
        "status": rec["status"],
        "error": rec.get("error") or "",
        "metric": metric.get("name", ""),
        "mode": metric.get("mode", "max"),
        # The run's result: the final test evaluation where the task has one (Task.test), else the last eval.
        "final": _number(metric["test"] if metric.get("test") is not None else metric.get("final")),
        "best": _number(metric.get("best")),
        "steps": _number(cost.get("steps")),
        "wall_s": _number(cost.get("wall_s")),
        "s_per_step": _number(cost.get("s_per_step")),
        "hvp_count": _number(cost.get("hvp_count")),
        "grad_evals": _number(cost.get("grad_evals")),
        "state_bytes": _number(cost.get("optimizer_state_bytes")),
        "items_per_s": _number(cost.get("items_per_s")),
        "data_wait_frac": _number(cost.get("data_wait_frac")),
        "target": _number(task_cfg.get("target")),
        "lr": _significant(_number(opt_cfg.get("lr"))),  # experiment=zoo_lr_sweep
        "lr_scale": _number(config.get("lr_scale")),  # experiment=paper_lr_scaling (Table 6), paper_glue_tune
        "block_size": _number(opt_cfg.get("block_size")),  # AdaHessian's averaging block (Table 7)
        "gpu": env.get("gpu") or "",  # device class of its timings (bench/profile.device_class)
        "host": env.get("host") or "",
        "world_size": int(env.get("world_size") or 1),
        # a run on one of its study's declared tuning seeds chose a hyperparameter (bench/tuning.py)
        "tuning": int(rec["seed"]) in set(config.get("tuning_seeds") or ()),
        "path": str(path),
        "started_at": str(rec.get("started_at") or ""),
        "finished_at": str(rec.get("finished_at") or ""),
    }


def _text(value: Any) -> str:
    """A config value as label text (floats to 6 significant digits, as sweep columns)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return json.dumps(value, sort_keys=True) if isinstance(value, list) else str(value)


def config_labels(names: pd.Series, tasks: pd.Series, configs: list[dict[str, Any]]) -> pd.Series:
    """Each run's label: its name where every run of that name on its task has one semantic config (seed aside),
    else the name and the keys that differ, e.g. `adam lr=0.01` (a key another config lacks reads `unset`)."""
    flats = [{k: _text(v) for k, v in study_config(c).items()} for c in configs]
    labels = names.copy()
    for _, idx in names.groupby([tasks, names]).groups.items():
        group = [flats[names.index.get_loc(i)] for i in idx]
        keys = sorted({k for f in group for k in f})
        differ = [k for k in keys if len({f.get(k, "unset") for f in group}) > 1]
        if not differ:
            continue
        last = [k.rsplit(".", 1)[-1] for k in differ]
        short = [s if last.count(s) == 1 else k for k, s in zip(differ, last, strict=True)]
        for i, flat in zip(idx, group, strict=True):
            labels[i] = " ".join([names[i], *(f"{s}={flat.get(k, 'unset')}" for k, s in zip(differ, short,
                                                                                             strict=True))])
    return labels


def _significant(x: float) -> float:
    """`x` to 6 significant digits, so that lrs one float step apart (3e-4 read back as 0.00030000000000000003)
    fall in one sweep column."""
    return x if math.isnan(x) or x == 0 else float(f"{x:.6g}")


def _companion(rec: dict[str, Any]) -> dict[str, Any] | None:
    """The record as its companion task sees it (COMPANIONS), or None."""
    task, key = COMPANIONS.get(rec["task"], (None, None))
    values = [h["metrics"][key] for h in rec.get("history") or [] if key in (h.get("metrics") or {})]
    if task is None or not values:
        return None
    metric = {**(rec.get("metric") or {}), "name": key, "best": max(values),
              "final": values[-1] if rec["status"] == "completed" else None}
    return {**rec, "task": task, "metric": metric}


def _key(rec: dict[str, Any]) -> tuple[Any, ...]:
    opt = (rec.get("config") or {}).get("optimizer") or {}
    return rec.get("study"), rec["task"], rec["optimizer"], opt.get("update_each"), rec["seed"]


def _history_rows(rid: int, rec: dict[str, Any]) -> list[dict[str, Any]]:
    name = (rec.get("metric") or {}).get("name", "")
    return [
        {
            "rid": rid,
            "step": _number(h.get("step")),
            "epoch": _number(h.get("epoch")),
            "train_loss": _number(h.get("train_loss")),
            "value": _number((h.get("metrics") or {}).get(name)),
            "wall_s": _number(h.get("wall_s")),
        }
        for h in rec.get("history") or []
    ]


def _read(path: Path) -> dict[str, Any]:
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: unreadable run record ({exc}); delete the run folder or rerun") from None
    if not isinstance(rec, dict) or rec.get("schema") != SCHEMA:
        found = rec.get("schema") if isinstance(rec, dict) else type(rec).__name__
        raise UsageError(f"{path}: record schema {found!r}, this bench reads schema {SCHEMA}; rerun the run")
    missing = [k for k in ("task", "optimizer", "seed", "status") if rec.get(k) is None]
    if missing:
        raise UsageError(f"{path}: record lacks {', '.join(missing)}; rerun the run")
    return rec


def load(path: str | Path) -> RecordSet:
    """Read every record.json under `path` (a runs folder, one study, or one run). A damaged record is skipped
    with a one-line warning and listed in `unreadable`, so one bad file never hides a whole study."""
    root = Path(path)
    if not root.exists():
        raise UsageError(f"{root}: no such folder; pass a runs folder (e.g. results/runs) or one study in it")
    files = [root] if root.is_file() else sorted(root.rglob(RECORD_FILE))
    if not files:
        raise UsageError(f"{root}: no {RECORD_FILE} found; run `bench run ...` first or pass another folder")
    records, unreadable = [], []
    for file in files:
        try:
            records.append((file, _read(file)))
        except UsageError as exc:
            unreadable.append(str(exc))
            print(f"warning: skipped {exc}", file=sys.stderr)
    real = {_key(rec) for _, rec in records}
    companions = [(file, c) for file, rec in records if (c := _companion(rec)) is not None]
    records += [(file, c) for file, c in companions if _key(c) not in real]
    run_rows, history_rows = [], []
    for file, rec in records:
        history_rows.extend(_history_rows(len(run_rows), rec))
        run_rows.append(_run_row(rec, file))
    if not run_rows:
        raise UsageError(f"{root}: none of its {len(files)} {RECORD_FILE} files is readable (first: "
                         f"{unreadable[0]}); rerun the runs")
    runs = pd.DataFrame(run_rows).rename_axis("rid")
    configs = [rec.get("config") or {} for _, rec in records]
    runs.insert(runs.columns.get_loc("name") + 1, "label", config_labels(runs["name"], runs["task"], configs))
    runs["config"] = pd.Series(configs, index=runs.index, dtype=object)  # the resolved config, for ledger notes
    history = pd.DataFrame(history_rows, columns=["rid", "step", "epoch", "train_loss", "value", "wall_s"])
    return RecordSet(root=root, runs=runs, history=history, unreadable=unreadable)


def concat(sets: list[RecordSet], root: Path) -> RecordSet:
    """Several studies as one set (e.g. an aggregate across studies): each keeps its own labels, and its run ids
    (`rid`) are shifted past the previous set's so that history rows still point at their run."""
    runs, history, offset = [], [], 0
    for rs in sets:
        runs.append(rs.runs.set_axis(rs.runs.index + offset))
        history.append(rs.history.assign(rid=rs.history["rid"] + offset))
        offset += len(rs.runs)
    return RecordSet(root=root, runs=pd.concat(runs).rename_axis("rid"), history=pd.concat(history, ignore_index=True),
                     unreadable=[line for rs in sets for line in rs.unreadable])
