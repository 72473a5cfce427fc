"""OASIS (Jahani et al., "Doubly Adaptive Scaled Algorithm for Machine Learning Using Second-Order
Information", ICLR 2022, arXiv:2109.05198), Algorithm 1, on the shared Hutchinson estimator.

No official code was found; this transcribes Algorithm 1 (θ₀ = +∞, all norms over every parameter)::

    D_0  = mean over init_samples probes of z ⊙ ∇²F(w_0) z
    D̂_k  = max(|D_k|, α)                                   (elementwise truncation, Eq. 10)
    w_1  = w_0 − η_0 · D̂_0⁻¹ ∇F(w_0)
    for k ≥ 1:
        D_k   = β2 · D_{k-1} + (1 − β2) · z_k ⊙ ∇²F(w_k) z_k      (Eq. 9)
        η_k   = min( sqrt(1 + θ_{k-1}) · η_{k-1},  ‖w_k − w_{k-1}‖_{D̂_k} / (2 ‖∇F(w_k) − ∇F(w_{k-1})‖*_{D̂_k}) )
        w_k+1 = w_k − η_k · D̂_k⁻¹ ∇F(w_k)
        θ_k   = η_k / η_{k-1}

with ``‖x‖_D = sqrt(xᵀ D x)`` and ``‖x‖*_D = sqrt(xᵀ D⁻¹ x)``. In the stochastic setting both gradients of the
Lipschitz estimate are taken on the current mini-batch, so ``lr_mode="adaptive"`` needs ``step(closure)``:
the closure is evaluated a second time at ``w_{k-1}`` (two gradient evaluations per step; BatchNorm running
statistics see both forwards; the harness's closure builds no double-backward graph on that second call).
``lr_mode="fixed"`` uses the group's ``lr`` as η_k (the paper's fixed learning-rate variant) and needs no closure.

Choices beyond Algorithm 1 (which has neither a schedule nor parameter groups), each reducing to it with a constant
schedule and one group:

- Schedule in adaptive mode: the step applied to a group is ``s·η_k`` with ``s = lr_group / lr`` (its current,
  scheduled lr over the constructor's ``lr`` = η₀), while the recursion (η_k, θ_k) runs on the unscaled η.
  So a task's warm-up or decay acts on OASIS as on its peers; Algorithm 1 is the constant-schedule case.
- ``weight_decay`` is an L2 penalty ``(λ/2)‖w‖²`` in the objective: its gradient ``λw`` joins ∇F, and its Hessian
  ``λI`` joins the curvature, so ``λ`` (its exact diagonal; ``z ⊙ λI z`` for Rademacher probes) is added to each
  Hutchinson sample ``z ⊙ ∇²F z`` before D is averaged.
- A parameter that first gets a gradient after step 0 starts its D from that step's sample and, in the Lipschitz
  estimate, has ``w_{k-1} = w_k`` (it has not moved); a parameter without a gradient at ``w_{k-1}`` counts
  its L2 term only.

Every step needs ``backward(create_graph=True)`` (one Hessian-vector product per probe).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from torch import Tensor
from torch.optim import Optimizer

from optimizers.hutchinson import EstimatorHooks, HutchinsonEstimator, Probe, ReduceFn

LrMode = Literal["adaptive", "fixed"]
LR_MODES: tuple[str, ...] = ("adaptive", "fixed")


class OASIS(EstimatorHooks, Optimizer):
    """OASIS, Algorithm 1; see the module docstring.

    Args:
        lr: η₀ (and η_k for ``lr_mode="fixed"``). beta2: β2 of the Hessian-diagonal average. alpha: α.
        lr_mode: ``"adaptive"`` (the local Lipschitz step, needs a closure) or ``"fixed"``.
        init_samples: probes averaged for D₀. n_samples: probes per later step.
        weight_decay: L2 penalty coefficient. probe, seed, hessian_reduce: the Hutchinson estimator's.
    """

    fixed_weight_decay_mode: str = "l2"  # how weight_decay acts (the harness checks weight_decay_mode)
    distributed_support: bool = False
    distributed_reason: str = ("the runner all-reduces gradients inside OASIS's closure, in place and before OASIS "
                               "takes its Hessian-vector product from the local graph; that order is not supported")

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1.0, beta2: float = 0.99,
                 alpha: float = 1e-3, *, lr_mode: LrMode = "adaptive", init_samples: int = 1, n_samples: int = 1,
                 weight_decay: float = 0.0, probe: Probe = "rademacher", seed: int | None = None,
                 hessian_reduce: ReduceFn | None = None) -> None:
        if not lr > 0.0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if not 0.0 <= beta2 < 1.0:
            raise ValueError(f"beta2 must be in [0, 1), got {beta2!r}")
        if not alpha > 0.0:
            raise ValueError(f"alpha must be > 0 (the truncation keeps D̂ invertible), got {alpha!r}")
        if lr_mode not in LR_MODES:
            raise ValueError(f"lr_mode must be one of {LR_MODES}, got {lr_mode!r}")
        if isinstance(init_samples, bool) or not isinstance(init_samples, int) or init_samples < 1:
            raise ValueError(f"init_samples must be an int >= 1, got {init_samples!r}")
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})
        self.beta2 = beta2
        self.alpha = alpha
        self.lr_mode = lr_mode
        self.init_samples = init_samples
        self.estimator = HutchinsonEstimator(n_samples=n_samples, probe=probe, spatial_average=False, seed=seed,
                                             reduce=hessian_reduce)
        self.step_count = 0
        self.eta = lr  # η_k of the recursion (unscaled by the schedule in adaptive mode)
        self.theta = math.inf

    @property
    def needs_closure(self) -> bool:
        return self.lr_mode == "adaptive"

    def needs_hessian(self, step: int) -> bool:
        return True

    def _params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"] if p.grad is not None]

    def _decay(self) -> dict[Tensor, float]:
        return {p: group["weight_decay"] for group in self.param_groups for p in group["params"]}

    def _gradients(self, params: list[Tensor]) -> list[Tensor]:
        """∇F at the current point, aligned with ``params``: p.grad (detached; zero if None) plus λp."""
        decay = self._decay()
        grads = []
        for p in params:
            g = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
            if decay[p]:
                g.add_(p.detach(), alpha=decay[p])
            grads.append(g)
        return grads

    @torch.no_grad()
    def _update_diagonal(self, params: list[Tensor]) -> list[Tensor]:
        """D_k (Eq. 9; D_0 from ``init_samples`` probes) and the truncated D̂_k (Eq. 10)."""
        first = self.step_count == 0
        n_samples = self.estimator.n_samples
        if first:
            self.estimator.n_samples = self.init_samples
        try:
            est = self.estimator.raw(params, [p.grad for p in params])
        finally:
            self.estimator.n_samples = n_samples
        decay = self._decay()
        d_hat = []
        for p, e in zip(params, est, strict=True):
            if decay[p]:
                e.add_(decay[p])  # the L2 penalty's own curvature λI
            state = self.state[p]
            if "hessian_diag" not in state:
                state["hessian_diag"] = e
            else:
                state["hessian_diag"].mul_(self.beta2).add_(e, alpha=1.0 - self.beta2)
            d_hat.append(state["hessian_diag"].abs().clamp_(min=self.alpha))
        return d_hat

    @torch.no_grad()
    def _adaptive_eta(self, params: list[Tensor], grads: list[Tensor], d_hat: list[Tensor],
                      closure: Callable[[], Any]) -> float:
        """min(sqrt(1 + θ) η_{k-1}, ‖Δw‖_D̂ / (2 ‖Δg‖*_D̂)), Δg on the current batch (closure at w_{k-1})."""
        current = [p.detach().clone() for p in params]
        previous = [self.state[p].get("prev_param", w) for p, w in zip(params, current, strict=True)]
        for p, w in zip(params, previous, strict=True):
            p.copy_(w)
        with torch.enable_grad():
            closure()
        prev_grads = self._gradients(params)
        for p, w in zip(params, current, strict=True):
            p.copy_(w)
            p.grad = None
        dw = torch._foreach_sub(current, previous)
        dg = torch._foreach_sub(grads, prev_grads)
        num = math.sqrt(sum(float((x * x * d).sum()) for x, d in zip(dw, d_hat, strict=True)))
        den = 2.0 * math.sqrt(sum(float((x * x / d).sum()) for x, d in zip(dg, d_hat, strict=True)))
        growth = math.sqrt(1.0 + self.theta) * self.eta
        return min(growth, num / den) if den > 0.0 else growth

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One OASIS step. With a closure it is called first (gradient at w_k, graph kept by the caller's
        create_graph) and, in adaptive mode, again at w_{k-1}; without one ``p.grad`` must carry its graph."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = self._params()
        if not params:
            return loss
        d_hat = self._update_diagonal(params)
        grads = self._gradients(params)
        lr_of = {p: group["lr"] for group in self.param_groups for p in group["params"]}
        if self.lr_mode == "fixed":
            etas = [lr_of[p] for p in params]
            self.eta = etas[0]
        else:
            if self.step_count > 0:
                if closure is None:
                    raise RuntimeError("OASIS lr_mode=adaptive needs step(closure) to take the gradient at the "
                                       "previous iterate on the same batch; pass a closure or use lr_mode=fixed")
                eta = self._adaptive_eta(params, grads, d_hat, closure)
                self.theta = eta / self.eta
                self.eta = eta
            etas = [self.eta * lr_of[p] / self.defaults["lr"] for p in params]  # the schedule's factor
        for p, g, d, eta in zip(params, grads, d_hat, etas, strict=True):
            self.state[p]["prev_param"] = p.detach().clone()
            p.addcdiv_(g, d, value=-eta)
            if p.grad is not None and p.grad.requires_grad:
                p.grad = p.grad.detach()
        self.step_count += 1
        return loss

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["oasis"] = {"step_count": self.step_count, "eta": self.eta, "theta": self.theta,
                       "estimator": self.estimator.state_dict()}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sd = dict(state_dict)
        extra = sd.pop("oasis")
        super().load_state_dict(sd)
        self.step_count, self.eta, self.theta = int(extra["step_count"]), float(extra["eta"]), float(extra["theta"])
        self.estimator.load_state_dict(extra["estimator"])
