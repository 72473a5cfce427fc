"""One optimizer step, shared by the runner and `bench perf` so that what is timed is what is trained."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from bench.distributed import Distributed
from tasks.base import Task


class Diverged(Exception):
    """The loss became NaN or infinite: the run ends and the record says `diverged`."""


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def train_step(task: Task, model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Any, *, hessian: bool,
               device: torch.device, amp: str = "none", scaler: torch.amp.GradScaler | None = None,
               grad_clip: float = 0.0, dist: Distributed | None = None) -> tuple[torch.Tensor, int]:
    """Forward, backward (keeping the graph only when `hessian`), Hessian estimate, clip, update.

    The estimate is taken before clipping so that clipping never rescales the double-backward graph.
    """
    dist = dist or Distributed.single()
    # Fused SDPA kernels have no double backward; the math kernel does (DESIGN.md, Attention).
    kernels = sdpa_kernel(SDPBackend.MATH) if hessian else contextlib.nullcontext()
    with kernels, autocast(device, amp):
        loss, n = task.loss(model, batch)
    finite = bool(torch.isfinite(loss))
    if dist.any(not finite, device):  # decided together, so no rank is left waiting in a collective
        raise Diverged(f"loss became {loss.item()}" if not finite else "loss diverged on another rank")
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward(create_graph=hessian)
    if hessian and hasattr(optimizer, "update_hessian"):
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
    return loss.detach().float(), n
