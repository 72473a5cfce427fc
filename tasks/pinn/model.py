"""The PINN model: a tanh MLP, its inputs optionally mapped from the domain to [-1, 1] first.

Input scaling and initialisation are task keys because the convection references differ from Raissi et al.'s
practice: Krishnapriyan et al. (2021, `pbc_examples/net_pbc.py`) and Rathore et al. (2024, `src/models.py`) feed
raw (x, t); Krishnapriyan et al. keep PyTorch's default nn.Linear init, Rathore et al. use Xavier-normal weights
with zero biases (`src/train_utils.py`, `init_weights`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

INPUT_SCALINGS = ("unit_box", "none")
INITS = ("xavier_normal", "torch_default")


class Normalize(nn.Module):
    """x -> 2 (x - low) / (high - low) - 1 per input, so every input spans [-1, 1] whatever the domain."""

    def __init__(self, lows: Sequence[float], highs: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("low", torch.tensor(lows, dtype=torch.float32))
        self.register_buffer("width", torch.tensor(highs, dtype=torch.float32) - self.low)

    def forward(self, x: Tensor) -> Tensor:
        return 2.0 * (x - self.low) / self.width - 1.0


def mlp(lows: Sequence[float], highs: Sequence[float], width: int, depth: int, input_scaling: str = "unit_box",
        init: str = "xavier_normal") -> nn.Sequential:
    """`depth` hidden tanh layers of `width` units, one linear output.

    input_scaling: ``unit_box`` maps each input to [-1, 1] (Raissi et al.'s practice), ``none`` feeds it raw.
    init: ``xavier_normal`` weights with zero biases (Rathore et al.'s ``init_weights``), or ``torch_default``
    (nn.Linear's own, as Krishnapriyan et al.'s code).
    """
    if input_scaling not in INPUT_SCALINGS:
        raise ValueError(f"task.input_scaling={input_scaling}: expected one of {', '.join(INPUT_SCALINGS)}")
    if init not in INITS:
        raise ValueError(f"task.init={init}: expected one of {', '.join(INITS)}")
    layers: list[nn.Module] = [Normalize(lows, highs)] if input_scaling == "unit_box" else []
    size = len(lows)
    for _ in range(depth):
        layers += [nn.Linear(size, width), nn.Tanh()]
        size = width
    layers.append(nn.Linear(size, 1))
    if init == "xavier_normal":
        for layer in layers:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_normal_(layer.weight)
                nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)
