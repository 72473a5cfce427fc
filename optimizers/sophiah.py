"""SophiaH (Liu et al., "Sophia: A Scalable Stochastic Second-order Optimizer", 2023, arXiv:2305.14342,
Algorithm 3 with the Hutchinson estimator), on the project's Hutchinson estimator.

The paper's update, every step ``t`` (``k`` = Hessian refresh interval)::

    m_t = β1·m_{t-1} + (1 − β1)·g_t
    if t mod k = 1:  ĥ_t = u ⊙ ∇(⟨∇L, u⟩), u ~ N(0, I);   h_t = β2·h_{t-k} + (1 − β2)·ĥ_t   else h_t = h_{t-1}
    θ_t = θ_{t-1} − η·λ·θ_{t-1}                                       (decoupled weight decay)
    θ_{t+1} = θ_t − η·clip(m_t / D_t, c)                              (clip(x, c) = max(min(x, c), −c))

with the denominator ``D_t = max(γ·h_t, ε)`` (``denominator="max"``, the paper's) or ``D_t = γ·max(h_t, 0) + ε``
(``denominator="sum"``, the form of Sassha's SophiaH, LOG-postech/Sassha optimizers/sophiaH.py, whose CIFAR
settings the CIFAR recipes take; the two are up to 2x apart where γ·h is near ε).

Defaults: ``γ = 0.01`` (``rho`` here), SophiaH's scale as pytorch-optimizer's SophiaH gives it (SophiaG's released
0.04 multiplies a token-batch-scaled estimate and is on another scale). The paper's own SophiaH value could not be
retrieved and quoted on this machine: the 0.01 is the library's, not checked against the paper's text.
pytorch-optimizer's SophiaH (a port of the paper's first version, whose update is
``θ −= η'·clip(m / max(h, ε'), ρ)``) defaults to ρ = 0.01 with η' = 6e-2, ε' = 1e-12; since
``η'·clip(m/max(h, ε'), ρ) = η'ρ·clip(m/max(ρh, ρε'), 1)`` that is γ = 0.01, η = 6e-4 here, and
tests/test_zoo_sophiah.py checks the equality over 20 steps. β = (0.96, 0.99), k = 10, ε = 1e-12 and Gaussian
probes are the paper's setup (Section 3.3). The estimate ``ĥ`` is the signed mean of ``z ⊙ Hz`` from
:class:`optimizers.hutchinson.HutchinsonEstimator` (no ``|·|``, no averaging: the denominator handles negative
curvature), so probes, seeding and the cross-rank mean (the ``hessian_reduce`` hook) are the project's, and
data-parallel runs are supported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from torch import Tensor
from torch.optim import Optimizer

from optimizers.hutchinson import EstimatorHooks, HutchinsonEstimator, Probe, ReduceFn

Denominator = Literal["max", "sum"]
DENOMINATORS: tuple[str, ...] = ("max", "sum")


class SophiaH(EstimatorHooks, Optimizer):
    """SophiaH with the paper's parameterisation; see the module docstring.

    Args:
        lr: η. betas: (β1, β2). rho: γ. clip: c (the paper clips at 1). eps: ε.
        weight_decay: λ, decoupled (``θ −= η·λ·θ``), as in the paper.
        denominator: ``"max"`` (the paper's ``max(γh, ε)``) or ``"sum"`` (Sassha's ``γ·max(h, 0) + ε``).
        update_each: k, the Hessian refresh interval (paper: 10).
        n_samples, probe, seed, hessian_reduce: the Hutchinson estimator's (the paper draws Gaussian probes).
    """

    needs_closure: bool = False
    fixed_weight_decay_mode: str = "decoupled"  # how weight_decay acts (the harness checks weight_decay_mode)
    distributed_support: bool = True

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 6e-4,
                 betas: tuple[float, float] = (0.96, 0.99), rho: float = 0.01, clip: float = 1.0,
                 eps: float = 1e-12, weight_decay: float = 0.0, *, denominator: Denominator = "max",
                 update_each: int = 10, n_samples: int = 1, probe: Probe = "gaussian", seed: int | None = None,
                 hessian_reduce: ReduceFn | None = None) -> None:
        if not lr > 0.0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two floats in [0, 1), got {betas!r}")
        if not rho > 0.0:
            raise ValueError(f"rho must be > 0, got {rho!r}")
        if not clip > 0.0:
            raise ValueError(f"clip must be > 0, got {clip!r}")
        if not eps > 0.0:
            raise ValueError(f"eps must be > 0 (it bounds the denominator), got {eps!r}")
        if not weight_decay >= 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        if denominator not in DENOMINATORS:
            raise ValueError(f"denominator must be one of {DENOMINATORS}, got {denominator!r}")
        if isinstance(update_each, bool) or not isinstance(update_each, int) or update_each < 1:
            raise ValueError(f"update_each must be an int >= 1, got {update_each!r}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "rho": rho, "clip": clip, "eps": eps,
                                  "weight_decay": weight_decay})
        self.denominator = denominator
        self.update_each = update_each
        self.estimator = HutchinsonEstimator(n_samples=n_samples, probe=probe, spatial_average=False, seed=seed,
                                             reduce=hessian_reduce)
        self.step_count = 0
        self._hessian: dict[Tensor, Tensor] | None = None
        self._hessian_taken = False

    def needs_hessian(self, step: int) -> bool:
        """Refresh on 0-based ``step mod k = 0`` (the paper's ``t mod k = 1`` for its 1-based t)."""
        return step % self.update_each == 0

    def _params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    @torch.no_grad()
    def update_hessian(self) -> bool:
        """Take ĥ when due (before anything modifies ``p.grad``), then detach the gradients."""
        params = self._params()
        refreshed = False
        if not self._hessian_taken and self.needs_hessian(self.step_count):
            with_grad = [p for p in params if p.grad is not None]
            self._hessian = dict(zip(with_grad, self.estimator.raw(with_grad, [p.grad for p in with_grad]),
                                     strict=True))
            refreshed = True
        self._hessian_taken = True
        for p in params:
            if p.grad is not None and p.grad.requires_grad:
                p.grad = p.grad.detach()
        return refreshed

    def _denominator(self, h: Tensor, rho: float, eps: float) -> Tensor:
        if self.denominator == "max":
            return (h * rho).clamp_(min=eps)
        return h.clamp(min=0.0).mul_(rho).add_(eps)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.update_hessian()
        if self._hessian is None and self.needs_hessian(self.step_count):
            raise RuntimeError("SophiaH: a refresh step ran without a Hessian estimate")
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr = group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["momentum"] = torch.zeros_like(p)
                    state["hessian_moment"] = torch.zeros_like(p)
                if group["weight_decay"]:
                    p.mul_(1.0 - lr * group["weight_decay"])
                m, h = state["momentum"], state["hessian_moment"]
                m.lerp_(p.grad, 1.0 - beta1)
                if self._hessian is not None and p in self._hessian:
                    h.lerp_(self._hessian[p], 1.0 - beta2)
                ratio = m / self._denominator(h, group["rho"], group["eps"])
                p.add_(ratio.clamp_(-group["clip"], group["clip"]), alpha=-lr)
        self._hessian = None
        self._hessian_taken = False
        self.step_count += 1
        return loss

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["sophiah"] = {"step_count": self.step_count, "estimator": self.estimator.state_dict()}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sd = dict(state_dict)
        extra = sd.pop("sophiah")
        super().load_state_dict(sd)
        self.step_count = int(extra["step_count"])
        self.estimator.load_state_dict(extra["estimator"])
