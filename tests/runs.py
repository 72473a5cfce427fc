"""Run the real runner in-process on a composed config (faster than a subprocess per run)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.config import compose_config
from bench.runner import Runner


def run(runs: Path, *overrides: str) -> dict[str, Any]:
    """Compose like `bench run` does, train, and return the record."""
    cfg = compose_config([f"paths.runs={runs}", "trainer.progress=false", *overrides])
    runner = Runner(cfg)
    runner.run()
    return json.loads((runner.run_dir / "record.json").read_text())


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A record without the fields that depend on the clock, the host or the output folder."""
    history = [{k: v for k, v in row.items() if k != "wall_s"} for row in record["history"]]
    return {"status": record["status"], "metric": record["metric"], "history": history,
            "steps": record["cost"]["steps"], "hvp_count": record["cost"]["hvp_count"], "run_id": record["run_id"]}


def interrupted_then_resumed(monkeypatch: pytest.MonkeyPatch, owner: type, name: str, patched: Callable[..., Any],
                             error: type[BaseException], runs: Path, *overrides: str) -> dict[str, Any]:
    """Run with `owner.name` replaced by `patched` until it raises `error` (a kill, or a preemption that the runner
    checkpoints), then rerun with the original in the same runs folder; return the resumed record."""
    with monkeypatch.context() as m:
        m.setattr(owner, name, patched)
        with pytest.raises(error):
            run(runs, *overrides)
    resumed = run(runs, *overrides)
    assert resumed["resumed"] == 1
    return resumed
