"""SophiaH: the update equals Liu et al. (2023) Algorithm 3 computed with an explicit Hessian and the same probes."""

from __future__ import annotations

import copy

import torch

from optimizers import SophiaH
from tests.zoo_nets import backward, flat, grad_at, hessian_at, tiny_batch, tiny_net


def paper_sophiah(model, batches, seed, lr, betas, rho, clip, eps, wd, k):
    """The paper's equations on flat vectors; probes drawn like the estimator draws them (one flat randn)."""
    w = flat(model)
    gen = torch.Generator().manual_seed(seed)
    m = torch.zeros_like(w)
    h = torch.zeros_like(w)
    for t, (x, y) in enumerate(batches):
        g = grad_at(model, x, y, w)
        if t % k == 0:
            u = torch.randn(w.numel(), generator=gen, dtype=w.dtype)
            h_hat = u * (hessian_at(model, x, y, w) @ u)
            h = betas[1] * h + (1 - betas[1]) * h_hat
        m = betas[0] * m + (1 - betas[0]) * g
        w = w * (1 - lr * wd)
        w = w - lr * torch.clamp(m / torch.clamp(rho * h, min=eps), -clip, clip)
    return w


def test_sophiah_matches_algorithm_3_with_the_same_probes() -> None:
    model = tiny_net()
    batches = [tiny_batch(seed=s) for s in range(5)]
    hp = dict(lr=0.05, betas=(0.9, 0.95), rho=0.5, clip=1.0, eps=1e-12, wd=0.1, k=2)
    expected = paper_sophiah(copy.deepcopy(model), batches, seed=7, **hp)
    opt = SophiaH(model.parameters(), lr=hp["lr"], betas=hp["betas"], rho=hp["rho"], clip=hp["clip"],
                  eps=hp["eps"], weight_decay=hp["wd"], update_each=hp["k"], seed=7)
    clipped = 0
    for t, (x, y) in enumerate(batches):
        backward(model, x, y, create_graph=opt.needs_hessian(t))
        opt.step()
        clipped += int(any((s["momentum"] / s["hessian_moment"].clamp(min=1e-12)).abs().max() > 0.5
                           for s in opt.state.values()))
    torch.testing.assert_close(flat(model), expected, rtol=1e-10, atol=1e-12)
    assert opt.hvp_count == 3 and clipped > 0  # refreshed at steps 0, 2, 4; the clip was active


def test_sophiah_state_dict_round_trip_resumes_exactly() -> None:
    batches = [tiny_batch(seed=s) for s in range(6)]

    def train(model, opt, steps):
        for t, (x, y) in steps:
            backward(model, x, y, create_graph=opt.needs_hessian(t))
            opt.step()

    ref_model = tiny_net()
    ref = SophiaH(ref_model.parameters(), lr=0.05, rho=0.5, update_each=2, seed=3)
    train(ref_model, ref, enumerate(batches))
    model = tiny_net()
    opt = SophiaH(model.parameters(), lr=0.05, rho=0.5, update_each=2, seed=3)
    train(model, opt, list(enumerate(batches))[:3])
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    resumed_model = tiny_net(seed=5)
    resumed_model.load_state_dict(saved_model)
    resumed = SophiaH(resumed_model.parameters(), lr=0.05, rho=0.5, update_each=2, seed=99)
    resumed.load_state_dict(saved_opt)
    train(resumed_model, resumed, list(enumerate(batches))[3:])
    assert torch.equal(flat(resumed_model), flat(ref_model))
