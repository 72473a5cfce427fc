"""The task contract: everything task-specific the runner needs, and nothing more."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

Batch = Any


class DataError(ValueError):
    """A missing or malformed dataset; the message names the path, the expected layout and the fix."""


@dataclass(frozen=True)
class Metric:
    """The primary metric: its name, whether higher is better, and how to show it."""

    name: str
    mode: str  # "max" or "min"
    unit: str = ""

    def better(self, a: float, b: float) -> bool:
        return a > b if self.mode == "max" else a < b


class Task(ABC):
    """A task owns its data pipeline and model; the runner only loops."""

    metric: Metric

    def __init__(self, *, device: torch.device, batch_size: int, eval_batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        self.device = device
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size

    @abstractmethod
    def build_model(self) -> nn.Module: ...

    @abstractmethod
    def steps_per_epoch(self) -> int: ...

    @abstractmethod
    def train_batches(self, epoch: int) -> Iterator[Batch]:
        """This rank's batches for `epoch`; the order depends only on (seed, epoch), so resume is exact."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
        """Mean loss over the batch and the number of items it covers."""

    @abstractmethod
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Held-out metrics; must contain `self.metric.name`."""

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def epoch_generator(self, epoch: int) -> torch.Generator:
        """A generator for shuffling and augmentation that depends only on (seed, epoch)."""
        return torch.Generator(device=self.device).manual_seed(self.seed * 100_003 + epoch)
