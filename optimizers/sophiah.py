"""SophiaH (Liu et al., "Sophia: A Scalable Stochastic Second-order Optimizer", 2023, arXiv:2305.14342,
Algorithm 3 with the Hutchinson estimator), on ``pytorch_optimizer.SophiaH`` fed the project's estimator.

The paper's update, every step ``t`` (``k`` = Hessian refresh interval)::

    m_t = β1·m_{t-1} + (1 − β1)·g_t
    if t mod k = 1:  ĥ_t = u ⊙ ∇(⟨∇L, u⟩), u ~ N(0, I);   h_t = β2·h_{t-k} + (1 − β2)·ĥ_t   else h_t = h_{t-1}
    θ_t = θ_{t-1} − η·λ·θ_{t-1}                                       (decoupled weight decay)
    θ_{t+1} = θ_t − η·clip(m_t / max(γ·h_t, ε), c)                    (clip(x, c) = max(min(x, c), −c))

``pytorch_optimizer.SophiaH`` (4.x) computes ``θ −= lr·clamp(m / max(h, eps), −p, p)`` and takes the
Hessian estimate from ``step(hessian=...)``. Since ``clip(m/max(γh, ε), c) = clamp(m/max(h, ε/γ), −γc, γc)/γ``,
the paper's (η, γ, ε, c) are passed as ``lr = η/γ``, ``p = γ·c``, ``eps = ε/γ``: ``rho`` (γ), ``clip`` (c)
and ``lr`` (η) keep the paper's meaning in configs and in the schedule. The estimate ``ĥ`` is the signed
mean of ``z ⊙ Hz`` from :class:`optimizers.hutchinson.HutchinsonEstimator` (no ``|·|``, no averaging:
Sophia's ``max(γh, ε)`` handles negative curvature), so probes, seeding and the cross-rank mean (the
``hessian_reduce`` hook) are the project's, and data-parallel runs are supported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytorch_optimizer
import torch
from torch import Tensor

from optimizers.hutchinson import EstimatorHooks, HutchinsonEstimator, Probe, ReduceFn


class SophiaH(EstimatorHooks, pytorch_optimizer.SophiaH):
    """SophiaH with the paper's parameterisation; see the module docstring.

    Args:
        lr: η. betas: (β1, β2). rho: γ. clip: c (the paper clips at 1). eps: ε.
        weight_decay: λ, decoupled (``θ −= η·λ·θ``), as in the paper.
        update_each: k, the Hessian refresh interval (paper: 10).
        n_samples, probe, seed, hessian_reduce: the Hutchinson estimator's (the paper draws Gaussian probes).
    """

    needs_closure: bool = False
    fixed_weight_decay_mode: str = "decoupled"  # how weight_decay acts (the harness checks weight_decay_mode)
    distributed_support: bool = True

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1e-4,
                 betas: tuple[float, float] = (0.965, 0.99), rho: float = 0.04, clip: float = 1.0,
                 eps: float = 1e-12, weight_decay: float = 0.0, *, update_each: int = 10, n_samples: int = 1,
                 probe: Probe = "gaussian", seed: int | None = None,
                 hessian_reduce: ReduceFn | None = None) -> None:
        if not rho > 0.0:
            raise ValueError(f"rho must be > 0, got {rho!r}")
        if not clip > 0.0:
            raise ValueError(f"clip must be > 0, got {clip!r}")
        if not weight_decay >= 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        self.rho = rho
        self.clip = clip
        self.paper_weight_decay = weight_decay
        self.estimator = HutchinsonEstimator(n_samples=n_samples, probe=probe, spatial_average=False, seed=seed,
                                             reduce=hessian_reduce)
        super().__init__(params, lr=lr, betas=tuple(betas), weight_decay=0.0, p=rho * clip, eps=eps / rho,
                         update_period=update_each, num_samples=n_samples, hessian_distribution=probe,
                         foreach=False)
        self.update_each = update_each
        self.step_count = 0
        self._hessian: list[Tensor] | None = None
        self._hessian_taken = False

    def needs_hessian(self, step: int) -> bool:
        """Refresh on 0-based ``step mod k = 0``: the library's ``(step − 1) mod k = 0`` for its 1-based step."""
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
            est = dict(zip(with_grad, self.estimator.raw(with_grad, [p.grad for p in with_grad]), strict=True))
            self._hessian = [est.get(p, torch.zeros_like(p)) for p in params]
            refreshed = True
        self._hessian_taken = True
        for p in params:
            if p.grad is not None and p.grad.requires_grad:
                p.grad = p.grad.detach()
        return refreshed

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.update_hessian()
        if self._hessian is None and self.needs_hessian(self.step_count):
            raise RuntimeError("SophiaH: a refresh step ran without a Hessian estimate")
        paper_lrs = [g["lr"] for g in self.param_groups]
        for group, lr in zip(self.param_groups, paper_lrs, strict=True):
            if self.paper_weight_decay:
                for p in group["params"]:
                    if p.grad is not None:
                        p.mul_(1.0 - lr * self.paper_weight_decay)
            group["lr"] = lr / self.rho
        try:
            super().step(hessian=self._hessian)
        finally:
            for group, lr in zip(self.param_groups, paper_lrs, strict=True):
                group["lr"] = lr
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
