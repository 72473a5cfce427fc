"""Shampoo: steps equal L^(-1/4) G R^(-1/4) from explicit matrix roots, grafting rescales to the graft's norm,
and no tensor of rank >= 2 falls back to the graft step (the library default does, and the check sees it)."""

from __future__ import annotations

import copy

import pytest
import pytorch_optimizer
import torch
from torch import nn

from optimizers import Shampoo
from optimizers.shampoo import unpreconditioned
from tests.zoo_nets import backward, flat, tiny_batch, tiny_net


def inverse_root(mat: torch.Tensor, p: int) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(mat)
    return vecs @ torch.diag(vals ** (-1.0 / p)) @ vecs.T


def test_shampoo_step_is_the_kronecker_inverse_fourth_root_update() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(3, 4, bias=False).double()
    batches = [tiny_batch(seed=s) for s in range(3)]
    w = layer.weight.detach().clone()
    lr, beta2, eps = 0.1, 0.9, 1e-6
    left, right = eps * torch.eye(4, dtype=w.dtype), eps * torch.eye(3, dtype=w.dtype)
    opt = Shampoo(layer.parameters(), lr=lr, betas=(0.0, beta2), graft="none", nesterov=False, use_svd=True,
                  preconditioning_compute_steps=1, start_preconditioning_step=1, matrix_eps=eps)
    for x, _ in batches:
        target = torch.zeros(x.shape[0], 4, dtype=x.dtype)
        w_graph = w.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(nn.functional.mse_loss(x @ w_graph.T, target), w_graph)
        left = beta2 * left + (1 - beta2) * g @ g.T
        right = beta2 * right + (1 - beta2) * g.T @ g
        w = w - lr * inverse_root(left, 4) @ g @ inverse_root(right, 4)
        opt.zero_grad()
        nn.functional.mse_loss(layer(x), target).backward()
        opt.step()
    torch.testing.assert_close(layer.weight.detach(), w, rtol=1e-8, atol=1e-10)


def test_grafting_takes_the_rmsprop_step_norm() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(3, 4, bias=False).double()
    x, _ = tiny_batch()
    w0 = layer.weight.detach().clone()
    opt = Shampoo(layer.parameters(), lr=0.1, betas=(0.0, 0.9), graft="rmsprop", nesterov=False, use_svd=True,
                  preconditioning_compute_steps=1, start_preconditioning_step=1)
    layer(x).pow(2).mean().backward()
    g = layer.weight.grad.detach().clone()
    opt.step()
    graft_step = 0.1 * g / (((1 - 0.9) * g * g).sqrt() + 1e-10)  # diagonal_eps
    step = w0 - layer.weight.detach()
    torch.testing.assert_close(step.norm(), graft_step.norm(), rtol=1e-10, atol=0)
    assert not torch.allclose(step, graft_step)  # the direction is Shampoo's, only the norm is the graft's


def test_no_rank_two_or_more_tensor_falls_back_to_the_graft() -> None:
    conv = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.Flatten(), nn.Linear(16 * 16, 2))
    x = torch.randn(4, 3, 6, 6)
    library = pytorch_optimizer.ScalableShampoo(conv.parameters(), shape_interpretation=True)
    conv(x).sum().backward()
    library.step()
    assert (16, 3, 3, 3) in unpreconditioned(library)  # the library default's silent fallback, caught
    ours = Shampoo(conv.parameters())
    ours.step()
    assert unpreconditioned(ours) == []
    assert ours.extra_state_bytes() > 0


def test_shampoo_trains_and_resumes_exactly() -> None:
    batches = [tiny_batch(seed=s) for s in range(8)]
    kwargs = dict(lr=0.05, preconditioning_compute_steps=2, start_preconditioning_step=2)

    def train(model, opt, part):
        for x, y in part:
            opt.zero_grad()
            backward(model, x, y)
            opt.step()

    ref_model = tiny_net()
    ref = Shampoo(ref_model.parameters(), **kwargs)
    train(ref_model, ref, batches)
    model = tiny_net()
    opt = Shampoo(model.parameters(), **kwargs)
    train(model, opt, batches[:5])
    resumed_model = tiny_net(seed=3)
    resumed_model.load_state_dict(copy.deepcopy(model.state_dict()))
    resumed = Shampoo(resumed_model.parameters(), **kwargs)
    resumed.load_state_dict(copy.deepcopy(opt.state_dict()))
    train(resumed_model, resumed, batches[5:])
    assert torch.equal(flat(resumed_model), flat(ref_model))


def test_unknown_graft_is_refused() -> None:
    with pytest.raises(ValueError, match="graft must be one of"):
        Shampoo(tiny_net().parameters(), graft="adamw")
