"""Hessian-vector products the harness takes itself, for a Hessian optimizer's `update_hessian(hvp=...)`.

Two levers on the cost of a Hutchinson refresh (issue 16):

* **A sub-batch** (`trainer.hessian_batch_fraction` < 1): the gradient comes from the full batch with a plain
  backward; `Hz` from the first fraction of the batch (`Task.sub_batch`), as Sophia does.
* **Forward-over-reverse** (`trainer.hvp_mode=forward_over_reverse`): `Hz` is the JVP of the gradient function,
  `torch.func.jvp(torch.func.grad(loss), (params,), (z,))`, instead of a second backward pass through the graph
  `backward(create_graph=True)` keeps (reverse-over-reverse, the optimizer's own path).

The extra forward pass on the curvature batch must leave training exactly as it would be without it:

* BatchNorm: it runs through `torch.func.functional_call` with every buffer replaced by a copy, so its batch
  statistics normalise as in training but the running statistics and `num_batches_tracked` it writes land in the
  copies. The model's own buffers are never written, which is exact (bitwise, also for `momentum=None`), unlike
  momentum 0 (which still counts batches and turns a NaN batch statistic into a NaN running one).
* RNG: it runs under `torch.random.fork_rng`, restarting from the same state for every probe, so every probe
  sees the same dropout mask and the global stream (data order, augmentation, the next step's dropout) is the
  one a run without the extra pass draws; a resumed run draws what the uninterrupted one draws.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from bench.errors import UsageError
from tasks.base import Task

HVP_MODES: tuple[str, ...] = ("auto", "double_backward", "forward_over_reverse")


class TaskLoss(nn.Module):
    """`task.loss(model, batch)[0]` as a module, so `functional_call` can swap the model's tensors.

    With `items` (the full batch's item count) and a token-summed loss (`loss_reduction: sum`), a sub-batch's
    loss is scaled by items / its own count, so its curvature estimates the full batch's summed loss, the one
    the gradient comes from, and not a fraction of it. A mean loss needs no scale."""

    def __init__(self, task: Task, model: nn.Module, items: int | None = None) -> None:
        super().__init__()
        self.task = task
        self.model = model
        self.items = items if task.loss_reduction == "sum" else None

    def forward(self, batch: Any) -> Tensor:
        loss, n = self.task.loss(self.model, batch)
        return loss if self.items is None or n == self.items else loss * (self.items / n)


def resolve_mode(mode: str) -> str:
    """`auto` is double backward on every device: measured on CPU (docs/optimizers.md, "Cheaper curvature";
    issue 16) it is the faster of the two for the CIFAR ResNet-20 and the digits MLP; forward-over-reverse is
    chosen explicitly."""
    if mode not in HVP_MODES:
        raise UsageError(f"trainer.hvp_mode={mode}: expected one of {', '.join(HVP_MODES)}")
    return "double_backward" if mode == "auto" else mode


def check_fraction(fraction: float) -> float:
    if not 0.0 < fraction <= 1.0:
        raise UsageError(f"trainer.hessian_batch_fraction={fraction}: expected a number in (0, 1], e.g. 0.25")
    return float(fraction)


def uses_harness_hvp(fraction: float, mode: str) -> bool:
    """Whether the refresh step takes `Hz` here rather than through the full batch's create_graph backward."""
    return check_fraction(fraction) < 1.0 or resolve_mode(mode) == "forward_over_reverse"


def takes_harness_hvp(optimizer: object, fraction: float, mode: str) -> bool:
    """Whether this refresh step's `Hz` comes from here. Only optimizers whose `update_hessian` accepts `hvp`
    can take it; asking another for a sub-batch or forward-over-reverse is a usage error, not a silent no-op."""
    if not uses_harness_hvp(fraction, mode):
        return False
    update = getattr(optimizer, "update_hessian", None)
    if update is None or "hvp" not in inspect.signature(update).parameters:
        raise UsageError(f"trainer.hessian_batch_fraction={fraction} trainer.hvp_mode={mode}: "
                         f"{type(optimizer).__name__} takes its Hessian-vector products itself (its update_hessian "
                         "has no hvp argument); use trainer.hessian_batch_fraction=1 trainer.hvp_mode=auto")
    return True


@contextlib.contextmanager
def replayed_rng(device: torch.device, states: list[Tensor]) -> Iterator[None]:
    """Run with the global RNG (CPU and `device`) set to `states`, restoring the outer stream afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.set_rng_state(states[0])
        if devices:
            torch.cuda.set_rng_state(states[1], device)
        yield


def rng_states(device: torch.device) -> list[Tensor]:
    states = [torch.get_rng_state()]
    if device.type == "cuda":
        states.append(torch.cuda.get_rng_state(device))
    return states


class CurvatureBatch:
    """`hvp(params, probes, more) -> Hz` on one batch, for `AdaHessian.update_hessian(hvp=...)`.

    Double backward builds the sub-batch's gradient graph once and reuses it for every probe; forward-over-reverse
    recomputes forward and backward per probe (it keeps no graph between probes, which is its memory advantage).
    """

    def __init__(self, task: Task, model: nn.Module, batch: Any, *, mode: str, device: torch.device,
                 autocast: contextlib.AbstractContextManager | None = None, items: int | None = None) -> None:
        self.loss_module = TaskLoss(task, model, items)
        self.batch = batch
        self.mode = resolve_mode(mode)
        self.device = device
        self.autocast = autocast
        self.model = model
        self.names = {id(p): f"model.{name}" for name, p in model.named_parameters()}
        self.rng = rng_states(device)
        self._grads: Sequence[Tensor] | None = None

    def loss(self, tensors: dict[str, Tensor]) -> Tensor:
        """The loss with `tensors` (and copies of every buffer) swapped into the model."""
        buffers = {f"model.{name}": b.detach().clone() for name, b in self.model.named_buffers()}  # BN writes here
        amp = self.autocast if self.autocast is not None else contextlib.nullcontext()
        with replayed_rng(self.device, self.rng), sdpa_kernel(SDPBackend.MATH), amp:
            return torch.func.functional_call(self.loss_module, {**buffers, **tensors}, (self.batch,))

    def __call__(self, params: list[Tensor], probes: list[Tensor], more: bool) -> list[Tensor]:
        if self.mode == "forward_over_reverse":
            return self.forward_over_reverse(params, probes)
        return self.double_backward(params, probes, more)

    def double_backward(self, params: list[Tensor], probes: list[Tensor], more: bool) -> list[Tensor]:
        if self._grads is None:
            self._grads = torch.autograd.grad(self.loss({}), params, create_graph=True, allow_unused=True,
                                              materialize_grads=True)
        used = [i for i, g in enumerate(self._grads) if g.grad_fn is not None]
        hzs = torch.autograd.grad([self._grads[i] for i in used], params, grad_outputs=[probes[i] for i in used],
                                  retain_graph=more, allow_unused=True, materialize_grads=True)
        if not more:
            self._grads = None
        return list(hzs)

    def forward_over_reverse(self, params: list[Tensor], probes: list[Tensor]) -> list[Tensor]:
        names = [self.names[id(p)] for p in params]

        def loss_of(tensors: tuple[Tensor, ...]) -> Tensor:
            return self.loss(dict(zip(names, tensors, strict=True)))

        primals = tuple(p.detach() for p in params)
        _, hzs = torch.func.jvp(torch.func.grad(loss_of), (primals,), (tuple(probes),))
        return list(hzs)
