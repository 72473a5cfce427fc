"""OASIS: the update equals Jahani et al. (ICLR 2022) Algorithm 1 (no official code: the algorithm box transcribed)
computed with explicit Hessians of the regularised objective and the same probes, over 20 steps in float64; the
adaptive step uses the gradient at the previous iterate on the current batch; the schedule scales the adaptive
step; a late parameter is handled; the harness's second closure call builds no double-backward graph."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from bench.distributed import Distributed
from bench.step import closure_step
from optimizers import OASIS
from tests.zoo_nets import backward, closure_for, flat, grad_at, hessian_at, tiny_batch, tiny_net


def rademacher(gen: torch.Generator, n: int) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=gen, dtype=torch.float64) * 2 - 1


def paper_oasis(model, batches, seed, lr, beta2, alpha, init_samples, adaptive, wd=0.0, schedule=None):
    """Algorithm 1 on F(w) = loss(w) + (wd/2)‖w‖² (gradient + wd·w, Hessian + wd·I); the applied step is
    schedule[k]·η_k (schedule None: 1, Algorithm 1 itself)."""
    w = flat(model)
    gen = torch.Generator().manual_seed(seed)
    eye = torch.eye(w.numel(), dtype=w.dtype)
    d = w_prev = None
    eta, theta = lr, math.inf

    def grad(v):
        return grad_at(model, x, y, v) + wd * v

    for k, (x, y) in enumerate(batches):
        hess = hessian_at(model, x, y, w) + wd * eye
        g = grad(w)
        if k == 0:
            zs = [rademacher(gen, w.numel()) for _ in range(init_samples)]
            d = sum(z * (hess @ z) for z in zs) / init_samples
        else:
            z = rademacher(gen, w.numel())
            d = beta2 * d + (1 - beta2) * z * (hess @ z)
        d_hat = d.abs().clamp(min=alpha)
        if k > 0 and adaptive:
            dw, dg = w - w_prev, g - grad(w_prev)
            new = min(math.sqrt(1 + theta) * eta, float((dw @ (d_hat * dw)).sqrt() / (2 * (dg @ (dg / d_hat)).sqrt())))
            theta, eta = new / eta, new
        scale = 1.0 if schedule is None else schedule[k]
        w_prev, w = w, w - scale * eta * g / d_hat
    return w, eta


def run_ours(model, batches, schedule=None, **kwargs) -> OASIS:
    opt = OASIS(model.parameters(), **kwargs)
    for k, (x, y) in enumerate(batches):
        if schedule is not None:
            opt.param_groups[0]["lr"] = kwargs["lr"] * schedule[k]
        opt.step(closure_for(model, x, y, create_graph=True))
    return opt


@pytest.mark.parametrize(("adaptive", "wd"), [(True, 0.0), (False, 0.0), (True, 0.05), (False, 0.05)],
                         ids=["adaptive", "fixed", "adaptive-wd", "fixed-wd"])
def test_oasis_matches_algorithm_1_over_20_steps(adaptive: bool, wd: float) -> None:
    """At the constructor's defaults (η₀ 1, β2 0.99, α 1e-3, one probe for D₀) in adaptive mode; fixed mode at a
    stable lr; with an L2 term whose curvature enters D."""
    model = tiny_net()
    batches = [tiny_batch(seed=s) for s in range(20)]
    hp = dict(lr=1.0, beta2=0.99, alpha=1e-3, init_samples=1) if adaptive else dict(
        lr=0.01, beta2=0.9, alpha=0.01, init_samples=3)
    expected, eta = paper_oasis(copy.deepcopy(model), batches, seed=11, adaptive=adaptive, wd=wd, **hp)
    opt = run_ours(model, batches, seed=11, lr_mode="adaptive" if adaptive else "fixed", weight_decay=wd, **hp)
    diff = float((flat(model) - expected).abs().max())
    print(f"OASIS adaptive={adaptive} wd={wd}: max |Δθ| after 20 steps = {diff:.1e}, η_20 = {opt.eta:.3g}")
    assert diff < 1e-10
    assert opt.eta == pytest.approx(eta, rel=1e-10) and opt.hvp_count == hp["init_samples"] + 19
    assert (opt.eta != hp["lr"]) == adaptive


def test_oasis_adaptive_step_follows_the_schedule() -> None:
    model = tiny_net()
    batches = [tiny_batch(seed=s) for s in range(20)]
    schedule = [1.0] * 8 + [0.1] * 8 + [0.01] * 4
    hp = dict(lr=0.5, beta2=0.99, alpha=1e-3, init_samples=1)
    expected, _ = paper_oasis(copy.deepcopy(model), batches, seed=2, adaptive=True, schedule=schedule, **hp)
    unscheduled, _ = paper_oasis(copy.deepcopy(model), batches, seed=2, adaptive=True, **hp)
    run_ours(model, batches, schedule=schedule, seed=2, **hp)
    assert float((flat(model) - expected).abs().max()) < 1e-10
    assert float((expected - unscheduled).abs().max()) > 1e-3  # the schedule acted


def test_oasis_takes_a_parameter_that_first_gets_a_gradient_later() -> None:
    """The second layer's bias is left out of the loss for two steps: no KeyError, and from then on it moves."""
    model = tiny_net()
    bias = model[2].bias
    opt = OASIS(model.parameters(), lr=0.1, seed=0)
    for k in range(4):
        x, y = tiny_batch(seed=k)

        def closure(k=k, x=x, y=y):
            opt.zero_grad(set_to_none=True)
            out = model[1](model[0](x)) @ model[2].weight.T + (bias if k >= 2 else 0)
            loss = torch.nn.functional.cross_entropy(out, y)
            loss.backward(create_graph=True)
            return loss.detach()

        before = bias.detach().clone()
        opt.step(closure)
        assert torch.equal(bias.detach(), before) == (k < 2)
    assert math.isfinite(opt.eta)


class TinyTask:
    """What bench.step.closure_step asks of a task: its loss on a batch (a mean)."""

    loss_reduction = "mean"

    def loss(self, model, batch):
        x, y = batch
        return torch.nn.functional.cross_entropy(model(x), y), len(y)


def test_harness_closure_keeps_the_graph_on_the_first_call_only() -> None:
    model = tiny_net()
    opt = OASIS(model.parameters(), lr=0.1, seed=0)
    graphs = []
    original = opt._gradients

    def record(params):
        graphs.append([p.grad.grad_fn is not None for p in params])
        return original(params)

    opt._gradients = record
    for s in range(2):
        result = closure_step(TinyTask(), model, opt, tiny_batch(seed=s), hessian=True, device=torch.device("cpu"),
                              amp="none", dist=Distributed.single())
        assert result.grad_evals == (1 if s == 0 else 2)
    # step 0: w_0 only; step 1: w_1 (graph, for the HVP), then w_0 on the same batch (no graph)
    assert [all(g) for g in graphs] == [True, True, False] and not any(graphs[2])


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
    ref = OASIS(ref_model.parameters(), lr=0.05, seed=4, weight_decay=0.01)
    train(ref_model, ref, batches)
    model = tiny_net()
    opt = OASIS(model.parameters(), lr=0.05, seed=4, weight_decay=0.01)
    train(model, opt, batches[:3])
    resumed_model = tiny_net(seed=8)
    resumed_model.load_state_dict(copy.deepcopy(model.state_dict()))
    resumed = OASIS(resumed_model.parameters(), lr=0.05, seed=0, weight_decay=0.01)
    resumed.load_state_dict(copy.deepcopy(opt.state_dict()))
    train(resumed_model, resumed, batches[3:])
    assert torch.equal(flat(resumed_model), flat(ref_model))
