"""`bench status RUNS [OVERRIDES...]`: where each run of a study stands, read without disturbing it.

A run is running (a live lease: owner, heartbeat, step), completed, diverged, failed, interrupted (a record
or checkpoint is there but no live owner: rerun the same command to resume), unreadable, or not started
(given the sweep's overrides, e.g. `experiment=demo`, the runs it plans that have no folder yet). Nothing here
takes the run lock, so looking never makes a launch skip a run.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from bench.checkpoint import CHECKPOINT_NAME, PREVIOUS_NAME
from bench.config import CONF_DIR
from bench.errors import UsageError
from bench.ownership import OWNER_NAME, lease_alive, read_owner

RECORD_FILE = "record.json"
FINAL = ("completed", "diverged", "failed")
ORDER = ("running", "interrupted", "failed", "diverged", "unreadable", "not started", "completed")


@dataclass
class RunStatus:
    run_id: str
    label: str
    status: str
    detail: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="one study folder (RUNS/<study>), or a runs folder holding several")
    parser.add_argument("overrides", nargs="*", help="the sweep's overrides (e.g. experiment=demo), to also list "
                                                     "the runs it plans that have not started")
    parser.add_argument("--lease-ttl", type=float, default=600.0,
                        help="seconds after which another host's lease counts as expired (trainer.lease_ttl_s)")
    parser.add_argument("--json", action="store_true", help="one JSON document instead of a table")


def run_folders(root: Path) -> list[Path]:
    """Folders that hold (or held) a run: a record, a lease, a lock or a checkpoint, under `root`."""
    markers = (RECORD_FILE, OWNER_NAME, "lock", CHECKPOINT_NAME, PREVIOUS_NAME)
    found = {p.parent for marker in markers for p in root.rglob(marker)}
    return sorted(p for p in found if "_hydra" not in p.parts)


def read_json(path: Path) -> tuple[dict | None, str | None]:
    """(the document, None) or (None, what is wrong); (None, None) when the file does not exist."""
    if not path.exists():
        return None, None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return (data, None) if isinstance(data, dict) else (None, "not a JSON object")


def status_of(folder: Path, ttl_s: float) -> RunStatus:
    record, problem = read_json(folder / RECORD_FILE)
    label = f"{record.get('task')}/{record.get('optimizer')}/seed{record.get('seed')}" if record else "?"
    owner = read_owner(folder)
    if owner is not None and lease_alive(owner, ttl_s):
        return RunStatus(folder.name, label, "running", owner.describe())
    if record is not None and record.get("status") in FINAL:
        detail = record.get("error") or ""
        if record["status"] == "completed":
            metric = record.get("metric") or {}
            value = metric.get("test") if metric.get("test") is not None else metric.get("final")
            detail = f"{metric.get('name')} {value:.4g}" if isinstance(value, (int, float)) else ""
        return RunStatus(folder.name, label, record["status"], detail)
    checkpoints = [n for n in (CHECKPOINT_NAME, PREVIOUS_NAME) if (folder / n).exists()]
    if record is not None or checkpoints or owner is not None:
        steps = (record or {}).get("history") or []
        at = f"last evaluation at step {steps[-1]['step']}" if steps else "no evaluation yet"
        dead = f"; its owner ({owner.host} pid {owner.pid}) is gone" if owner else ""
        kept = ", ".join(checkpoints) or "no checkpoint"
        return RunStatus(folder.name, label, "interrupted", f"resumable: {at}, {kept}{dead}")
    if problem is not None:
        return RunStatus(folder.name, label, "unreadable", f"{folder / RECORD_FILE}: {problem}")
    return RunStatus(folder.name, label, "not started", "folder exists, nothing written yet")


def planned(overrides: list[str]) -> dict[str, tuple[str, str]]:
    """run_id -> (study, label) of every run the sweep `overrides` (with its experiment's params) would run."""
    from bench.records import run_id_of

    parser = OverridesParser.create()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            base = compose("config", overrides=[o for o in overrides if "," not in o], return_hydra_config=True)
            params = dict(base.hydra.sweeper.params or {})
            for override in parser.parse_overrides(overrides):
                params[override.get_key_element()] = ",".join(override.sweep_string_iterator()) \
                    if override.is_sweep_override() else override.get_value_element_as_str()
            keys = list(params)
            values = [str(params[k]).split(",") for k in keys]
            out = {}
            for combo in itertools.product(*values):
                cfg = compose("config", overrides=[f"{k}={v}" for k, v in zip(keys, combo, strict=True)])
                out[run_id_of(cfg)] = (cfg.study, f"{cfg.task.name}/{cfg.optimizer.name}/seed{cfg.seed}")
            return out
    except HydraException as exc:
        raise UsageError(f"cannot compose the sweep {' '.join(overrides)}: {str(exc).splitlines()[0]}") from None


def collect(root: Path, overrides: list[str], ttl_s: float) -> list[RunStatus]:
    if not root.is_dir():
        raise UsageError(f"{root}: no such folder; pass a study folder such as results/runs/demo")
    rows = [status_of(folder, ttl_s) for folder in run_folders(root)]
    if overrides:
        seen = {r.run_id for r in rows}
        rows += [RunStatus(rid, label, "not started", f"planned by the sweep (study {study})")
                 for rid, (study, label) in planned(overrides).items() if rid not in seen]
    return sorted(rows, key=lambda r: (ORDER.index(r.status), r.label, r.run_id))


def run(args: argparse.Namespace) -> int:
    rows = collect(Path(args.path), args.overrides, args.lease_ttl)
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=2))
        return 0
    width = max([len(r.label) for r in rows] + [5])
    for r in rows:
        print(f"{r.run_id:12s}  {r.label:{width}s}  {r.status:11s}  {r.detail}")
    counts = {s: sum(r.status == s for r in rows) for s in ORDER}
    print(", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no runs")
    return 0
