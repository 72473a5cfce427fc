"""Learning-rate schedules, defined on the run's budget so a shorter run keeps the paper's shape."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau

from bench.errors import UsageError

SCHEDULES = ("constant", "multistep", "cosine", "linear", "warmup_invsqrt", "plateau")


def multistep(milestones: list[float], gamma: float, epochs: int, steps_per_epoch: int) -> Callable[[int], float]:
    """Multiply by `gamma` at each milestone, given as a fraction of the epoch budget (0.5, 0.75 of 160
    is the paper's 80 and 120); the drop happens at an epoch boundary, as in the authors' code."""
    if any(not 0 < m < 1 for m in milestones):
        raise UsageError(f"trainer.schedule.milestones={list(milestones)}: expected fractions in (0, 1), "
                         "e.g. [0.5,0.75]")
    boundaries = [int(m * epochs + 0.5) for m in milestones]
    return lambda step: gamma ** sum(step // steps_per_epoch >= b for b in boundaries)


def cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


def linear(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """BERT fine-tuning's schedule (HF `get_linear_schedule_with_warmup`): linear warmup to the peak lr, then
    linear decay to 0 at the end of the budget."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return factor


def warmup_invsqrt(warmup_steps: int, lr: float = 1.0, warmup_init_lr: float | None = None,
                   min_lr: float = 0.0) -> Callable[[int], float]:
    """fairseq's inverse_sqrt, as a factor of the peak `lr`: linear warmup, then lr * sqrt(warmup / step).

    With `warmup_init_lr` (fairseq's --warmup-init-lr) update t < warmup runs at
    warmup_init_lr + t * (lr - warmup_init_lr) / warmup exactly as fairseq's scheduler sets it (update 0 at
    warmup_init_lr); without it, at lr * (t + 1) / warmup. `min_lr` is a floor. (fairseq 0.8's train.py stops
    training once lr < --min-lr instead; at the authors' values, lr / min_lr = 1.5e6, inverse_sqrt would need
    ~2e16 updates to get there, so neither ever acts.)
    """
    if warmup_steps < 1:
        raise UsageError("trainer.schedule.warmup_steps must be >= 1 for warmup_invsqrt, e.g. 4000")
    if warmup_init_lr is not None and not 0 <= warmup_init_lr <= lr:
        raise UsageError(f"trainer.schedule.warmup_init_lr={warmup_init_lr}: must be in [0, lr={lr}]")
    floor = min_lr / lr

    def factor(step: int) -> float:
        if warmup_init_lr is None:
            value = min((step + 1) / warmup_steps, math.sqrt(warmup_steps / (step + 1)))
        elif step < warmup_steps:
            value = (warmup_init_lr + step * (lr - warmup_init_lr) / warmup_steps) / lr
        else:
            value = math.sqrt(warmup_steps / step)
        return max(value, floor)
    return factor


class Schedule:
    """Steps per iteration (lambda schedules) or per evaluation (plateau)."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: Any, epochs: int, steps_per_epoch: int,
                 metric_mode: str) -> None:
        name = cfg.name
        total = epochs * steps_per_epoch
        self.plateau: ReduceLROnPlateau | None = None
        self.per_step: LambdaLR | None = None
        if name == "plateau":
            self.plateau = ReduceLROnPlateau(optimizer, mode=metric_mode, factor=cfg.gamma, patience=cfg.patience)
        elif name == "constant":
            self.per_step = LambdaLR(optimizer, lambda step: 1.0)
        elif name == "multistep":
            self.per_step = LambdaLR(optimizer, multistep(list(cfg.milestones), cfg.gamma, epochs, steps_per_epoch))
        elif name == "cosine":
            self.per_step = LambdaLR(optimizer, cosine(total, cfg.warmup_steps))
        elif name == "linear":
            self.per_step = LambdaLR(optimizer, linear(total, cfg.warmup_steps))
        elif name == "warmup_invsqrt":
            init, floor = cfg.get("warmup_init_lr"), cfg.get("min_lr") or 0.0
            self.per_step = LambdaLR(optimizer, [warmup_invsqrt(cfg.warmup_steps, group["lr"], init, floor)
                                                 for group in optimizer.param_groups])
        else:
            raise UsageError(f"trainer.schedule.name={name}: unknown; choose one of {', '.join(SCHEDULES)}")

    def after_step(self) -> None:
        if self.per_step is not None:
            self.per_step.step()

    def after_eval(self, metric: float) -> None:
        if self.plateau is not None:
            self.plateau.step(metric)

    def state_dict(self) -> dict[str, Any]:
        return (self.plateau or self.per_step).state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        (self.plateau or self.per_step).load_state_dict(state)
