"""Shampoo (Gupta et al. 2018; Anil et al., "Scalable Second Order Optimization for Deep Learning", 2020) as
``pytorch_optimizer.ScalableShampoo``, configured so that no tensor of rank >= 2 silently skips the preconditioner.

For a weight with gradient ``G`` of rank ``k`` (unmerged: ``shape_interpretation=False``), Shampoo keeps one
statistic per dim, ``L_i = β2·L_i + (1 − β2)·G_(i) G_(i)ᵀ`` (``G_(i)``: ``G`` unfolded along dim ``i``; ``L_i``
starts at ``matrix_eps·I``), recomputes ``P_i = L_i^(−1/(2k))`` every ``preconditioning_compute_steps`` steps, and
steps along ``G ×_1 P_1 ⋯ ×_k P_k`` (for a matrix: ``L^(−1/4) G R^(−1/4)``), rescaled per layer to the norm of
the graft's step ("grafting", Agarwal et al. 2020), with heavy-ball (or Nesterov) momentum.

Why the wrapper: with the library's default ``shape_interpretation=True``, ``merge_small_dims`` merges small
tensors into one dim, and a one-dim tensor gets no preconditioner, so ResNet-20's first conv silently takes
the graft step instead of Shampoo's. We force ``shape_interpretation=False`` and :meth:`Shampoo.step` raises if
any parameter of rank >= 2 still has no preconditioner. Tensors of rank 1 (biases, BatchNorm) get no Kronecker
preconditioner in this library; they take the graft step, which with ``graft="rmsprop"`` (the library's
Adam-style graft: an EMA of squared gradients, no bias correction) is adaptive, not plain SGD.
The library rejects ``beta2 = 1`` (AdaGrad-style sums), so statistics are always an EMA.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytorch_optimizer
import torch
from pytorch_optimizer.optimizer.utils.graft import LayerWiseGrafting
from torch import Tensor

GRAFTS: dict[str, int] = {"none": LayerWiseGrafting.NONE, "sgd": LayerWiseGrafting.SGD,
                          "adagrad": LayerWiseGrafting.ADAGRAD, "rmsprop": LayerWiseGrafting.RMSPROP,
                          "sqrtn": LayerWiseGrafting.SQRTN}


def _object_tensors(obj: object) -> list[Tensor]:
    """Tensors held as attributes of the library's PreConditioner and Graft objects (alone or in lists)."""
    found: list[Tensor] = []
    for value in vars(obj).values():
        if torch.is_tensor(value):
            found.append(value)
        elif isinstance(value, list):
            found.extend(v for v in value if torch.is_tensor(v))
    return found


def _move_object_tensors(obj: object, device: torch.device) -> None:
    for name, value in vars(obj).items():
        if torch.is_tensor(value):
            setattr(obj, name, value.to(device))
        elif isinstance(value, list) and any(torch.is_tensor(v) for v in value):
            setattr(obj, name, [v.to(device) if torch.is_tensor(v) else v for v in value])


def unpreconditioned(optimizer: torch.optim.Optimizer) -> list[tuple[int, ...]]:
    """Shapes of parameters of rank >= 2 that hold Shampoo state but no Kronecker preconditioner."""
    return [tuple(p.shape) for group in optimizer.param_groups for p in group["params"]
            if p.dim() >= 2 and "pre_conditioner" in optimizer.state[p]
            and len(optimizer.state[p]["pre_conditioner"].pre_conditioners) == 0]


class Shampoo(pytorch_optimizer.ScalableShampoo):
    """ScalableShampoo with ``shape_interpretation=False``, a named graft and a fallback check.

    Args:
        lr, betas, weight_decay, nesterov, matrix_eps, diagonal_eps, block_size: the library's.
        weight_decay_mode: ``"l2"`` (added to the gradient) or ``"decoupled"`` (``p −= lr·wd·p``).
        graft: ``"rmsprop"`` (Adam-style, default), ``"adagrad"``, ``"sgd"``, ``"sqrtn"`` or ``"none"``.
        preconditioning_compute_steps: recompute the inverse roots every this many steps.
        start_preconditioning_step: graft-only steps before Shampoo's direction is used.
        use_svd: exact inverse roots by SVD (default: the coupled Schur–Newton iteration of Anil et al.).
    """

    needs_closure: bool = False
    distributed_support: bool = True  # statistics are functions of the (already averaged) gradient

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.0, *,
                 weight_decay_mode: str = "l2", graft: str = "rmsprop",
                 preconditioning_compute_steps: int = 20, start_preconditioning_step: int = 25,
                 statistics_compute_steps: int = 1, block_size: int = 512, nesterov: bool = True,
                 diagonal_eps: float = 1e-10, matrix_eps: float = 1e-6, use_svd: bool = False) -> None:
        if weight_decay_mode not in ("l2", "decoupled"):
            raise ValueError(f"weight_decay_mode must be 'l2' or 'decoupled', got {weight_decay_mode!r}")
        if graft not in GRAFTS:
            raise ValueError(f"graft must be one of {tuple(GRAFTS)}, got {graft!r}")
        super().__init__(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay,
                         decoupled_weight_decay=weight_decay_mode == "decoupled",
                         preconditioning_compute_steps=preconditioning_compute_steps,
                         start_preconditioning_step=start_preconditioning_step,
                         statistics_compute_steps=statistics_compute_steps, block_size=block_size,
                         shape_interpretation=False, graft_type=GRAFTS[graft], nesterov=nesterov,
                         diagonal_eps=diagonal_eps, matrix_eps=matrix_eps, use_svd=use_svd)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = super().step(closure)
        missing = unpreconditioned(self)
        if missing:
            raise RuntimeError(f"Shampoo: parameters of shapes {missing} have no Kronecker preconditioner and would "
                               "silently take the graft step; raise block_size or "
                               "no_preconditioning_for_layers_with_dim_gt")
        return loss

    def _objects(self) -> list[tuple[Tensor, object]]:
        return [(p, v) for p, state in self.state.items() for v in state.values() if hasattr(v, "__dict__")
                and not torch.is_tensor(v)]

    def extra_state_bytes(self) -> int:
        """Statistics, inverse roots and graft buffers: kept inside the library's objects, not as tensors."""
        return sum(t.numel() * t.element_size() for _, obj in self._objects() for t in _object_tensors(obj))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Torch moves state tensors to their parameter's device; the library's objects are moved here."""
        super().load_state_dict(state_dict)
        for p, obj in self._objects():
            _move_object_tensors(obj, p.device)
