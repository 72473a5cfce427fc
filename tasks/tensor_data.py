"""Classification on tensors that fit in device memory: shuffling, sharding and evaluation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tasks.base import Metric, Task


class TensorClassificationTask(Task):
    """Images and labels held as device tensors; batches are index slices, no per-sample Python."""

    metric = Metric("top1", "max", "%")

    def __init__(self, train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                 test_y: torch.Tensor, **runtime: Any) -> None:
        super().__init__(**runtime)
        self.train_x, self.train_y = train_x.to(self.device), train_y.to(self.device)
        self.test_x, self.test_y = test_x.to(self.device), test_y.to(self.device)
        if self.batch_size % self.world_size:
            raise ValueError(f"trainer.batch_size={self.batch_size} must be divisible by the "
                             f"{self.world_size} processes of the run")

    def prepare(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Turn stored inputs into model inputs; `generator` is given for training batches only."""
        return x.float()

    def steps_per_epoch(self) -> int:
        return len(self.train_x) // self.batch_size  # drop the ragged last batch, as the paper's loaders do

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # Skipped batches are still drawn: augmentation consumes the epoch's generator batch by batch.
        return islice(self._epoch_batches(epoch), start, None)

    def _epoch_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = self.epoch_generator(epoch)
        order = torch.randperm(len(self.train_x), generator=generator, device=self.device)
        local = self.batch_size // self.world_size
        for step in range(self.steps_per_epoch()):
            begin = step * self.batch_size + self.rank * local
            idx = order[begin:begin + local]
            yield self.prepare(self.train_x[idx], generator), self.train_y[idx]

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int]:
        x, y = batch
        return F.cross_entropy(model(x), y), len(y)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return evaluate_classifier(model, self.test_x, self.test_y, self.eval_batch_size,
                                   lambda x: self.prepare(x, None))


def evaluate_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                        prepare: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, float]:
    """Top-1 accuracy (%) and mean cross-entropy over a held-out set."""
    correct, total_loss = 0, 0.0
    for start in range(0, len(x), batch_size):
        logits = model(prepare(x[start:start + batch_size])).float()
        target = y[start:start + batch_size]
        total_loss += F.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(1) == target).sum().item()
    return {"top1": 100.0 * correct / len(x), "loss": total_loss / len(x)}
