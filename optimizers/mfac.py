"""Dense M-FAC (Frantar, Kurtic & Alistarh, "M-FAC: Efficient Matrix-Free Approximations of Second-Order
Information", NeurIPS 2021), the optimizer variant.

The preconditioner is the inverse of the damped empirical Fisher over a sliding window of the last ``m``
gradients ``G = [g_1 … g_m]ᵀ`` (a ring buffer that starts as zeros, as in the authors' ``HInvFastUpMulti``)::

    F = λ·I + (1/m)·Gᵀ G
    F⁻¹ x = (x − Gᵀ (λ·m·I + G Gᵀ)⁻¹ G x) / λ                 (Woodbury)

Each step inserts the new gradient (L2 weight decay added), then steps along
``v = μ·v + (1 − μ)·F⁻¹ g`` (the authors' momentum), ``θ −= lr·v``. The authors solve with a recursive
factorisation built on ``torch.lu(pivot=False)``, which has no CPU kernel; we keep ``G Gᵀ`` up to date (one
row and column per step) and solve ``λ·m·I + G Gᵀ`` by Cholesky, which equals it in exact arithmetic. The whole
solve runs in float64 whatever the parameters' dtype: the Gram matrix, its factorisation, and the products with
the window (read in column chunks of at most 128 MB converted to float64, so the window itself stays in the
parameters' dtype). Measured on digits gradients (results/sweeps/mfac_precision.md) the float32 solve's error
comes from the float32 products ``G x`` and ``Gᵀ y``, not from the m × m factorisation: a float64 m × m part alone
gains 1.4x, float64 products bring it to float32 rounding of the result (3e-8 against 1.5e-5 at λ = 1e-5).
The buffer is ``m × d`` (ResNet-20, m = 1024: about 1.1 GB in fp32); it is reported by
:meth:`MFAC.extra_state_bytes`.

Every parameter must have a gradient at every step: the window holds whole-model gradients, and the authors'
``optim.py`` reads ``p.grad`` of every parameter it holds (it fails on ``None``). A parameter without one is an
error before any state changes, not a zero fed into the window (which would bias the Fisher towards zero in
those coordinates); leave unused parameters out of the optimizer (``requires_grad=False``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

CHUNK_BYTES = 1 << 27  # float64 copy of a column block of the window, per product


class MFAC(Optimizer):
    """Dense M-FAC; see the module docstring.

    Args:
        lr, momentum, weight_decay: the step on the preconditioned gradient (weight decay is L2).
        ngrads: m, gradients in the window (paper and code: 1024). damp: λ (the authors' default 1e-5).
    """

    needs_closure: bool = False
    fixed_weight_decay_mode: str = "l2"  # how weight_decay acts (the harness checks weight_decay_mode)
    distributed_support: bool = True  # the window holds the (already averaged) gradients, the same on every rank

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1e-3, momentum: float = 0.0,
                 weight_decay: float = 0.0, *, ngrads: int = 1024, damp: float = 1e-5) -> None:
        if isinstance(ngrads, bool) or not isinstance(ngrads, int) or ngrads < 1:
            raise ValueError(f"ngrads must be an int >= 1, got {ngrads!r}")
        if not damp > 0.0:
            raise ValueError(f"damp must be > 0, got {damp!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})
        self.momentum, self.ngrads, self.damp = momentum, ngrads, damp
        self.params = [p for g in self.param_groups for p in g["params"]]
        first = self.params[0]
        d = sum(p.numel() for p in self.params)
        self.grads = torch.zeros(ngrads, d, dtype=first.dtype, device=first.device)
        self.dots = torch.zeros(ngrads, ngrads, dtype=torch.float64, device=first.device)
        self.velocity = torch.zeros(d, dtype=first.dtype, device=first.device)
        self.last = 0
        self.precond_time_s = 0.0

    def extra_state_bytes(self) -> int:
        """The gradient window, its Gram matrix and the momentum: kept outside ``opt.state``."""
        return sum(t.numel() * t.element_size() for t in (self.grads, self.dots, self.velocity))

    def _chunks(self) -> range:
        """Column offsets of the window read at a time in float64 (at most 128 MB each)."""
        return range(0, self.grads.shape[1], max(1, CHUNK_BYTES // (8 * self.ngrads)))

    def _window_times(self, x: Tensor) -> Tensor:
        """``G x`` in float64."""
        step = self._chunks().step
        out = torch.zeros(self.ngrads, dtype=torch.float64, device=x.device)
        for s in self._chunks():
            out += self.grads[:, s:s + step].double() @ x[s:s + step].double()
        return out

    def _window_t_times(self, y: Tensor) -> Tensor:
        """``Gᵀ y`` in float64."""
        step = self._chunks().step
        return torch.cat([self.grads[:, s:s + step].double().T @ y for s in self._chunks()])

    def inverse_fisher_times(self, x: Tensor) -> Tensor:
        """``F⁻¹ x`` by Woodbury, with a float64 Cholesky solve of ``λ·m·I + G Gᵀ``."""
        return self._woodbury(x, self._window_times(x))

    def _woodbury(self, x: Tensor, gx: Tensor) -> Tensor:
        """``(x − Gᵀ (λ·m·I + G Gᵀ)⁻¹ G x) / λ`` given ``G x`` (float64), all in float64."""
        gram = self.dots + self.damp * self.ngrads * torch.eye(self.ngrads, dtype=self.dots.dtype,
                                                               device=self.dots.device)
        y = torch.cholesky_solve(gx[:, None], torch.linalg.cholesky(gram))[:, 0]
        return ((x.double() - self._window_t_times(y)) / self.damp).to(x.dtype)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        missing = [i for i, p in enumerate(self.params) if p.grad is None]
        if missing:
            raise RuntimeError(f"M-FAC: parameter(s) {missing} (in param-group order) have no gradient; the gradient "
                               "window needs one for every parameter, as the authors' optim.py does. Leave unused "
                               "parameters out of the optimizer (requires_grad=False)")
        parts = []
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                parts.append((g + group["weight_decay"] * p if group["weight_decay"] else g).reshape(-1))
        g = torch.cat(parts)
        start = time.perf_counter()
        self.grads[self.last] = g
        row = self._window_times(g)
        self.dots[self.last, :] = row
        self.dots[:, self.last] = row
        self.last = (self.last + 1) % self.ngrads
        direction = self._woodbury(g, row)
        self.precond_time_s += time.perf_counter() - start
        if self.momentum:
            direction = self.velocity.mul_(self.momentum).add_(direction, alpha=1.0 - self.momentum)
        offset = 0
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(direction[offset:offset + p.numel()].view_as(p), alpha=-group["lr"])
                offset += p.numel()
        return loss

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["mfac"] = {"grads": self.grads, "dots": self.dots, "velocity": self.velocity, "last": self.last}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sd = dict(state_dict)
        extra = sd.pop("mfac")
        super().load_state_dict(sd)
        for name in ("grads", "dots", "velocity"):
            getattr(self, name).copy_(extra[name])
        self.last = int(extra["last"])
