"""Training points: collocation points inside the domain, boundary and initial points with their targets.

Points are drawn uniformly from a CPU generator seeded by (seed, epoch), so the same seed gives the same points
on every device; the fixed set (the common setup) is the epoch-0 draw, `resample` draws a new set per epoch.
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


def grid_tensor(points: np.ndarray, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.from_numpy(points).to(device=device, dtype=dtype)
