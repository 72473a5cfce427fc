"""One optimizer step, shared by the runner and `bench perf` so that what is timed is what is trained."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from bench.distributed import Distributed
from bench.hvp import CurvatureBatch, takes_harness_hvp
from bench.optim_factory import needs_closure
from tasks.base import Task


class Diverged(Exception):
    """The loss became NaN or infinite: the run ends and the record says `diverged`."""


@dataclass
class StepResult:
    """The step's loss per item (detached, for logging), the items it covered, and the gradient evaluations
    it took (1, or one per closure call for L-BFGS-style optimizers)."""

    loss: torch.Tensor
    n: int
    grad_evals: int = 1


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def forward_loss(task: Task, model: torch.nn.Module, batch: Any, device: torch.device, amp: str,
                 hessian: bool) -> tuple[torch.Tensor, int]:
    """The task's loss; on Hessian steps under the math attention kernel, since fused SDPA kernels have no
    double backward (DESIGN.md, Attention)."""
    kernels = sdpa_kernel(SDPBackend.MATH) if hessian else contextlib.nullcontext()
    with kernels, autocast(device, amp):
        return task.loss(model, batch)


def per_item(task: Task, loss: torch.Tensor, n: int) -> torch.Tensor:
    return loss.detach().float() / n if task.loss_reduction == "sum" else loss.detach().float()


def check_finite(loss: torch.Tensor, dist: Distributed, device: torch.device) -> None:
    finite = bool(torch.isfinite(loss))
    if dist.any(not finite, device):  # decided together, so no rank is left waiting in a collective
        raise Diverged(f"loss became {loss.item()}" if not finite else "loss diverged on another rank")


def train_step(task: Task, model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Any, *, hessian: bool,
               device: torch.device, amp: str = "none", scaler: torch.amp.GradScaler | None = None,
               grad_clip: float = 0.0, dist: Distributed | None = None, hessian_batch_fraction: float = 1.0,
               hvp_mode: str = "auto") -> StepResult:
    """Forward, backward (keeping the graph only when `hessian`), Hessian estimate, clip, update.

    The estimate is taken before clipping so that clipping never rescales the double-backward graph.
    Optimizers that need a closure (L-BFGS, OASIS) get one that recomputes the loss on the same batch.
    With a curvature sub-batch or forward-over-reverse (bench/hvp.py), a refresh step's backward is a plain
    one and the harness hands `Hz` to `update_hessian(hvp=...)`.
    """
    dist = dist or Distributed.single()
    if needs_closure(optimizer):
        return closure_step(task, model, optimizer, batch, hessian=hessian, device=device, amp=amp, dist=dist)
    harness_hvp = hessian and takes_harness_hvp(optimizer, hessian_batch_fraction, hvp_mode)
    graph = hessian and not harness_hvp
    loss, n = forward_loss(task, model, batch, device, amp, graph)
    check_finite(loss, dist, device)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        backward(loss, optimizer, graph)
    if harness_hvp:
        sub = task.sub_batch(batch, hessian_batch_fraction) if hessian_batch_fraction < 1 else batch
        optimizer.update_hessian(hvp=CurvatureBatch(task, dist.unwrap(model), sub, mode=hvp_mode, device=device,
                                                    autocast=autocast(device, amp), items=n))
    elif hessian and hasattr(optimizer, "update_hessian"):
        optimizer.update_hessian()
    dist.after_backward(model)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(per_item(task, loss, n), n)


def backward(loss: torch.Tensor, optimizer: torch.optim.Optimizer, graph: bool) -> None:
    """`loss.backward`, keeping the graph for a Hessian estimate when `graph`. Then only the optimizer's parameters
    receive gradients: an input that requires grad (a PINN's collocation points, for u_x) would otherwise get a
    graph-carrying .grad that references itself through the graph, a cycle Python's GC cannot see, and leak the
    whole double-backward graph every step (12 GB after 800 AdaHessian steps on 10,000 points)."""
    if not graph:
        loss.backward()
        return
    params = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
    loss.backward(create_graph=True, inputs=params)


def closure_step(task: Task, model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Any, *,
                 hessian: bool, device: torch.device, amp: str, dist: Distributed) -> StepResult:
    """`optimizer.step(closure)`: each call recomputes the loss on this batch and its gradient. On a step that
    also takes Hessian-vector products the first call keeps the graph (they are taken at the current point);
    later calls (OASIS's gradient at the previous iterate, a line search) do not build a double-backward graph
    that nothing would use. The first call's loss is the step's loss."""
    calls: list[tuple[torch.Tensor, int]] = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        graph = hessian and not calls
        with torch.enable_grad():
            loss, n = forward_loss(task, model, batch, device, amp, graph)
            if not calls:
                check_finite(loss, dist, device)
            backward(loss, optimizer, graph)
        dist.after_backward(model)
        calls.append((loss.detach(), n))
        return loss.detach()

    optimizer.step(closure)
    optimizer.zero_grad(set_to_none=True)
    loss, n = calls[0]
    return StepResult(per_item(task, loss, n), n, grad_evals=len(calls))
