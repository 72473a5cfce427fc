"""OASIS: the update equals Jahani et al. (ICLR 2022) Algorithm 1, computed with explicit Hessians and the same
probes; the adaptive step uses the gradient at the previous iterate on the current batch."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from optimizers import OASIS
from tests.zoo_nets import backward, closure_for, flat, grad_at, hessian_at, tiny_batch, tiny_net


def rademacher(gen: torch.Generator, n: int) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=gen, dtype=torch.float64) * 2 - 1


def paper_oasis(model, batches, seed, lr, beta2, alpha, init_samples, adaptive):
    w = flat(model)
    gen = torch.Generator().manual_seed(seed)
    d = w_prev = None
    eta, theta = lr, math.inf
    for k, (x, y) in enumerate(batches):
        hess = hessian_at(model, x, y, w)
        g = grad_at(model, x, y, w)
        if k == 0:
            zs = [rademacher(gen, w.numel()) for _ in range(init_samples)]
            d = sum(z * (hess @ z) for z in zs) / init_samples
        else:
            z = rademacher(gen, w.numel())
            d = beta2 * d + (1 - beta2) * z * (hess @ z)
        d_hat = d.abs().clamp(min=alpha)
        if k > 0 and adaptive:
            dw, dg = w - w_prev, g - grad_at(model, x, y, w_prev)
            new = min(math.sqrt(1 + theta) * eta, float((dw @ (d_hat * dw)).sqrt() / (2 * (dg @ (dg / d_hat)).sqrt())))
            theta, eta = new / eta, new
        w_prev, w = w, w - eta * g / d_hat
    return w, eta


@pytest.mark.parametrize("adaptive", [True, False])
def test_oasis_matches_algorithm_1(adaptive: bool) -> None:
    model = tiny_net()
    batches = [tiny_batch(seed=s) for s in range(5)]
    expected, eta = paper_oasis(copy.deepcopy(model), batches, seed=11, lr=0.05, beta2=0.9, alpha=0.01,
                                init_samples=3, adaptive=adaptive)
    opt = OASIS(model.parameters(), lr=0.05, beta2=0.9, alpha=0.01, init_samples=3, seed=11,
                lr_mode="adaptive" if adaptive else "fixed")
    for x, y in batches:
        opt.step(closure_for(model, x, y, create_graph=True))
    torch.testing.assert_close(flat(model), expected, rtol=1e-10, atol=1e-12)
    assert opt.eta == pytest.approx(eta, rel=1e-10) and opt.hvp_count == 3 + 4
    assert (opt.eta != 0.05) == adaptive


def test_oasis_adaptive_without_a_closure_says_what_to_do() -> None:
    model = tiny_net()
    opt = OASIS(model.parameters(), seed=0)
    for s in range(2):
        backward(model, *tiny_batch(seed=s), create_graph=True)
        if s == 1:
            with pytest.raises(RuntimeError, match="needs step\\(closure\\)"):
                opt.step()
        else:
            opt.step()


def test_oasis_state_dict_round_trip_resumes_exactly() -> None:
    batches = [tiny_batch(seed=s) for s in range(6)]

    def train(model, opt, part):
        for x, y in part:
            opt.step(closure_for(model, x, y, create_graph=True))

    ref_model = tiny_net()
    ref = OASIS(ref_model.parameters(), lr=0.05, seed=4)
    train(ref_model, ref, batches)
    model = tiny_net()
    opt = OASIS(model.parameters(), lr=0.05, seed=4)
    train(model, opt, batches[:3])
    resumed_model = tiny_net(seed=8)
    resumed_model.load_state_dict(copy.deepcopy(model.state_dict()))
    resumed = OASIS(resumed_model.parameters(), lr=0.05, seed=0)
    resumed.load_state_dict(copy.deepcopy(opt.state_dict()))
    train(resumed_model, resumed, batches[3:])
    assert torch.equal(flat(resumed_model), flat(ref_model))
