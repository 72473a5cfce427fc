"""Early stopping on an evaluation metric (fairseq's --patience: stop after N evaluations without improvement)."""

from __future__ import annotations

from typing import Any

from bench.errors import UsageError
from tasks.base import Metric


def early_stop(cfg: Any, primary: Metric, history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """`{"epoch", "reason"}` once `cfg.patience` evaluations in a row did not improve on the best one, else None.

    `cfg.metric` (default: the primary metric) may be any key of the evaluation dict, e.g. `loss`, with its
    own `cfg.mode` (default: the primary metric's when it is the primary metric, else `min`)."""
    patience = int(cfg.patience or 0)
    if patience <= 0 or not history:
        return None
    name = cfg.metric or primary.name
    mode = cfg.mode or (primary.mode if name == primary.name else "min")
    if mode not in ("min", "max"):
        raise UsageError(f"trainer.early_stop.mode={mode}: expected min or max")
    if name not in history[-1]["metrics"]:
        raise UsageError(f"trainer.early_stop.metric={name}: the task's evaluation has no such value; it has "
                         f"{', '.join(sorted(history[-1]['metrics']))}")
    values = [row["metrics"][name] for row in history]
    best = values.index(min(values) if mode == "min" else max(values))
    if len(values) - 1 - best < patience:
        return None
    return {"epoch": history[-1]["epoch"], "reason": f"{name} did not improve on epoch {history[best]['epoch']}'s "
                                                      f"{values[best]:.4g} for {patience} evaluations"}
