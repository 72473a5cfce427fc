"""AGD (Yue et al., "AGD: an Auto-switchable Optimizer using Stepwise Gradient Difference for Preconditioning
Matrix", NeurIPS 2023, arXiv:2312.01658), Algorithm 1, ours (atorch's file is the reference; atorch pulls ~50
packages for it).

Per parameter, ``t`` its step count (``m̂_t = m_t / (1 − β1^t)``, ``m̂_0 = 0``)::

    m_t = β1·m_{t-1} + (1 − β1)·g_t
    s_t = m̂_t − m̂_{t-1}                         (stepwise gradient difference; s_1 = m̂_1)
    b_t = β2·b_{t-1} + (1 − β2)·s_t²
    θ_t = θ_{t-1}·(1 − η·λ)                       (weight_decay_mode="decoupled", atorch's default;
                                                   "l2" adds λ·θ to g instead)
    θ_t = θ_t − η·sqrt(1 − β2^t)/(1 − β1^t) · m_t / max(sqrt(b_t), δ·sqrt(1 − β2^t))

The ``max`` is the auto-switch: where ``sqrt(b̂_t) < δ`` the step is SGD with momentum (``η·m̂_t/δ``), elsewhere
it is adaptive with the gradient-difference preconditioner. ``amsgrad`` keeps the running max of ``b_t``.

``weight_decay`` is λ per unit of lr, as in atorch's AGD (``θ *= 1 − η·λ``): at lr 1e-3 a λ of 5e-4 shrinks the
weights by 5e-7 per step. A setting quoted as a per-step decay (atorch's CIFAR demo, examples/optimizer/main.py,
divides its ``--weight-decay`` by the lr before building AGD: "For AGD, we automatically correct the weight decay
term") is passed as ``per_step / lr``: the recipes do that division (``${div:...}``), the optimizer does not, so it
stays atorch's AGD (tests/test_zoo_agd.py checks it against atorch's file).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer


class AGD(Optimizer):
    """AGD; see the module docstring. Args: lr (η), betas (β1, β2), delta (δ), weight_decay (λ), amsgrad,
    weight_decay_mode ("decoupled" or "l2")."""

    needs_closure: bool = False
    distributed_support: bool = True  # per-element moments of the (already averaged) gradient

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), delta: float = 1e-5, weight_decay: float = 0.0,
                 amsgrad: bool = False, weight_decay_mode: str = "decoupled") -> None:
        if not lr > 0.0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if not delta > 0.0:
            raise ValueError(f"delta must be > 0 (it is the switch threshold), got {delta!r}")
        if weight_decay_mode not in ("l2", "decoupled"):
            raise ValueError(f"weight_decay_mode must be 'l2' or 'decoupled', got {weight_decay_mode!r}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two floats in [0, 1), got {betas!r}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "delta": delta, "weight_decay": weight_decay,
                                  "amsgrad": amsgrad, "weight_decay_mode": weight_decay_mode})

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, delta = group["lr"], group["delta"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_diff_sq"] = torch.zeros_like(p)
                    if group["amsgrad"]:
                        state["max_exp_avg_diff_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m, b = state["exp_avg"], state["exp_avg_diff_sq"]
                grad = p.grad
                if group["weight_decay"] and group["weight_decay_mode"] == "l2":
                    grad = grad + group["weight_decay"] * p
                previous = m / (1.0 - beta1 ** (t - 1)) if t > 1 else torch.zeros_like(m)
                m.lerp_(grad, 1.0 - beta1)
                s = m / (1.0 - beta1**t) - previous
                b.mul_(beta2).addcmul_(s, s, value=1.0 - beta2)
                if group["amsgrad"]:
                    b = torch.maximum(state["max_exp_avg_diff_sq"], b, out=state["max_exp_avg_diff_sq"])
                bias2 = math.sqrt(1.0 - beta2**t)
                denom = b.sqrt().clamp_(min=delta * bias2)
                if group["weight_decay"] and group["weight_decay_mode"] == "decoupled":
                    p.mul_(1.0 - lr * group["weight_decay"])
                p.addcdiv_(m, denom, value=-lr * bias2 / (1.0 - beta1**t))
        return loss
