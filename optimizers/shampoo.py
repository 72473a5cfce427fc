"""Shampoo as Anil et al.'s distributed Shampoo computes it ("Scalable Second Order Optimization for Deep
Learning", arXiv:2002.09018; the authors' ``distributed_shampoo`` in google-research/scalable_shampoo/optax, on
PyPI as ``optax-shampoo`` 0.0.6), single-process and unquantized, written for torch.

Why our own code: no maintained torch implementation of this algorithm installs here. Meta's Distributed Shampoo
is not on PyPI and needs Python >= 3.12; heavyball ships SOAP and KL-Shampoo, not Shampoo; the authors' PyTorch
file is a sketch they point away from; ``pytorch_optimizer.ScalableShampoo`` (which this module wrapped before)
gives no preconditioner to tensors that merge into one dim, stops its root iteration at 1e-3 and installs a
multiple of the identity when it diverges and draws from torch's global RNG (and our wrapper raised only after
stepping). The authors' JAX code is the reference: ``tests/test_shampoo_reference.py`` checks this class against a
transcription of it in float64, ``tests/test_shampoo_jax_reference.py`` against the JAX code itself.

Per parameter of shape ``s`` (defaults are the reference's):

- **Structure.** ``merge_small_dims`` reshapes ``s`` by merging adjacent dims while their product stays
  <= ``merge_small_dims_block_size`` (4096): (16, 16, 3, 3) -> [2304], (64, 32, 3, 3) -> [2048, 9]. Every dim
  larger than ``block_size`` (128, the size the authors' README uses) is cut into blocks. Each block ``G`` of rank
  ``k`` keeps one statistic per dim, ``L_i = beta2 L_i + (1 - beta2) G_(i) G_(i)^T`` (a sum when beta2 = 1),
  starting at ``matrix_eps I``, and is preconditioned as ``G x_1 P_1 ... x_k P_k`` with
  ``P_i = (L_i + eps I)^(-1/(2k))``, ``eps = matrix_eps * lambda_max(L_i)``. Statistics, roots and momenta
  are kept in the parameter's dtype (the reference: float32). With ``merge_small_dims=False`` the dims are kept
  as they are: the per-dimension form of Gupta et al. (2018) (their original algorithm also has ``block_size=0``,
  ``beta2=1``, ``graft="none"``, ``betas[0]=0``). Vectors are preconditioned too (full-matrix, exponent -1/2); only
  scalars and tensors with a dim above ``skip_preconditioning_dim_size_gt`` take the graft's direction.
- **Roots** (:mod:`optimizers.matrix_roots`) are recomputed every ``preconditioning_compute_steps`` steps in
  float64; a root whose error ``max |M - I|`` is NaN or >= ``inverse_failure_threshold`` (0.1) is discarded
  and the previous one kept (``state["root_failures"]`` counts them).
- **Grafting** (Agarwal et al. 2020): the Shampoo direction is rescaled per layer to the norm of the graft's
  direction. ``graft="sgd"`` (the reference's default): the gradient. ``"rmsprop"``: ``g / (sqrt(v) + eps)``
  with ``v`` an EMA of ``g^2`` at ``beta2`` and no bias correction (Adam without momentum or bias correction,
  so at step 1 each coordinate is ``1/sqrt(1 - beta2)``, about 32 at 0.999). ``"adagrad"``: ``v`` a sum.
  ``*_normalized``: the same on ``g / |g|``. ``"sqrt_n"``: ``sign(g)``. ``"none"``: no rescaling.
- **Momentum** is the reference's heavy-ball sum, ``m = beta1 m + u`` (so a constant ``u`` gives steps of
  ``lr u / (1 - beta1)``, 10x ``u`` at 0.9), with Nesterov's ``u + beta1 m`` by default;
  ``moving_average_for_momentum=True`` is the reference's average, ``m = beta1 m + (1 - beta1) u``. The first
  ``start_preconditioning_step`` steps (5) take the graft's own momentum; both buffers run from step 0.
- **Weight decay**: ``weight_decay_mode="l2"`` adds ``weight_decay * p`` to the gradient before statistics,
  graft and preconditioner (L2, as the name says; the reference instead adds it to the grafted direction);
  ``"decoupled"`` shrinks ``p`` by ``lr * weight_decay * p`` (AdamW's form; the reference's decoupled mode
  multiplies by ``lr`` twice).

So the lr is not Adam's: with the SGD graft the step has the gradient's norm times ``lr / (1 - beta1)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

from optimizers.matrix_roots import inverse_pth_roots

GRAFTS = ("sgd", "adagrad", "rmsprop", "adagrad_normalized", "rmsprop_normalized", "sqrt_n", "none")
DIAGONAL_GRAFTS = ("adagrad", "rmsprop", "adagrad_normalized", "rmsprop_normalized")
DECAY_MODES = ("l2", "decoupled")


def merge_small_dims(shape: tuple[int, ...], max_dim: int) -> list[int]:
    """The reference's merge: adjacent dims multiply together while the product stays <= ``max_dim``; dims of
    size 1 vanish (an all-ones shape becomes [1])."""
    if shape and all(d == 1 for d in shape):
        return [1]
    merged: list[int] = []
    product = 1
    for d in shape:
        if product * d <= max_dim:
            product *= d
        else:
            if product > 1:
                merged.append(product)
            product = d
    if product > 1:
        merged.append(product)
    return merged


@dataclass(frozen=True)
class Layout:
    """How one parameter is reshaped, cut into blocks and preconditioned."""

    shape: tuple[int, ...]
    transformed: tuple[int, ...]
    splits: tuple[tuple[int, tuple[int, ...]], ...]  # (dim, block sizes along it) for each dim that is cut
    block_shapes: tuple[tuple[int, ...], ...]
    exponent: int  # p of the inverse p-th root
    preconditioned: bool

    @property
    def statistic_sizes(self) -> list[int]:
        return [d for block in self.block_shapes for d in block] if self.preconditioned else []

    def partition(self, tensor: Tensor) -> list[Tensor]:
        blocks = [tensor.reshape(self.transformed)]
        for dim, sizes in self.splits:
            blocks = [piece for block in blocks for piece in torch.split(block, list(sizes), dim=dim)]
        return blocks

    def merge(self, blocks: list[Tensor]) -> Tensor:
        for dim, sizes in reversed(self.splits):
            n = len(sizes)
            blocks = [torch.cat(blocks[i:i + n], dim=dim) for i in range(0, len(blocks), n)]
        return blocks[0].reshape(self.shape)


@lru_cache(maxsize=1024)
def layout(shape: tuple[int, ...], merge_dims: bool, merge_block_size: int, block_size: int,
           skip_dim_size_gt: int, exponent_override: int) -> Layout:
    """The reference's ``Preconditioner`` structure for a parameter of ``shape``."""
    transformed = tuple(merge_small_dims(shape, merge_block_size)) if merge_dims else shape
    splits, per_dim = [], []
    for dim, d in enumerate(transformed):
        if 0 < block_size < d:
            sizes = (block_size,) * ((d - 1) // block_size) + (d - (d - 1) // block_size * block_size,)
            splits.append((dim, sizes))
            per_dim.append(sizes)
        else:
            per_dim.append((d,))
    preconditioned = len(shape) >= 1 and not any(d > skip_dim_size_gt for d in shape)
    exponent = exponent_override or 2 * len(transformed)
    return Layout(shape, transformed, tuple(splits), tuple(itertools.product(*per_dim)), exponent, preconditioned)


def _gram(block: Tensor, axis: int) -> Tensor:
    axes = [i for i in range(block.dim()) if i != axis]
    return torch.tensordot(block, block, dims=(axes, axes))


class Shampoo(torch.optim.Optimizer):
    """Anil et al.'s distributed Shampoo on one process (see the module docstring for every choice).

    Args:
        lr: step size (the reference's decoupled learning rate: momentum buffers hold lr-free updates).
        betas: (beta1, beta2): momentum, and the EMA of statistics and of the rmsprop graft (1 = sums).
        weight_decay, weight_decay_mode: ``"l2"`` (added to the gradient) or ``"decoupled"``.
        block_size: dims larger than this are cut into blocks of it (0: never).
        merge_small_dims: merge small adjacent dims (the reference's ``best_effort_shape_interpretation``);
            False: one statistic per dim of the parameter (Gupta et al. 2018).
        merge_small_dims_block_size: largest merged dim.
        graft: one of :data:`GRAFTS`.
        nesterov, moving_average_for_momentum: momentum form (see the module docstring).
        start_preconditioning_step: steps before this one take the graft's direction and momentum.
        preconditioning_compute_steps, statistics_compute_steps: recompute roots / statistics every this many.
        matrix_eps: statistics start at ``matrix_eps I`` and roots add ``matrix_eps * lambda_max I``
            (``relative_matrix_epsilon``; else ``matrix_eps I``).
        diagonal_eps: the diagonal grafts' denominator epsilon.
        exponent_override: p of ``L^(-1/p)`` for every statistic (0: twice the block's rank).
        inverse_failure_threshold: roots with a larger error keep the previous preconditioner.
        skip_preconditioning_dim_size_gt: parameters with a larger dim take the graft's direction.
    """

    needs_closure: bool = False
    distributed_support: bool = True  # statistics are functions of the (already averaged) gradient

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.0, *,
                 weight_decay_mode: str = "l2", block_size: int = 128, merge_small_dims: bool = True,
                 merge_small_dims_block_size: int = 4096, graft: str = "sgd", nesterov: bool = True,
                 moving_average_for_momentum: bool = False, start_preconditioning_step: int = 5,
                 preconditioning_compute_steps: int = 1, statistics_compute_steps: int = 1,
                 matrix_eps: float = 1e-6, diagonal_eps: float = 1e-10, relative_matrix_epsilon: bool = True,
                 exponent_override: int = 0, inverse_failure_threshold: float = 0.1,
                 skip_preconditioning_dim_size_gt: int = 4096) -> None:
        beta1, beta2 = betas
        checks = [(lr >= 0, f"lr must be >= 0, got {lr}"),
                  (0 <= beta1 < 1, f"betas[0] must be in [0, 1), got {beta1}"),
                  (0 < beta2 <= 1, f"betas[1] must be in (0, 1], got {beta2}"),
                  (weight_decay >= 0, f"weight_decay must be >= 0, got {weight_decay}"),
                  (weight_decay_mode in DECAY_MODES,
                   f"weight_decay_mode must be one of {DECAY_MODES}, got {weight_decay_mode!r}"),
                  (graft in GRAFTS, f"graft must be one of {GRAFTS}, got {graft!r}"),
                  (block_size >= 0, f"block_size must be >= 0 (0: no blocks), got {block_size}"),
                  (merge_small_dims_block_size >= 1,
                   f"merge_small_dims_block_size must be >= 1, got {merge_small_dims_block_size}"),
                  (min(preconditioning_compute_steps, statistics_compute_steps) >= 1,
                   "preconditioning_compute_steps and statistics_compute_steps must be >= 1"),
                  (start_preconditioning_step >= 0,
                   f"start_preconditioning_step must be >= 0, got {start_preconditioning_step}"),
                  (matrix_eps >= 0 and diagonal_eps >= 0, "matrix_eps and diagonal_eps must be >= 0"),
                  (exponent_override >= 0, f"exponent_override must be >= 0 (0: 2 x rank), got {exponent_override}"),
                  (inverse_failure_threshold > 0,
                   f"inverse_failure_threshold must be > 0, got {inverse_failure_threshold}"),
                  (skip_preconditioning_dim_size_gt >= 1,
                   f"skip_preconditioning_dim_size_gt must be >= 1, got {skip_preconditioning_dim_size_gt}")]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        defaults = dict(lr=lr, betas=(beta1, beta2), weight_decay=weight_decay)
        super().__init__(params, defaults)
        self.weight_decay_mode = weight_decay_mode
        self.graft = graft
        self.nesterov = nesterov
        self.moving_average_for_momentum = moving_average_for_momentum
        self.start_preconditioning_step = start_preconditioning_step
        self.preconditioning_compute_steps = preconditioning_compute_steps
        self.statistics_compute_steps = statistics_compute_steps
        self.matrix_eps = matrix_eps
        self.diagonal_eps = diagonal_eps
        self.relative_matrix_epsilon = relative_matrix_epsilon
        self.inverse_failure_threshold = inverse_failure_threshold
        self._layout_args = (merge_small_dims, merge_small_dims_block_size, block_size,
                             skip_preconditioning_dim_size_gt, exponent_override)

    def layout(self, p: Tensor) -> Layout:
        """The structure this optimizer gives ``p``: merged shape, blocks, exponent."""
        return layout(tuple(p.shape), *self._layout_args)

    def _init_state(self, p: Tensor, state: dict[str, Any]) -> None:
        sizes = self.layout(p).statistic_sizes
        state["step"] = 0
        state["statistics"] = [self.matrix_eps * torch.eye(d, dtype=p.dtype, device=p.device) for d in sizes]
        state["preconditioners"] = [torch.eye(d, dtype=p.dtype, device=p.device) for d in sizes]
        state["root_errors"] = [0.0] * len(sizes)
        state["root_failures"] = 0
        if self.graft in DIAGONAL_GRAFTS:
            state["diagonal_statistics"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["diagonal_momentum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["momentum"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        live = [(group, p) for group in self.param_groups for p in group["params"] if p.grad is not None]
        for _, p in live:  # refuse before any state changes
            if p.grad.is_sparse:
                raise RuntimeError(f"Shampoo does not take sparse gradients (parameter of shape {tuple(p.shape)})")
        grads: dict[Tensor, Tensor] = {}
        for group, p in live:
            state = self.state[p]
            if not state:
                self._init_state(p, state)
            grad = p.grad
            if group["weight_decay"] != 0 and self.weight_decay_mode == "l2":
                grad = grad.add(p, alpha=group["weight_decay"])
            grads[p] = grad
            lay = self.layout(p)
            if lay.preconditioned and state["step"] % self.statistics_compute_steps == 0:
                self._accumulate(lay, state, grad, group["betas"][1])
        self._compute_roots([p for _, p in live if self.layout(p).preconditioned
                             and self.state[p]["step"] % self.preconditioning_compute_steps == 0])
        for group, p in live:
            self._update(p, group, self.state[p], grads[p])
        return loss

    def _update(self, p: Tensor, group: dict[str, Any], state: dict[str, Any], grad: Tensor) -> None:
        lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
        step = state["step"]
        lay = self.layout(p)
        graft = self._graft_direction(state, grad, beta2)
        direction = self._precondition(lay, state, grad) if lay.preconditioned else graft
        if self.graft == "none":
            shampoo = direction
        else:
            shampoo = direction * (torch.linalg.vector_norm(graft) / (torch.linalg.vector_norm(direction) + 1e-16))
        w = (1.0 - beta1) if self.moving_average_for_momentum else 1.0
        state["momentum"].mul_(beta1).add_(shampoo, alpha=w)
        state["diagonal_momentum"].mul_(beta1).add_(graft, alpha=w)
        if step >= self.start_preconditioning_step:
            momentum, current = state["momentum"], shampoo
        else:
            momentum, current = state["diagonal_momentum"], graft
        update = current * w + momentum * beta1 if self.nesterov else momentum
        if wd != 0 and self.weight_decay_mode == "decoupled":
            p.mul_(1 - lr * wd)
        p.add_(update, alpha=-lr)
        state["step"] = step + 1

    def _accumulate(self, lay: Layout, state: dict[str, Any], grad: Tensor, beta2: float) -> None:
        w2 = 1.0 if beta2 == 1.0 else 1.0 - beta2
        stats = iter(state["statistics"])
        for block in lay.partition(grad):
            for axis in range(block.dim()):
                next(stats).mul_(beta2).add_(_gram(block, axis), alpha=w2)

    def _compute_roots(self, params: list[Tensor]) -> None:
        """New roots for every statistic of ``params``, solved in batches of one size and exponent; a root whose
        error is NaN or >= inverse_failure_threshold is dropped and the previous one kept, as the reference does."""
        groups: dict[tuple, list[tuple[dict[str, Any], int]]] = {}
        for p in params:
            state, exponent = self.state[p], self.layout(p).exponent
            for i, stat in enumerate(state["statistics"]):
                groups.setdefault((stat.shape[0], exponent, stat.dtype, stat.device), []).append((state, i))
        for (_, exponent, _, _), members in groups.items():
            stats = torch.stack([state["statistics"][i] for state, i in members])
            roots, errors = inverse_pth_roots(stats, exponent, ridge_epsilon=self.matrix_eps,
                                              relative_epsilon=self.relative_matrix_epsilon)
            for (state, i), root, error in zip(members, roots, errors.tolist(), strict=True):
                state["root_errors"][i] = error
                if math.isnan(error) or error >= self.inverse_failure_threshold:
                    state["root_failures"] += 1
                else:
                    state["preconditioners"][i] = root.clone()

    def _precondition(self, lay: Layout, state: dict[str, Any], grad: Tensor) -> Tensor:
        roots = iter(state["preconditioners"])
        out = []
        for block in lay.partition(grad):
            for _ in range(block.dim()):
                block = torch.tensordot(block, next(roots), dims=([0], [0]))
            out.append(block)
        return lay.merge(out)

    def _graft_direction(self, state: dict[str, Any], grad: Tensor, beta2: float) -> Tensor:
        if self.graft in ("sgd", "none"):
            return grad
        if self.graft == "sqrt_n":
            return torch.sign(grad)
        scaled = grad / (torch.linalg.vector_norm(grad) + 1e-16) if self.graft.endswith("_normalized") else grad
        diag = state["diagonal_statistics"]
        if self.graft.startswith("adagrad"):
            diag.add_(scaled * scaled)
        else:
            diag.mul_(beta2).add_(scaled * scaled, alpha=1.0 if beta2 == 1.0 else 1.0 - beta2)
        return scaled / (diag.sqrt() + self.diagonal_eps)
