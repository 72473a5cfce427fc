"""M-FAC: each step is the explicit inverse of the damped empirical Fisher over the gradient window applied to
the gradient, the window slides, the buffer is reported, and resume is exact."""

from __future__ import annotations

import copy

import torch

from optimizers import MFAC
from tests.zoo_nets import backward, flat, grad_at, tiny_batch, tiny_net


def test_mfac_steps_with_the_explicit_inverse_damped_fisher() -> None:
    model = tiny_net()
    batches = [tiny_batch(seed=s) for s in range(6)]
    m, lam, lr, mu = 3, 1e-2, 0.1, 0.5
    w = flat(model)
    window: list[torch.Tensor] = []
    v = torch.zeros_like(w)
    reference = copy.deepcopy(model)
    for x, y in batches:
        g = grad_at(reference, x, y, w)
        window = [*window, g][-m:]  # the last m gradients; the order does not change the Fisher
        fisher = lam * torch.eye(w.numel(), dtype=w.dtype) + sum(torch.outer(h, h) for h in window) / m
        v = mu * v + (1 - mu) * torch.linalg.inv(fisher) @ g
        w = w - lr * v
    opt = MFAC(model.parameters(), lr=lr, momentum=mu, ngrads=m, damp=lam)
    for x, y in batches:
        backward(model, x, y)
        opt.step()
    torch.testing.assert_close(flat(model), w, rtol=1e-8, atol=1e-10)
    d = w.numel()
    assert opt.extra_state_bytes() == (m * d + m * m + d) * 8


def test_mfac_resumes_exactly() -> None:
    batches = [tiny_batch(seed=s) for s in range(8)]

    def train(model, opt, part):
        for x, y in part:
            backward(model, x, y)
            opt.step()

    ref_model = tiny_net()
    ref = MFAC(ref_model.parameters(), lr=0.05, momentum=0.9, ngrads=4, damp=1e-3)
    train(ref_model, ref, batches)
    model = tiny_net()
    opt = MFAC(model.parameters(), lr=0.05, momentum=0.9, ngrads=4, damp=1e-3)
    train(model, opt, batches[:5])
    resumed_model = tiny_net(seed=2)
    resumed_model.load_state_dict(copy.deepcopy(model.state_dict()))
    resumed = MFAC(resumed_model.parameters(), lr=0.05, momentum=0.9, ngrads=4, damp=1e-3)
    resumed.load_state_dict(copy.deepcopy(opt.state_dict()))
    train(resumed_model, resumed, batches[5:])
    assert torch.equal(flat(resumed_model), flat(ref_model))
