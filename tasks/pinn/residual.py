"""The PINN loss: the PDE residual by autograd (create_graph, so the loss stays differentiable in the weights,
and AdaHessian's Hessian-vector product goes one order further), plus weighted boundary and initial terms."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from tasks.pinn.problems import Problem
from tasks.pinn.sampling import Points


def grad(outputs: Tensor, inputs: Tensor) -> Tensor:
    """d outputs / d inputs per point (outputs are per-point scalars), keeping the graph."""
    return torch.autograd.grad(outputs.sum(), inputs, create_graph=True)[0]


def burgers(u: Tensor, xt: Tensor, f: Tensor, params: dict[str, float]) -> Tensor:
    du = grad(u, xt)
    u_x, u_t = du[:, 0], du[:, 1]
    u_xx = grad(u_x, xt)[:, 0]
    return u_t + u * u_x - params["nu"] * u_xx


def poisson(u: Tensor, xy: Tensor, f: Tensor, params: dict[str, float]) -> Tensor:
    du = grad(u, xy)
    laplacian = grad(du[:, 0], xy)[:, 0] + grad(du[:, 1], xy)[:, 1]
    return -laplacian - f


def convection(u: Tensor, xt: Tensor, f: Tensor, params: dict[str, float]) -> Tensor:
    du = grad(u, xt)
    return du[:, 1] + params["beta"] * du[:, 0]


RESIDUALS: dict[str, Callable[[Tensor, Tensor, Tensor, dict[str, float]], Tensor]] = {
    "burgers": burgers, "poisson": poisson, "convection": convection}


def residual(problem: Problem, model: nn.Module, points: Tensor, source: Tensor) -> Tensor:
    """The PDE residual at `points` (zero for the exact solution)."""
    points = points.detach().requires_grad_(True)
    u = model(points).squeeze(-1)
    return RESIDUALS[problem.name](u, points, source, problem.params)


def loss_terms(problem: Problem, model: nn.Module, batch: Points) -> dict[str, Tensor]:
    """Mean squared PDE residual, boundary misfit and initial misfit, unweighted."""
    terms = {"pde": residual(problem, model, batch.interior, batch.interior_source).pow(2).mean()}
    u_b = model(batch.boundary).squeeze(-1)
    if batch.partner is not None:
        terms["bc"] = (u_b - model(batch.partner).squeeze(-1)).pow(2).mean()
    else:
        terms["bc"] = (u_b - batch.boundary_target).pow(2).mean()
    if batch.initial is not None:
        terms["ic"] = (model(batch.initial).squeeze(-1) - batch.initial_target).pow(2).mean()
    return terms


def total(terms: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
    return terms["pde"] + sum(weights[k] * v for k, v in terms.items() if k != "pde")
