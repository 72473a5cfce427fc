"""The process group a run lives in, on torch.distributed. One process is the trivial case.

First-order optimizers train under DistributedDataParallel. Hessian optimizers cannot: DDP does not support
double backward (pytorch issues 47562, 63812). For them the model stays unwrapped, every rank computes its
local gradient and its local Hutchinson estimate, and both are all-reduced as means: the gradient here, the
estimate through the optimizer's `hessian_reduce` hook. Each rank draws its own probe, so one refresh across
N ranks averages N Hutchinson samples. Buffers (BatchNorm statistics) follow rank 0, as DDP's do.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
from torch.nn.parallel import DistributedDataParallel

from bench.progress import console


def launcher_env() -> tuple[int, int, int] | None:
    """(rank, local_rank, world_size) from torchrun's or submitit's (SLURM or local) environment."""
    env = os.environ
    if int(env.get("WORLD_SIZE", "1")) > 1:
        return int(env["RANK"]), int(env.get("LOCAL_RANK", "0")), int(env["WORLD_SIZE"])
    if env.get("SUBMITIT_EXECUTOR"):
        import submitit

        job = submitit.JobEnvironment()
        if job.num_tasks > 1:
            env.setdefault("MASTER_ADDR", job.hostnames[0])
            # raw_job_id is unique per task of a job array (job_id is shared by the array's tasks).
            env.setdefault("MASTER_PORT", str(20_000 + int(job.raw_job_id) % 20_000))
            return job.global_rank, job.local_rank, job.num_tasks
    return None


@dataclass
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    manual: bool = False  # True: no DDP; gradients and Hessian estimates are reduced here
    _buffers: list[torch.Tensor] = field(default_factory=list, repr=False)

    @classmethod
    def single(cls) -> Distributed:
        return cls()

    @classmethod
    def from_env(cls, device: str, hessian_optimizer: bool) -> Distributed:
        """Join the process group the launcher set up (NCCL on CUDA, gloo on CPU), or run alone."""
        found = launcher_env()
        if found is None:
            return cls.single()
        rank, local_rank, world_size = found
        use_cuda = device != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world_size,
                                    timeout=timedelta(minutes=30))
        return cls(rank, local_rank, world_size, manual=hessian_optimizer)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def print(self, message: str) -> None:
        if self.is_main:
            console.print(message, highlight=False, markup=False, soft_wrap=True)

    def prepare_model(self, model: nn.Module, sync_bn: bool) -> nn.Module:
        if not self.active:
            return model
        if sync_bn:  # CUDA only; check_config says so before a run starts
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if not self.manual:
            device_ids = [self.local_rank] if next(model.parameters()).device.type == "cuda" else None
            return DistributedDataParallel(model, device_ids=device_ids)
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=0)
        self._buffers = [b for b in model.buffers() if b.is_floating_point() or b.dtype == torch.long]
        return model

    def unwrap(self, model: nn.Module) -> nn.Module:
        return model.module if isinstance(model, DistributedDataParallel) else model

    def install_hessian_reduce(self, optimizer: torch.optim.Optimizer) -> None:
        """Give a Hessian optimizer the cross-rank mean of its estimate."""
        if self.active and self.manual and hasattr(optimizer, "hessian_reduce"):
            optimizer.hessian_reduce = self.all_reduce_mean

    def all_reduce_mean(self, tensors: list[torch.Tensor]) -> None:
        """In-place mean across ranks, one flat all-reduce per dtype."""
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for t in tensors:
            by_dtype.setdefault(t.dtype, []).append(t)
        for group in by_dtype.values():
            flat = _flatten_dense_tensors(group)
            dist.all_reduce(flat)
            flat /= self.world_size
            for t, reduced in zip(group, _unflatten_dense_tensors(flat, group), strict=True):
                t.copy_(reduced)

    def after_backward(self, model: nn.Module) -> None:
        """Manual path: average the gradients (DDP's hooks do it otherwise) and take rank 0's buffers."""
        if not (self.active and self.manual):
            return
        self.all_reduce_mean([p.grad for p in model.parameters() if p.grad is not None])
        for buffer in self._buffers:
            dist.broadcast(buffer, src=0)

    def mean(self, value: torch.Tensor) -> float:
        if self.active:
            value = value.detach().clone()
            dist.all_reduce(value)
            value /= self.world_size
        return value.item()

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank if it is true on one: ranks must agree on when to stop."""
        if not self.active:
            return flag
        tensor = torch.tensor([int(flag)], device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item())

    def gather(self, obj: object) -> list[object]:
        """Every rank's `obj`, in rank order (on every rank)."""
        if not self.active:
            return [obj]
        gathered: list[object] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def broadcast_metrics(self, evaluate: Callable[[], dict[str, float]]) -> dict[str, float]:
        """Rank 0 evaluates; the others receive its numbers."""
        box = [evaluate() if self.is_main else None]
        if self.active:
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def describe(self) -> str | None:
        if not self.active:
            return None
        if self.manual:
            return (f"gradients and Hutchinson estimates all-reduced (mean) over {self.world_size} ranks outside "
                    f"DDP; each rank draws its own probe, so each refresh averages {self.world_size} samples")
        return f"gradients averaged by DistributedDataParallel over {self.world_size} ranks"

    def close(self, together: bool = False) -> None:
        """Leave the process group. `together` (only when every rank is known to get here, e.g. after a
        finished run) first waits for all ranks: tearing gloo down while a peer is still finishing can abort
        that peer ("terminate called without an active exception")."""
        if self.active and dist.is_initialized():
            if together:
                dist.barrier()
            dist.destroy_process_group()
