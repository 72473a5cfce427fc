"""The process group a run lives in. Single-process is the trivial case of the same interface."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from bench.progress import console


@dataclass
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @classmethod
    def single(cls) -> Distributed:
        return cls()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def print(self, message: str) -> None:
        if self.is_main:
            console.print(message, highlight=False, markup=False, soft_wrap=True)

    def prepare_model(self, model: nn.Module, sync_bn: bool) -> nn.Module:
        return model

    def unwrap(self, model: nn.Module) -> nn.Module:
        return model

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Give a Hessian optimizer the cross-rank reduction of its estimate (none in one process)."""

    def no_sync(self, model: nn.Module, hessian: bool) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def after_backward(self, model: nn.Module, hessian: bool) -> None:
        """Average gradients across ranks where DDP's hooks did not (nothing to do in one process)."""

    def mean(self, value: torch.Tensor) -> float:
        return value.item()

    def broadcast_metrics(self, evaluate: Callable[[], dict[str, float]]) -> dict[str, float]:
        return evaluate()

    def describe(self) -> str | None:
        return None
