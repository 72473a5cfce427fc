"""M-FAC: equal to the authors' optim.py (IST-DASLab/M-FAC, vendored in tests/reference) over 20 steps in float64
at its defaults and with momentum, decay and a wrapping window; each step is the explicit inverse of the damped
empirical Fisher over the window; no gradient is an error; the buffer is reported; resume is exact."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import pytest
import torch

from optimizers import MFAC
from tests.reference import mfac_optim
from tests.zoo_nets import backward, flat, grad_at, tiny_batch, tiny_net

CPU = torch.device("cpu")


def lu_without_pivoting(a: torch.Tensor, pivot: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.lu(a, pivot=False)`` (CUDA only) for the symmetric positive definite matrix the reference factors:
    from ``a = C Cᵀ`` the unique unpivoted LU is ``L = C diag(C)⁻¹`` (unit lower), ``U = diag(C) Cᵀ``, packed."""
    c = torch.linalg.cholesky(a)
    d = torch.diagonal(c)
    return torch.tril(c / d, -1) + d[:, None] * c.T, torch.arange(1, a.shape[0] + 1, dtype=torch.int32)


@contextlib.contextmanager
def reference_on_cpu() -> Iterator[None]:
    """The reference's two CUDA-only calls, made CPU-runnable: unpivoted LU, and ``parallel_apply`` over its one
    device run serially (with one device that is the same computation)."""
    saved = torch.lu, torch.nn.parallel.parallel_apply
    torch.lu = lu_without_pivoting
    torch.nn.parallel.parallel_apply = lambda fns, inputs: [f(i) for f, i in zip(fns, inputs, strict=True)]
    try:
        yield
    finally:
        torch.lu, torch.nn.parallel.parallel_apply = saved


def reference_hinv(grads: torch.Tensor, damp: float) -> mfac_optim.HInvFastUpMulti:
    """The authors' dynamic algorithm with ``grads`` inserted row by row (in their dtype)."""
    with reference_on_cpu():
        hinv = mfac_optim.HInvFastUpMulti(torch.zeros_like(grads), dev=CPU, gpus=[CPU], damp=damp)
        for g in grads:
            hinv.update(g)
    return _CpuHinv(hinv)


class _CpuHinv:
    def __init__(self, hinv: mfac_optim.HInvFastUpMulti) -> None:
        self.hinv = hinv

    def mul(self, x: torch.Tensor) -> torch.Tensor:
        with reference_on_cpu():
            return self.hinv.mul(x)


def run_reference(model, batches, **kwargs):
    """The authors' MFAC class; its window is hard-coded float32, so it is rebuilt in float64 before step 1."""
    d = flat(model).numel()
    with reference_on_cpu():
        opt = mfac_optim.MFAC(model.parameters(), moddev=CPU, optdev=CPU, **kwargs)
        opt.hinv = mfac_optim.HInvFastUpMulti(torch.zeros(opt.hinv.m, d, dtype=torch.float64), dev=CPU, gpus=[CPU],
                                              damp=kwargs.get("damp", 1e-5))
        if opt.momentum > 0:
            opt.v = opt.v.double()
        for x, y in batches:
            backward(model, x, y)
            opt.step()
    return flat(model)


@pytest.mark.parametrize("kwargs", [
    pytest.param({}, id="defaults", marks=pytest.mark.slow),  # m = 1024: the CPU recursion takes ~30 s
    pytest.param({"ngrads": 32}, id="defaults-m32"),
    pytest.param({"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01, "ngrads": 8, "damp": 1e-3}, id="wrapping"),
])
def test_mfac_matches_the_authors_optim_over_20_steps(kwargs) -> None:
    batches = [tiny_batch(seed=s) for s in range(20)]
    expected = run_reference(tiny_net(), batches, **kwargs)
    model = tiny_net()
    opt = MFAC(model.parameters(), **kwargs)
    for x, y in batches:
        backward(model, x, y)
        opt.step()
    diff, scale = float((flat(model) - expected).abs().max()), float(expected.abs().max())
    print(f"M-FAC {kwargs}: max |Δθ| after 20 steps = {diff:.1e} (max |θ| = {scale:.2f})")
    # At λ = 1e-5 a step is (g − Gᵀy)/λ: float64 cancellation alone is ~1e-16/λ per step, so the bound is relative
    # to the parameters' size (defaults: |θ| grows to ~6, |Δθ| 1.3e-10).
    assert diff <= 1e-10 * max(1.0, scale)


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


def test_mfac_refuses_a_parameter_without_gradient_before_changing_state() -> None:
    model = tiny_net()
    opt = MFAC(model.parameters(), ngrads=4)
    backward(model, *tiny_batch())
    model[2].bias.grad = None
    before = flat(model)
    with pytest.raises(RuntimeError, match=r"parameter\(s\) \[3\].*requires_grad=False"):
        opt.step()
    assert torch.equal(flat(model), before) and opt.last == 0 and not opt.grads.any()


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
