"""Training points: collocation points inside the domain, boundary and initial points with their targets.

Two layouts. ``random``: points drawn uniformly from a CPU generator seeded by (seed, epoch), so the same seed
gives the same points on every device; the fixed set (the common setup) is the epoch-0 draw, `resample` draws a
new set per epoch. ``grid`` (convection, as the references): an x-t grid whose interior (t = t0 and the x faces
removed) is subsampled without replacement by ``numpy.random.RandomState(seed).choice``, the same call and
stream as ``np.random.seed(seed); np.random.choice(...)`` in Krishnapriyan et al.'s ``sample_random``
(``pbc_examples/utils.py``) and Rathore et al.'s ``get_data`` (``src/train_utils.py``); the initial set is the
whole t = t0 row and the periodic pairs are every grid t on the two x faces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from tasks.pinn.problems import Problem


@dataclass
class Points:
    """One full batch. Periodic boundaries pair `boundary` with `partner` (same point on the opposite face)
    and have no target; Dirichlet boundaries have `boundary_target`. Stationary problems have no initial set."""

    interior: Tensor
    interior_source: Tensor
    boundary: Tensor
    boundary_target: Tensor | None
    partner: Tensor | None
    initial: Tensor | None
    initial_target: Tensor | None

    def count(self) -> int:
        sets = (self.interior, self.boundary, self.partner, self.initial)
        return sum(len(s) for s in sets if s is not None)


def _uniform(n: int, problem: Problem, generator: torch.Generator) -> Tensor:
    lows = torch.tensor(problem.box.lows, dtype=torch.float64)
    highs = torch.tensor(problem.box.highs, dtype=torch.float64)
    return lows + (highs - lows) * torch.rand(n, len(lows), generator=generator, dtype=torch.float64)


def _values(problem: Problem, points: Tensor, source: bool = False) -> Tensor:
    array = points.numpy()
    return torch.from_numpy(problem.source(array) if source else problem.solution(array))


def draw(problem: Problem, n_collocation: int, n_boundary: int, n_initial: int, seed: int, epoch: int,
         device: torch.device, dtype: torch.dtype = torch.float32) -> Points:
    """Draw one set of points for (seed, epoch) and move it to `device`."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    interior = _uniform(n_collocation, problem, generator)
    boundary = _uniform(n_boundary, problem, generator)
    # Put each boundary point on a face of a spatial variable: which variable, and its low or high end.
    spatial = [problem.variables.index(v) for v in problem.spatial]
    which = torch.randint(len(spatial), (n_boundary,), generator=generator)
    high = torch.rand(n_boundary, generator=generator) < 0.5
    partner = None
    if problem.periodic:
        # Periodic in every spatial variable that is listed: pair the low face with the high face.
        axis = problem.variables.index(problem.periodic[0])
        boundary[:, axis] = problem.box.lows[axis]
        partner = boundary.clone()
        partner[:, axis] = problem.box.highs[axis]
    else:
        for k, axis in enumerate(spatial):
            on = which == k
            boundary[on, axis] = torch.where(high[on], problem.box.highs[axis], problem.box.lows[axis]).double()
    initial = target = None
    if problem.time_dependent:
        initial = _uniform(n_initial, problem, generator)
        initial[:, problem.variables.index("t")] = problem.box.interval("t")[0]
        target = _values(problem, initial)

    def put(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.to(device=device, dtype=dtype)

    boundary_target = None if partner is not None else _values(problem, boundary)
    return Points(interior=put(interior), interior_source=put(_values(problem, interior, source=True)),
                  boundary=put(boundary), boundary_target=put(boundary_target), partner=put(partner),
                  initial=put(initial), initial_target=put(target))


@dataclass(frozen=True)
class Grid:
    """The ``grid`` layout: ``x`` and ``t`` points over the box (x includes its high end when ``x_endpoint``;
    t always includes both ends) and the seed of the collocation subsample."""

    x: int
    t: int
    x_endpoint: bool
    seed: int


def grid_axes(problem: Problem, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(*problem.box.interval("x"), grid.x, endpoint=grid.x_endpoint)
    return x, np.linspace(*problem.box.interval("t"), grid.t)


def grid_interior(problem: Problem, grid: Grid) -> np.ndarray:
    """Grid points off t = t0 and off both x faces, t-major (numpy meshgrid's default, as both references)."""
    x, t = grid_axes(problem, grid)
    x_inner = x[1:-1] if grid.x_endpoint else x[1:]
    xx, tt = np.meshgrid(x_inner, t[1:])
    return np.stack([xx.ravel(), tt.ravel()], axis=1)


def draw_grid(problem: Problem, n_collocation: int, grid: Grid, device: torch.device,
              dtype: torch.dtype = torch.float32) -> Points:
    """The references' grid points (see the module docstring) for a periodic-in-x, time-dependent problem."""
    interior = grid_interior(problem, grid)
    pick = np.random.RandomState(grid.seed).choice(len(interior), n_collocation, replace=False)
    interior = interior[pick]
    x, t = grid_axes(problem, grid)
    (x_lo, x_hi), (t_lo, _) = problem.box.interval("x"), problem.box.interval("t")
    initial = np.stack([x, np.full_like(x, t_lo)], axis=1)
    boundary = np.stack([np.full_like(t, x_lo), t], axis=1)
    partner = np.stack([np.full_like(t, x_hi), t], axis=1)

    def put(a: np.ndarray) -> Tensor:
        return torch.from_numpy(a).to(device=device, dtype=dtype)

    return Points(interior=put(interior), interior_source=put(problem.source(interior)), boundary=put(boundary),
                  boundary_target=None, partner=put(partner), initial=put(initial),
                  initial_target=put(problem.solution(initial)))


def grid_tensor(points: np.ndarray, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.from_numpy(points).to(device=device, dtype=dtype)
