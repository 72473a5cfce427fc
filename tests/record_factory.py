"""Hand-made schema-1 run records, written as real record.json files, so report tests know every number."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def make_record(*, task: str = "digits", optimizer: str = "adam", seed: int = 0, study: str = "demo",
                status: str = "completed", curve: list[float] | None = None, metric: str = "top1",
                mode: str = "max", target: float | None = None, steps_per_eval: int = 10,
                s_per_step: float = 0.01, hvp_count: int = 0, update_each: int | None = None,
                error: str | None = None, epochs: int | None = None,
                finished_at: str = "2026-11-22T17:01:00+00:00") -> dict[str, Any]:
    """A record whose history evaluates `curve` at epochs 1, 2, ... (step = epoch * steps_per_eval). Its budget,
    config.trainer.epochs, is `epochs` (default: the curve's length; a run that stopped early planned more)."""
    curve = curve or []
    history = [{"step": e * steps_per_eval, "epoch": e, "train_loss": round(1.0 / e, 4),
                "metrics": {metric: v, "loss": round(1.0 / e, 4)}, "lr": 0.01,
                "wall_s": round(e * steps_per_eval * s_per_step, 6)}
               for e, v in enumerate(curve, start=1)]
    steps = len(curve) * steps_per_eval
    opt_cfg: dict[str, Any] = {"name": optimizer, "lr": 0.01}
    if update_each is not None:
        opt_cfg["update_each"] = update_each
    key = f"{study}/{task}/{optimizer}/{update_each}/{seed}"
    final = curve[-1] if curve and status == "completed" else None
    best = (max(curve) if mode == "max" else min(curve)) if curve else None
    return {
        "schema": 1, "run_id": hashlib.sha256(key.encode()).hexdigest()[:12], "study": study, "task": task,
        "optimizer": optimizer, "seed": seed, "status": status, "error": error,
        "metric": {"name": metric, "mode": mode, "final": final, "best": best,
                   "best_step": (curve.index(best) + 1) * steps_per_eval if curve else None},
        "history": history,
        "cost": {"steps": steps, "wall_s": steps * s_per_step, "s_per_step": s_per_step, "hvp_count": hvp_count,
                 "peak_mem_bytes": 1000, "optimizer_state_bytes": 100},
        "env": {"python": "3.11", "torch": "2.14", "cuda": None, "gpu": None, "world_size": 1, "git_sha": "abc",
                "dirty": False, "host": "test"},
        "config": {"task": {"name": task, "target": target}, "optimizer": opt_cfg,
                   "trainer": {"epochs": len(curve) if epochs is None else epochs}, "seed": seed, "study": study},
        "started_at": "2026-11-22T17:00:00+00:00", "finished_at": finished_at,
    }


def write_record(root: Path, *, config: dict[str, Any] | None = None, optimizer_config: dict[str, Any] | None = None,
                 run_id: str | None = None, **kwargs: Any) -> Path:
    """Write one record under root/<study>/<run_id>/record.json and return its path; `config` and
    `optimizer_config` update the record's config (a sweep's swept keys), `run_id` names the run."""
    rec = make_record(**kwargs)
    rec["config"].update(config or {})
    rec["config"]["optimizer"].update(optimizer_config or {})
    rec["run_id"] = run_id or rec["run_id"]
    path = root / rec["study"] / rec["run_id"] / "record.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=1))
    return path


def demo_study(root: Path) -> Path:
    """digits: adam and adahessian, seeds 0-2, target 92; one diverged and one failed run beside them.

    Finals: adam 90, 92, 94 (mean 92, std 2); adahessian 91, 94, 95 (paired diffs 1, 2, 1).
    """
    curves = {"adam": [[80, 88, 90], [82, 92, 92], [85, 93, 94]],
              "adahessian": [[85, 91, 91], [88, 93, 94], [90, 94, 95]]}
    for optimizer, per_seed in curves.items():
        cost = {"s_per_step": 0.03, "hvp_count": 30} if optimizer == "adahessian" else {"s_per_step": 0.01}
        for seed, curve in enumerate(per_seed):
            write_record(root, optimizer=optimizer, seed=seed, curve=curve, target=92.0, **cost)
    write_record(root, optimizer="adahessian", seed=3, status="diverged", curve=[70, 40], target=92.0,
                 error="loss is nan at step 25", s_per_step=0.03, hvp_count=25, epochs=3)
    write_record(root, optimizer="sgd", seed=0, status="failed", curve=[], target=92.0,
                 error="CUDA out of memory")
    return root / "demo"
