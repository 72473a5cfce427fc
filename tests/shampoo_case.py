"""The float64 case both Shampoo equivalence tests run: one small conv net, fixed batches, 20 steps.

Its tensors cover the structures that matter: conv1 (16, 3, 3, 3) merges into one dim of 432 (four blocks of at
most 128, exponent -1/2), conv2 (16, 16, 3, 3) into [2304] (18 blocks), fc1 (200, 256) stays two-dimensional and
is cut into 2 x 2 blocks (exponent -1/4), fc2 (10, 200) merges into [2000], and the biases are vectors.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

STEPS = 20
LR = 0.1


def case_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3), nn.Tanh(), nn.Conv2d(16, 16, 3), nn.Tanh(), nn.Flatten(),
                         nn.Linear(256, 200), nn.Tanh(), nn.Linear(200, 10)).double()


def case_batches() -> list[tuple[Tensor, Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 3, 8, 8, generator=gen, dtype=torch.float64), torch.randint(0, 10, (8,), generator=gen))
            for _ in range(STEPS)]


def gradients(model: nn.Module, x: Tensor, y: Tensor) -> list[Tensor]:
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    return [p.grad.detach().clone() for p in model.parameters()]


def run_reference(update: Callable[[list[Tensor], list[Tensor]], list[Tensor]]) -> nn.Module:
    """Train ``case_net`` for STEPS steps with ``update(params, grads) -> new params`` (a functional reference)."""
    model = case_net()
    for x, y in case_batches():
        grads = gradients(model, x, y)
        new = update([p.detach().clone() for p in model.parameters()], grads)
        with torch.no_grad():
            for p, value in zip(model.parameters(), new, strict=True):
                p.copy_(value)
    return model


def run_ours(lr: float = LR, **kwargs: object) -> tuple[nn.Module, torch.optim.Optimizer]:
    from optimizers import Shampoo

    model = case_net()
    opt = Shampoo(model.parameters(), lr=lr, **kwargs)
    for x, y in case_batches():
        gradients(model, x, y)
        opt.step()
    return model, opt


def max_difference(a: nn.Module, b: nn.Module) -> float:
    pairs = zip(a.parameters(), b.parameters(), strict=True)
    return max(float((p.detach() - q.detach()).abs().max()) for p, q in pairs)
