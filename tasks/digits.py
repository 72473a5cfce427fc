"""The embedded default task: scikit-learn's bundled 8x8 digits, so `make demo` needs no download."""

from __future__ import annotations

from typing import Any

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from tasks.tensor_data import TensorClassificationTask


class DigitsTask(TensorClassificationTask):
    """1797 real handwritten digits, a fixed stratified 80/20 split, inputs scaled to [0, 1]."""

    def __init__(self, **runtime: Any) -> None:
        digits = load_digits()
        x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        y = torch.tensor(digits.target, dtype=torch.long)
        train_idx, test_idx = train_test_split(range(len(y)), test_size=0.2, random_state=0, stratify=y)
        super().__init__(x[train_idx], y[train_idx], x[test_idx], y[test_idx], **runtime)

    def build_model(self) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
        )
