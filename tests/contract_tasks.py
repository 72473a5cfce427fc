"""Task variants used to exercise the runner's optional task hooks (test, data_summary, close) on real data."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tasks.digits import DigitsTask


class DigitsWithTest(DigitsTask):
    """Digits whose final evaluation is a separate `test` (here: the held-out split, reported as `test_top1`
    beside `top1`), and which reports what it was fed."""

    throughput_unit = "images"

    def __init__(self, **runtime: Any) -> None:
        super().__init__(**runtime)
        self.closed = False

    def test(self, model: nn.Module) -> dict[str, float]:
        return self.evaluate(model)

    def data_summary(self) -> dict[str, Any]:
        return {"train_images": len(self.train_x), "test_images": len(self.test_x)}


class SummedLossDigits(DigitsTask):
    """Digits with a token-summed style loss: `loss()` returns the sum over the batch."""

    loss_reduction = "sum"

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int]:
        x, y = batch
        return torch.nn.functional.cross_entropy(model(x), y, reduction="sum"), len(y)


class DigitsWorseEachEpoch(DigitsWithTest):
    """Digits whose per-epoch evaluation reports top-1 minus 100 per evaluation so far, so the first epoch is
    always the best one; `test` reports the real top-1 of the weights it is given."""

    def __init__(self, **runtime: Any) -> None:
        super().__init__(**runtime)
        self.evaluations = 0

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        metrics = super().evaluate(model)
        metrics["top1"] -= 100.0 * self.evaluations
        self.evaluations += 1
        return metrics

    def test(self, model: nn.Module) -> dict[str, float]:
        return DigitsTask.evaluate(self, model)
