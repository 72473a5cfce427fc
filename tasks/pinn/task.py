"""`task=pinn_burgers|pinn_poisson|pinn_convection`: full-batch PINN training on a problem of `problems.py`.

An "epoch" is an evaluation interval of `steps_per_epoch` full-batch steps, so `trainer.epochs` keeps its
meaning (how many evaluations). The task is its own data: no data_dir, nothing to download.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tasks.base import DataError, Metric, Task
from tasks.pinn import residual
from tasks.pinn.model import mlp
from tasks.pinn.problems import default_cache_dir, make_problem
from tasks.pinn.sampling import Points, draw, grid_tensor


def _positive(key: str, value: Any, example: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"task.{key}={value}: must be a positive integer; e.g. task.{key}={example}")
    return value


class PinnTask(Task):
    """One PDE problem, a tanh MLP, and the PINN loss; rel-L2 against the reference solution is the metric."""

    metric = Metric("rel_l2", "min")
    throughput_unit = "points"

    def __init__(self, *, problem: str, params: dict[str, Any] | None = None, domain: dict[str, Any] | None = None,
                 n_collocation: int, n_boundary: int, n_initial: int = 0, resample: bool = False,
                 steps_per_epoch: int = 200, model: dict[str, int] | None = None,
                 weights: dict[str, float] | None = None, cache_dir: str | None = None, synthetic: int = 0,
                 **runtime: Any) -> None:
        super().__init__(**runtime)
        self.problem = make_problem(problem, params, domain)
        # `synthetic: N` (bench perf's random items of the real shapes) sets the number of collocation points.
        self.n_collocation = _positive("n_collocation", synthetic or n_collocation, 2000)
        self.n_boundary = _positive("n_boundary", n_boundary, 200)
        if self.problem.time_dependent:
            self.n_initial = _positive("n_initial", n_initial, 200)
        elif n_initial:
            raise DataError(f"task.n_initial={n_initial}: {self.problem.name} has no initial condition; set "
                            "task.n_initial=0")
        else:
            self.n_initial = 0
        self.resample = bool(resample)
        self.interval = _positive("steps_per_epoch", steps_per_epoch, 200)
        model = dict(model or {})
        self.width = _positive("model.width", model.pop("width", 32), 32)
        self.depth = _positive("model.depth", model.pop("depth", 4), 4)
        if model:
            raise DataError(f"task.model.{next(iter(model))}: unknown key; the PINN model has width and depth")
        self.weights = {"bc": 1.0, "ic": 1.0}
        for key, value in (weights or {}).items():
            name = {"boundary": "bc", "initial": "ic"}.get(key)
            if name is None or isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise DataError(f"task.weights.{key}={value}: expected boundary or initial, a number >= 0")
            self.weights[name] = float(value)
        points, values = self.problem.reference(Path(cache_dir) if cache_dir else default_cache_dir())
        self.grid = grid_tensor(points, self.device)
        self.reference = grid_tensor(values, self.device)
        self.fixed = None if self.resample else self.points(0)

    def points(self, epoch: int) -> Points:
        return draw(self.problem, self.n_collocation, self.n_boundary, self.n_initial, self.seed, epoch, self.device)

    def build_model(self) -> nn.Module:
        return mlp(self.problem.box.lows, self.problem.box.highs, self.width, self.depth)

    def steps_per_epoch(self) -> int:
        return self.interval

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[Points]:
        """The same full batch `steps_per_epoch` times: the fixed set, or this epoch's draw with resample."""
        batch = self.fixed if self.fixed is not None else self.points(epoch)
        for _ in range(start, self.interval):
            yield batch

    def loss(self, model: nn.Module, batch: Points) -> tuple[torch.Tensor, int]:
        return residual.total(residual.loss_terms(self.problem, model, batch), self.weights), batch.count()

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """rel-L2 on the reference grid, and the loss terms on the (epoch-0) training points."""
        with torch.no_grad():
            u = model(self.grid).squeeze(-1).double()
            ref = self.reference.double()
            rel_l2 = float(torch.linalg.vector_norm(u - ref) / torch.linalg.vector_norm(ref))
        with torch.enable_grad():  # the residual needs input derivatives, also at evaluation
            terms = residual.loss_terms(self.problem, model, self.fixed if self.fixed is not None else self.points(0))
            loss = residual.total(terms, self.weights)
        return {"rel_l2": rel_l2, "loss": loss.item(), **{f"loss_{k}": v.item() for k, v in terms.items()}}
