"""Metric sinks: a JSONL file next to the record (always), mirrored to wandb when `logger=wandb`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

METRICS_NAME = "metrics.jsonl"


class MetricsLog:
    """Appends one JSON line per evaluation. A resumed run keeps the first `rows` lines (those its checkpoint
    holds) and drops any written after that checkpoint, so no evaluation appears twice."""

    def __init__(self, run_dir: Path, cfg: DictConfig, run_id: str, rows: int) -> None:
        self.path = run_dir / METRICS_NAME
        run_dir.mkdir(parents=True, exist_ok=True)
        kept = self.path.read_text().splitlines(keepends=True)[:rows] if rows and self.path.exists() else []
        self.path.write_text("".join(kept))
        self.wandb_run = start_wandb(cfg, run_dir, run_id) if cfg.logger.name == "wandb" else None

    def log(self, row: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.wandb_run is not None:
            flat = {k: v for k, v in row.items() if not isinstance(v, dict)}
            flat.update({f"eval/{k}": v for k, v in row.get("metrics", {}).items()})
            self.wandb_run.log(flat, step=row["step"])

    def close(self, status: str) -> None:
        if self.wandb_run is not None:
            self.wandb_run.summary["status"] = status
            self.wandb_run.finish(exit_code=0 if status == "completed" else 1)


def start_wandb(cfg: DictConfig, run_dir: Path, run_id: str) -> Any:
    import wandb

    mode = cfg.logger.mode
    name = f"{cfg.task.name}-{cfg.optimizer.name}-s{cfg.seed}"
    return wandb.init(project=cfg.logger.project, entity=cfg.logger.entity, mode=mode, dir=str(run_dir),
                      id=run_id, resume="allow", group=cfg.study, name=name,
                      config=OmegaConf.to_container(cfg, resolve=True), reinit="finish_previous")
