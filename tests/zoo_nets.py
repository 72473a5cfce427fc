"""A tiny 2-layer net and its loss as a function of one flat parameter vector, for checking optimizer updates
against equations computed independently (explicit gradients and Hessians, no optimizer code)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()


def tiny_batch(seed: int = 1, n: int = 8) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=gen, dtype=torch.float64), torch.randint(0, 2, (n,), generator=gen)


def flat(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()


def flat_loss(model: nn.Module, x: Tensor, y: Tensor):
    """``w -> cross-entropy(model_w(x), y)`` for a flat ``w`` laid out like ``model.parameters()``."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]

    def loss(w: Tensor) -> Tensor:
        params = {n: c.view(s) for n, c, s in zip(names, w.split(sizes), shapes, strict=True)}
        return nn.functional.cross_entropy(functional_call(model, params, (x,)), y)

    return loss


def grad_at(model: nn.Module, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
    return torch.func.grad(flat_loss(model, x, y))(w)


def hessian_at(model: nn.Module, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
    return torch.func.hessian(flat_loss(model, x, y))(w)


def backward(model: nn.Module, x: Tensor, y: Tensor, create_graph: bool = False) -> Tensor:
    """What the runner does before ``step()``: zero grads, forward, backward."""
    for p in model.parameters():
        p.grad = None
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward(create_graph=create_graph)
    return loss


def closure_for(model: nn.Module, x: Tensor, y: Tensor, create_graph: bool = False):
    """The runner contract's closure: zero grads, recompute the loss on the same batch, backward, return it."""
    def closure() -> Tensor:
        return backward(model, x, y, create_graph).detach()
    return closure
