"""PINN references against independent values, the task's residual of each exact solution, and bad input."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tasks.base import DataError
from tasks.pinn.problems import cole_hopf, make_problem
from tasks.pinn.residual import residual
from tasks.pinn.task import PinnTask
from tests.conftest import bench

NU = 0.01 / math.pi


def finite_difference_burgers(t_end: float, n: int = 2001, dt: float = 5e-5) -> tuple[np.ndarray, np.ndarray]:
    """An independent solve: central differences in x (cell Peclet |u| dx / nu < 2), RK2 (Heun) in time."""
    x = np.linspace(-1.0, 1.0, n)
    dx = x[1] - x[0]
    u = -np.sin(np.pi * x)

    def rhs(v: np.ndarray) -> np.ndarray:
        out = np.zeros_like(v)
        out[1:-1] = (-v[1:-1] * (v[2:] - v[:-2]) / (2 * dx) + NU * (v[2:] - 2 * v[1:-1] + v[:-2]) / dx**2)
        return out

    for _ in range(round(t_end / dt)):
        k1 = rhs(u)
        k2 = rhs(u + dt * k1)
        u = u + 0.5 * dt * (k1 + k2)
    return x, u


@pytest.mark.parametrize("t_end", [0.25, 0.5])
def test_burgers_cole_hopf_matches_a_fine_finite_difference_solve(t_end: float) -> None:
    x, u_fd = finite_difference_burgers(t_end)
    chosen = np.array([-0.75, -0.5, -0.25, -0.05, 0.05, 0.25, 0.5, 0.75])
    idx = np.searchsorted(x, chosen)
    u_ch = cole_hopf(x[idx], np.full(len(idx), t_end), NU)
    np.testing.assert_allclose(u_ch, u_fd[idx], atol=2e-3)
    assert np.abs(u_ch).max() > 0.3  # the comparison is of a nontrivial field


def test_burgers_reference_is_odd_converged_and_cached(tmp_path: Path) -> None:
    problem = make_problem("burgers")
    points, values = problem.reference(tmp_path)
    assert points.shape == (256 * 100, 2) and values.shape == (256 * 100,)
    grid = values.reshape(256, 100)
    np.testing.assert_allclose(grid, -grid[::-1], atol=1e-12)  # u(-x, t) = -u(x, t)
    np.testing.assert_allclose(grid[:, 0], -np.sin(np.pi * points[::100, 0]), atol=1e-15)
    np.testing.assert_allclose(cole_hopf(points[:, 0], points[:, 1], NU, nodes=100), values, atol=1e-12)
    cached = list(tmp_path.glob("burgers_cole_hopf_*.npy"))
    assert len(cached) == 1
    np.testing.assert_array_equal(np.load(cached[0]), values)
    assert np.array_equal(problem.reference(tmp_path)[1], values)


def test_analytic_references_are_exact() -> None:
    conv = make_problem("convection", {"beta": 30.0})
    x = np.linspace(0, 2 * np.pi, 7)
    for t in (0.0, 0.3, 1.0):
        pts = np.stack([x, np.full_like(x, t)], axis=1)
        np.testing.assert_allclose(conv.solution(pts), np.sin(x - 30.0 * t), atol=0)
    poisson = make_problem("poisson")
    pts = np.array([[0.5, 0.5], [0.0, 0.3], [1.0, 0.7], [0.25, 0.5]])
    np.testing.assert_allclose(poisson.solution(pts), [1.0, 0.0, 0.0, math.sin(math.pi / 4)], atol=1e-15)


class ColeHopfModule(nn.Module):
    """The Cole-Hopf formula again, in torch (float64, differentiable), to feed the task's residual code."""

    def forward(self, xt: torch.Tensor) -> torch.Tensor:
        z, w = (torch.from_numpy(a) for a in np.polynomial.hermite.hermgauss(200))
        y = xt[:, :1] - torch.sqrt(4 * NU * xt[:, 1:]) * z
        e = -torch.cos(math.pi * y) / (2 * math.pi * NU)
        weight = w * torch.exp(e - e.max(dim=1, keepdim=True).values.detach())
        return (-(weight * torch.sin(math.pi * y)).sum(1) / weight.sum(1)).unsqueeze(-1)


class Analytic(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return self.fn(p[:, 0], p[:, 1]).unsqueeze(-1)


def test_residual_of_each_exact_solution_is_zero() -> None:
    g = torch.Generator().manual_seed(0)
    burgers = make_problem("burgers")
    xt = torch.stack([torch.rand(64, generator=g, dtype=torch.float64) * 2 - 1,
                      0.05 + 0.25 * torch.rand(64, generator=g, dtype=torch.float64)], 1)
    res = residual(burgers, ColeHopfModule(), xt, torch.zeros(64, dtype=torch.float64))
    assert res.abs().max() < 1e-8
    conv = make_problem("convection", {"beta": 30.0})
    xt = torch.rand(64, 2, generator=g, dtype=torch.float64) * torch.tensor([2 * math.pi, 1.0], dtype=torch.float64)
    exact = Analytic(lambda x, t: torch.sin(x - 30.0 * t))
    assert residual(conv, exact, xt, torch.zeros(64, dtype=torch.float64)).abs().max() < 1e-12
    poisson = make_problem("poisson", {"k": 2.0})
    xy = torch.rand(64, 2, generator=g, dtype=torch.float64)
    f = torch.from_numpy(poisson.source(xy.numpy()))
    exact = Analytic(lambda x, y: torch.sin(2 * math.pi * x) * torch.sin(2 * math.pi * y))
    assert residual(poisson, exact, xy, f).abs().max() < 1e-10
    wrong = Analytic(lambda x, y: torch.sin(math.pi * x) * torch.sin(math.pi * y))
    assert residual(poisson, wrong, xy, f).abs().max() > 1.0  # the check can fail


def _task(tmp_path: Path, **overrides: object) -> PinnTask:
    kwargs = {"problem": "burgers", "n_collocation": 16, "n_boundary": 8, "n_initial": 8, "cache_dir": str(tmp_path),
              "device": torch.device("cpu"), "batch_size": 1, "eval_batch_size": 1, "seed": 0} | overrides
    return PinnTask(**kwargs)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"n_collocation": 0}, r"task\.n_collocation=0: must be a positive integer"),
    ({"n_boundary": -5}, r"task\.n_boundary=-5"),
    ({"params": {"mu": 1.0}}, r"task\.params\.mu: burgers has no parameter 'mu'; its parameters are nu"),
    ({"domain": {"x": [1.0, 1.0]}}, r"task\.domain\.x=\[1\.0, 1\.0\]: the interval has zero or negative width"),
    ({"problem": "heat"}, r"task\.problem=heat: unknown"),
    ({"problem": "poisson", "n_initial": 5}, r"poisson has no initial condition"),
    ({"problem": "convection", "domain": {"x": [0, 3]}}, r"multiple of 2\*pi"),
])
def test_bad_input_is_one_data_error(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        _task(tmp_path, **overrides)
    assert "\n" not in str(info.value)


def test_points_are_seeded_fixed_or_resampled(tmp_path: Path) -> None:
    fixed = _task(tmp_path)
    first, second = (next(fixed.train_batches(e)) for e in (0, 1))
    assert first is second and torch.equal(first.interior, _task(tmp_path).fixed.interior)
    assert (first.boundary[:, 0].abs() == 1).all() and (first.initial[:, 1] == 0).all()
    moving = _task(tmp_path, resample=True)
    a, b = (next(moving.train_batches(e)) for e in (0, 1))
    assert not torch.equal(a.interior, b.interior)
    assert len(list(moving.train_batches(0, start=150))) == 50


def test_cli_zero_width_domain_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = bench("run", "task=pinn_poisson", "optimizer=adam", "task.domain.y=[0.5,0.5]", f"paths.runs={tmp_path}",
                 f"task.cache_dir={tmp_path}")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: task.domain.y=[0.5, 0.5]")
