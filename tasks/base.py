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
    throughput_unit: str = "examples"  # what the `n` of `loss()` counts: images, tokens, examples, points
    loss_reduction: str = "mean"  # "sum": `loss()` returns the sum over its n items (the runner logs loss / n)

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
    def train_batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """This rank's batches `start, start + 1, ...` of `epoch`; the order depends only on (seed, epoch),
        so a run resumed mid-epoch sees the batches the uninterrupted one would have seen."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
        """Mean loss over the batch and the number of items it covers."""

    @abstractmethod
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Held-out metrics; must contain `self.metric.name`."""

    def test(self, model: nn.Module) -> dict[str, float] | None:
        """The final held-out evaluation of a completed run (e.g. beam-search BLEU on the test split), or None
        when `evaluate` already is the final one."""
        return None

    def data_summary(self) -> dict[str, Any]:
        """What the record should say about the data: skipped rows, token counts, cache paths."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook; most tasks hold nothing to release
        """Release what the data pipeline holds (worker processes, memory maps)."""

    def sub_batch(self, batch: Batch, fraction: float) -> Batch:
        """The first `fraction` of `batch` (at least one item), for a Hessian estimate from a sub-batch
        (`trainer.hessian_batch_fraction`). The default slices a tensor, or each tensor of a tuple/list, along
        dim 0; tasks whose batches are not that (token buckets, dicts, packed sequences) override it."""
        def head(t: Any) -> Any:
            if isinstance(t, torch.Tensor):
                return t[:max(1, int(t.shape[0] * fraction))]
            if isinstance(t, tuple | list):
                return type(t)(head(x) for x in t)
            raise TypeError(f"{type(self).__name__}.sub_batch: cannot slice a {type(t).__name__}; override "
                            "Task.sub_batch for this task's batches")
        return head(batch)

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def epoch_generator(self, epoch: int) -> torch.Generator:
        """A generator for shuffling and augmentation that depends only on (seed, epoch)."""
        return torch.Generator(device=self.device).manual_seed(self.seed * 100_003 + epoch)
