"""The PINN model: a tanh MLP whose inputs are first mapped from the domain to [-1, 1]."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Normalize(nn.Module):
    """x -> 2 (x - low) / (high - low) - 1 per input, so every input spans [-1, 1] whatever the domain."""

    def __init__(self, lows: Sequence[float], highs: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("low", torch.tensor(lows, dtype=torch.float32))
        self.register_buffer("width", torch.tensor(highs, dtype=torch.float32) - self.low)

    def forward(self, x: Tensor) -> Tensor:
        return 2.0 * (x - self.low) / self.width - 1.0


def mlp(lows: Sequence[float], highs: Sequence[float], width: int, depth: int) -> nn.Sequential:
    """`depth` hidden tanh layers of `width` units, one linear output; Xavier-normal weights, zero biases
    (the initialisation of Raissi et al.'s code)."""
    layers: list[nn.Module] = [Normalize(lows, highs)]
    size = len(lows)
    for _ in range(depth):
        layers += [nn.Linear(size, width), nn.Tanh()]
        size = width
    layers.append(nn.Linear(size, 1))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)
