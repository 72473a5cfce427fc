"""Metric sinks: a JSONL file next to the record (always), mirrored to wandb when `logger=wandb`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bench.atomic import StorageError, write_atomic

METRICS_NAME = "metrics.jsonl"


class MetricsLog:
    """Appends one JSON line per evaluation. A resumed run rewrites the file from the history its checkpoint
    holds, so no evaluation appears twice and a damaged file heals."""

    def __init__(self, run_dir: Path, cfg: DictConfig, run_id: str, history: list[dict[str, Any]]) -> None:
        self.path = run_dir / METRICS_NAME
        rows = "".join(json.dumps(row) + "\n" for row in history).encode()
        write_atomic(self.path, lambda f: f.write(rows))
        self.wandb_run = start_wandb(cfg, run_dir, run_id) if cfg.logger.name == "wandb" else None

    def log(self, row: dict[str, Any]) -> None:
        try:
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")
        except OSError as exc:
            raise StorageError.of(exc, self.path) from None
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
