"""K-FAC (Martens & Grosse, ICML 2015; convolutions: Grosse & Martens, ICML 2016) with module hooks, following
alecwangcq/KFAC-Pytorch (optimizers/kfac.py and utils/kfac_utils.py at 25e6dbe; its main.py's CIFAR-10 defaults
are conf/optimizer/kfac.yaml's). tests/test_zoo_kfac.py checks 20 steps against a transcription of that code.

For each ``nn.Linear`` / ``nn.Conv2d`` whose weight this optimizer holds, :meth:`KFAC.attach` installs a
forward hook that keeps the layer input ``a`` and hooks the output tensor for ``g``, the gradient w.r.t. it.
On every ``factor_every``-th step, with ``ã`` the input (conv: unfolded patches, one row per output location)
with a 1 appended when the layer has a bias, ``N`` the batch size and ``L`` the output locations (1 for Linear)::

    A_new = (1/(N·L²)) Σ_{n,l} ã ãᵀ            G_new = (L/N) Σ_n Σ_l (N·g_{n,l})(N·g_{n,l})ᵀ

(``N·g`` is the per-example loss gradient when the loss is a batch mean.) ``A_new ⊗ G_new`` equals
``curvlinops.KFACLinearOperator(fisher_type="empirical", kfac_approx="expand", separate_weight_and_bias=False)``
on one batch (tests/test_kfac_curvlinops.py); the split of the ``1/L`` between the two factors is the reference's
(curvlinops puts ``A·L`` and ``G/L``), which matters only against the identity the factors start from.
Factors are running averages ``F = ε·F + (1 − ε)·F_new`` (``ε = stat_decay``). Every ``inverse_every`` steps
``A = Q_A diag(d_A) Q_Aᵀ`` and ``G = Q_G diag(d_G) Q_Gᵀ`` (eigenvalues ≤ 1e-10 set to 0, as the reference); the
update of a layer with gradient matrix ``V = [∇W, ∇b]`` (out × in[+1]) is the damped Kronecker inverse
``(A ⊗ G + λI)⁻¹ vec V = vec(Q_G [(Q_Gᵀ V Q_A) / (d_G d_Aᵀ + λ)] Q_Aᵀ)``. All preconditioned gradients are then
scaled by ``ν = min(1, sqrt(kl_clip / (lr² Σ ⟨U, V⟩)))`` (the trust region of Ba et al. 2017) and applied with
SGD momentum and L2 weight decay; parameters outside those layers (BatchNorm) take the plain SGD-momentum step.

Against the reference, by default:

- ``factor_init="identity"`` (the reference): the factors start at ``I``, so the first factor step gives
  ``ε·I + (1 − ε)·F_new``; ``"first_batch"`` starts them at the first batch's ``F_new`` (no prior).
- ``weight_decay_from=None`` (the reference): the L2 term joins the update from step ``20·factor_every`` on (the
  reference's ``steps >= 20 * TCov``); an int gives the first step with decay (0: from the start).
- The Fisher is the *empirical* one, a deliberate difference: the reference's optimizer class takes its ``G``
  from whatever backward runs on a factor step, and its main.py runs an extra backward on labels sampled from the
  model's softmax (the true Fisher). The runner takes one backward of the task's own loss per step and knows no
  task's likelihood, so ``G`` here comes from that backward on the true labels.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

LAYERS = (nn.Linear, nn.Conv2d)
FactorInit = Literal["identity", "first_batch"]
FACTOR_INITS: tuple[str, ...] = ("identity", "first_batch")
EIGEN_FLOOR = 1e-10  # eigenvalues of A and G at or below this count as 0 (the reference's threshold)


def input_factor(module: nn.Module, a: Tensor) -> Tensor:
    """``(1/(N·L²)) Σ ã ãᵀ`` for the layer input ``a`` (conv: unfolded patches; ``a.shape[0]`` is N·L)."""
    locations = 1
    if isinstance(module, nn.Conv2d):
        patches = nn.functional.unfold(a, module.kernel_size, dilation=module.dilation, padding=module.padding,
                                       stride=module.stride)  # (N, C·kh·kw, L)
        locations = patches.shape[2]
        a = patches.transpose(1, 2).reshape(-1, patches.shape[1])
    if module.bias is not None:
        a = torch.cat([a, a.new_ones(a.shape[0], 1)], dim=1)
    return a.T @ a / (a.shape[0] * locations)


def output_factor(module: nn.Module, g: Tensor) -> Tensor:
    """``(L/N) Σ_n Σ_l (N·g)(N·g)ᵀ`` for the gradient ``g`` w.r.t. the layer output of a batch-mean loss."""
    n = g.shape[0]
    locations = 1
    if isinstance(module, nn.Conv2d):
        locations = g.shape[2] * g.shape[3]
        g = g.movedim(1, -1).reshape(-1, g.shape[1])
    g = g * n
    return g.T @ g * (locations / n)


def gradient_matrix(module: nn.Module) -> Tensor:
    v = module.weight.grad.reshape(module.weight.shape[0], -1)
    return torch.cat([v, module.bias.grad[:, None]], dim=1) if module.bias is not None else v


class KFAC(Optimizer):
    """K-FAC; see the module docstring. Call :meth:`attach` with the model before the first step.

    Args:
        lr, momentum, weight_decay: the SGD step on the preconditioned gradient.
        damping: λ added to the eigenvalues of ``A ⊗ G``. stat_decay: ε of the factor averages.
        factor_every: steps between factor updates. inverse_every: steps between eigendecompositions.
        kl_clip: trust-region bound on ``lr² Σ ⟨U, V⟩`` (0 disables).
        factor_init: ``"identity"`` (the reference) or ``"first_batch"``.
        weight_decay_from: first step with weight decay; None = ``20·factor_every`` (the reference).
    """

    needs_closure: bool = False
    fixed_weight_decay_mode: str = "l2"  # how weight_decay acts (the harness checks weight_decay_mode)
    distributed_support: bool = False
    distributed_reason: str = ("K-FAC's Kronecker factors come from each rank's own activations and are not "
                               "all-reduced, so every rank would precondition differently")

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 0.0, *, damping: float = 1e-3, stat_decay: float = 0.95,
                 factor_every: int = 10, inverse_every: int = 100, kl_clip: float = 1e-2,
                 factor_init: FactorInit = "identity", weight_decay_from: int | None = None) -> None:
        if not damping > 0.0:
            raise ValueError(f"damping must be > 0, got {damping!r}")
        if not 0.0 <= stat_decay < 1.0:
            raise ValueError(f"stat_decay must be in [0, 1), got {stat_decay!r}")
        for name, value in (("factor_every", factor_every), ("inverse_every", inverse_every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if factor_init not in FACTOR_INITS:
            raise ValueError(f"factor_init must be one of {FACTOR_INITS}, got {factor_init!r}")
        if weight_decay_from is not None and (isinstance(weight_decay_from, bool)
                                              or not isinstance(weight_decay_from, int) or weight_decay_from < 0):
            raise ValueError(f"weight_decay_from must be None (20 x factor_every) or an int >= 0, "
                             f"got {weight_decay_from!r}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})
        self.damping, self.stat_decay, self.kl_clip = damping, stat_decay, kl_clip
        self.factor_every, self.inverse_every = factor_every, inverse_every
        self.factor_init = factor_init
        self.weight_decay_from = 20 * factor_every if weight_decay_from is None else weight_decay_from
        self.step_count = 0
        self.precond_time_s = 0.0
        self.modules: list[nn.Module] = []
        self._handles: list[Any] = []
        self._inputs: dict[nn.Module, Tensor] = {}

    def attach(self, model: nn.Module) -> None:
        """Hook every Linear/Conv2d whose weight this optimizer holds (once; again after a detach)."""
        self.detach()
        mine = {id(p) for g in self.param_groups for p in g["params"]}
        self.modules = [m for m in model.modules() if isinstance(m, LAYERS) and id(m.weight) in mine]
        for m in self.modules:
            self._handles.append(m.register_forward_hook(self._on_forward))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._inputs = [], {}

    def _collecting(self, module: nn.Module) -> bool:
        return module.training and torch.is_grad_enabled() and self.step_count % self.factor_every == 0

    def _on_forward(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        """On a factor step, keep the input and catch the gradient w.r.t. the output as it passes."""
        if self._collecting(module) and output.requires_grad:
            self._inputs[module] = inputs[0].detach()
            output.register_hook(lambda grad: self._update_factors(module, grad))

    def _update_factors(self, module: nn.Module, grad_out: Tensor) -> None:
        a = self._inputs.pop(module, None)
        if a is None:
            return
        start = time.perf_counter()
        with torch.no_grad():
            state = self.state[module.weight]
            for key, new in (("A", input_factor(module, a)), ("G", output_factor(module, grad_out.detach()))):
                if key not in state and self.factor_init == "first_batch":
                    state[key] = new
                    continue
                if key not in state:
                    state[key] = torch.eye(new.shape[0], dtype=new.dtype, device=new.device)
                state[key].mul_(self.stat_decay).add_(new, alpha=1.0 - self.stat_decay)
        self.precond_time_s += time.perf_counter() - start

    @torch.no_grad()
    def _precondition(self) -> dict[Tensor, Tensor]:
        """The damped Kronecker-inverse gradient of every hooked layer (weight and bias parts)."""
        updates: dict[Tensor, Tensor] = {}
        for m in self.modules:
            if m.weight.grad is None:
                continue
            state = self.state[m.weight]
            if "A" not in state:
                raise RuntimeError("KFAC: a layer has no Kronecker factors; call attach(model) before training "
                                   "and take the first step on a training-mode forward/backward")
            if self.step_count % self.inverse_every == 0 or "QA" not in state:
                state["dA"], state["QA"] = torch.linalg.eigh(state["A"])
                state["dG"], state["QG"] = torch.linalg.eigh(state["G"])
                for key in ("dA", "dG"):
                    state[key].masked_fill_(state[key] <= EIGEN_FLOOR, 0.0)
            v = gradient_matrix(m)
            u = state["QG"].T @ v @ state["QA"]
            u = state["QG"] @ (u / (state["dG"][:, None] * state["dA"][None, :] + self.damping)) @ state["QA"].T
            if m.bias is not None:
                updates[m.weight], updates[m.bias] = u[:, :-1].reshape_as(m.weight), u[:, -1].clone()
            else:
                updates[m.weight] = u.reshape_as(m.weight)
        return updates

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        start = time.perf_counter()
        updates = self._precondition()
        if self.kl_clip > 0 and updates:
            lr = self.param_groups[0]["lr"]
            vg = sum(float((u * p.grad).sum()) for p, u in updates.items()) * lr * lr
            nu = min(1.0, math.sqrt(self.kl_clip / vg)) if vg > 0 else 1.0
            for u in updates.values():
                u.mul_(nu)
        self.precond_time_s += time.perf_counter() - start
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = updates.get(p, p.grad).clone()
                if group["weight_decay"] and self.step_count >= self.weight_decay_from:
                    d.add_(p, alpha=group["weight_decay"])
                if group["momentum"]:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = d.clone()
                    else:
                        state["momentum_buffer"].mul_(group["momentum"]).add_(d)
                    d = state["momentum_buffer"]
                p.add_(d, alpha=-group["lr"])
        self.step_count += 1
        return loss

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["kfac"] = {"step_count": self.step_count}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sd = dict(state_dict)
        self.step_count = int(sd.pop("kfac")["step_count"])
        super().load_state_dict(sd)
