"""`trainer.switch_at` / `trainer.switch_to`: a second optimizer takes over at a given step (Adam -> L-BFGS,
the PINN literature's standard recipe).

The second optimizer is `conf/optimizer/<switch_to>.yaml`, with the optimizer section of the recipe
`conf/recipe/<task>_<switch_to>.yaml` over it when one exists, then `trainer.switch_optimizer` over both (a study
that matches iteration budgets sets L-BFGS's `max_iter: 1` there: one iteration per step, as the first phase).
It is built on the same parameters at step `switch_at` and gets its own schedule, advanced to that step, so a
schedule keeps its shape over the run's budget. Adam -> AdaHessian is a warm start
(`AdaHessian.load_adam_state`: Adam's first moment and step count).

Every checkpoint at a step >= `switch_at` holds the second optimizer's state; a resumed run therefore switches
before loading it. The phases a record lists follow from the config and the steps done, so they survive a resume.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from bench.config import CONF_DIR, choices
from bench.distributed import Distributed
from bench.errors import UsageError
from bench.optim_factory import build_optimizer
from bench.schedules import Schedule
from tasks.base import Task


class OptimizerSwitch:
    """Owns the switch of one run: when it happens, the optimizer it builds, and the phases for the record."""

    def __init__(self, cfg: DictConfig, task: Task, model: torch.nn.Module, steps_per_epoch: int,
                 dist: Distributed) -> None:
        self.cfg, self.task, self.model, self.steps_per_epoch, self.dist = cfg, task, model, steps_per_epoch, dist
        self.to: str | None = cfg.trainer.get("switch_to")
        self.at_step: int | None = cfg.trainer.get("switch_at")
        self.current: torch.optim.Optimizer | None = None
        self.hvp_before = 0
        if self.to is None:
            return
        if self.to not in choices("optimizer"):
            raise UsageError(f"trainer.switch_to={self.to}: no such optimizer; choose one of "
                             f"{', '.join(choices('optimizer'))}")
        at = self.at_step
        if isinstance(at, bool) or not isinstance(at, int) or at < 0:
            raise UsageError(f"trainer.switch_at={at}: trainer.switch_to={self.to} needs the step to switch at, an "
                             "integer >= 0; e.g. trainer.switch_at=1000")

    @property
    def active(self) -> bool:
        return self.to is not None

    def second_config(self) -> DictConfig:
        cfg = OmegaConf.load(CONF_DIR / "optimizer" / f"{self.to}.yaml")
        recipe = CONF_DIR / "recipe" / f"{self.cfg.task.name}_{self.to}.yaml"
        if recipe.exists():
            cfg = OmegaConf.merge(cfg, OmegaConf.load(recipe).get("optimizer") or {})
        cfg = OmegaConf.merge(cfg, self.cfg.trainer.get("switch_optimizer") or {})
        assert isinstance(cfg, DictConfig)
        return cfg

    def at(self, step: int, optimizer: torch.optim.Optimizer, schedule: Schedule,
           running: bool = False) -> tuple[torch.optim.Optimizer, Schedule]:
        """The optimizer and schedule for `step`: the second pair from `switch_at` on, built once. `running`:
        the switch happens mid-training, so the first optimizer is detached and the second attached to the
        model (before training starts the runner attaches whichever optimizer is in charge)."""
        if not self.active or self.current is not None or step < self.at_step:
            return optimizer, schedule
        trainer = self.cfg.trainer
        second = build_optimizer(self.second_config(), self.task.param_groups(self.model), self.steps_per_epoch,
                                 seed=self.cfg.seed + 1_000_003 * self.dist.rank)
        if isinstance(optimizer, torch.optim.Adam) and hasattr(second, "load_adam_state"):
            second.load_adam_state(optimizer.state_dict())
        self.dist.install_hessian_reduce(second)
        new_schedule = Schedule(second, trainer.schedule, trainer.epochs, self.steps_per_epoch, self.task.metric.mode)
        with warnings.catch_warnings():  # advancing a fresh scheduler before its optimizer's first step is intended
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)`")
            for _ in range(self.at_step):
                new_schedule.after_step()
        if running:
            detach, attach = getattr(optimizer, "detach", None), getattr(second, "attach", None)
            if callable(detach):
                detach()
            if callable(attach):
                attach(self.model)
        self.hvp_before = int(getattr(optimizer, "hvp_count", 0))
        self.current = second
        self.dist.print(f"switch to {self.to} at step {self.at_step}")
        return second, new_schedule

    def live(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """The optimizer in charge now (the second one after the switch)."""
        return self.current if self.current is not None else optimizer

    def annotate(self, record: dict[str, Any], steps: int) -> None:
        """`record["phases"]`: one entry per optimizer that ran, with its [start_step, end_step); Hessian-vector
        products of the first phase added to `cost.hvp_count` (counted in this process)."""
        first = self.cfg.optimizer.name
        if not self.active or steps <= self.at_step:
            record["phases"] = [{"optimizer": first, "start_step": 0, "end_step": steps}]
            return
        record["phases"] = [{"optimizer": first, "start_step": 0, "end_step": self.at_step},
                            {"optimizer": self.to, "start_step": self.at_step, "end_step": steps}]
        record["cost"]["hvp_count"] += self.hvp_before
