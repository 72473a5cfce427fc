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
from tasks.pinn.model import INITS, INPUT_SCALINGS, mlp
from tasks.pinn.problems import Problem, default_cache_dir, make_problem
from tasks.pinn.sampling import Grid, Points, draw, draw_grid, grid_interior, grid_tensor

LAYOUTS = ("random", "grid")


def _positive(key: str, value: Any, example: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"task.{key}={value}: must be a positive integer; e.g. task.{key}={example}")
    return value


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise DataError(f"task.{key}={value}: expected one of {', '.join(choices)}")
    return value


def _grid(problem: Problem, given: dict[str, Any] | None, run_seed: int) -> Grid:
    """The ``grid`` layout's spec; it needs a time-dependent problem periodic in x (convection)."""
    if problem.periodic != ("x",) or not problem.time_dependent:
        raise DataError(f"task.points=grid: only the convection problem (periodic in x) has the references' grid "
                        f"layout, not {problem.name}; use task.points=random")
    spec = dict(given or {})
    unknown = sorted(set(spec) - {"x", "t", "x_endpoint", "seed"})
    if unknown:
        raise DataError(f"task.grid.{unknown[0]}: unknown key; the grid has x, t, x_endpoint and seed")
    seed = spec.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise DataError(f"task.grid.seed={seed}: expected an integer >= 0, or null for the run's seed")
    return Grid(x=_positive("grid.x", spec.get("x"), 256), t=_positive("grid.t", spec.get("t"), 100),
                x_endpoint=bool(spec.get("x_endpoint", False)), seed=run_seed if seed is None else seed)


class PinnTask(Task):
    """One PDE problem, a tanh MLP, and the PINN loss; rel-L2 against the reference solution is the metric."""

    metric = Metric("rel_l2", "min")
    throughput_unit = "points"

    def __init__(self, *, problem: str, params: dict[str, Any] | None = None, domain: dict[str, Any] | None = None,
                 n_collocation: int, n_boundary: int | None, n_initial: int | None = 0, resample: bool = False,
                 steps_per_epoch: int = 200, model: dict[str, int] | None = None,
                 weights: dict[str, float] | None = None, cache_dir: str | None = None, synthetic: int = 0,
                 setup: str | None = None, input_scaling: str = "unit_box", init: str = "xavier_normal",
                 points: str = "random", grid: dict[str, Any] | None = None, **runtime: Any) -> None:
        super().__init__(**runtime)
        self.problem = make_problem(problem, params, domain)
        self.setup = setup
        self.input_scaling = _choice("input_scaling", input_scaling, INPUT_SCALINGS)
        self.init = _choice("init", init, INITS)
        self.layout = _choice("points", points, LAYOUTS)
        # `synthetic: N` (bench perf's random items of the real shapes) sets the number of collocation points.
        self.n_collocation = _positive("n_collocation", synthetic or n_collocation, 2000)
        self.grid = None
        if self.layout == "grid":
            self.grid = _grid(self.problem, grid, self.seed)
            for key, value in (("n_boundary", n_boundary), ("n_initial", n_initial)):
                if value is not None:
                    raise DataError(f"task.{key}={value} with task.points=grid: the grid layout takes the whole t = 0 "
                                    f"row and every grid t on the x faces; set task.{key}=null")
            available = len(grid_interior(self.problem, self.grid))
            if self.n_collocation > available:
                raise DataError(f"task.n_collocation={self.n_collocation}: the {self.grid.x} x {self.grid.t} grid "
                                f"has only {available} interior points; lower it or enlarge task.grid")
            if resample:
                raise DataError("task.resample=true with task.points=grid: the grid subsample is drawn once, as in "
                                "the references; use task.points=random to resample")
            self.n_boundary, self.n_initial = self.grid.t, self.grid.x
        else:
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
        self.eval_points = grid_tensor(points, self.device)
        self.reference = grid_tensor(values, self.device)
        self.fixed = None if self.resample else self.points(0)

    def points(self, epoch: int) -> Points:
        if self.grid is not None:
            return draw_grid(self.problem, self.n_collocation, self.grid, self.device)
        return draw(self.problem, self.n_collocation, self.n_boundary, self.n_initial, self.seed, epoch, self.device)

    def build_model(self) -> nn.Module:
        return mlp(self.problem.box.lows, self.problem.box.highs, self.width, self.depth, self.input_scaling,
                   self.init)

    def data_summary(self) -> dict[str, Any]:
        """The setup's name and the point sets it trains on."""
        return {"setup": self.setup, "points": self.layout, "n_collocation": self.n_collocation,
                "n_boundary": self.n_boundary, "n_initial": self.n_initial,
                **({"grid": vars(self.grid)} if self.grid is not None else {})}

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
            u = model(self.eval_points).squeeze(-1).double()
            ref = self.reference.double()
            rel_l2 = float(torch.linalg.vector_norm(u - ref) / torch.linalg.vector_norm(ref))
        with torch.enable_grad():  # the residual needs input derivatives, also at evaluation
            terms = residual.loss_terms(self.problem, model, self.fixed if self.fixed is not None else self.points(0))
            loss = residual.total(terms, self.weights)
        return {"rel_l2": rel_l2, "loss": loss.item(), **{f"loss_{k}": v.item() for k, v in terms.items()}}
