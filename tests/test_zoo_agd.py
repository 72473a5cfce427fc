"""AGD: the update equals Yue et al. (NeurIPS 2023) Algorithm 1 computed on flat vectors, including the
auto-switch to SGD; and equals atorch's AGD (its agd.py vendored in tests/reference, Apache-2.0) over 20 steps in
float64, at atorch's defaults and with decoupled and L2 decay; the CIFAR recipe's decay is atorch's demo's."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from bench.config import compose_config
from optimizers import AGD
from tests.reference.atorch_agd import AGD as AtorchAGD
from tests.zoo_nets import backward, flat, grad_at, tiny_batch, tiny_net


def paper_agd(model, batches, lr, betas, delta, wd, mode="decoupled"):
    w = flat(model)
    m = torch.zeros_like(w)
    b = torch.zeros_like(w)
    m_hat_prev = torch.zeros_like(w)
    switched = 0
    for t, (x, y) in enumerate(batches, start=1):
        g = grad_at(model, x, y, w) + (wd * w if mode == "l2" else 0)
        m = betas[0] * m + (1 - betas[0]) * g
        m_hat = m / (1 - betas[0] ** t)
        s = m_hat - m_hat_prev
        m_hat_prev = m_hat
        b = betas[1] * b + (1 - betas[1]) * s * s
        b_hat = b / (1 - betas[1] ** t)
        switched += int((b_hat.sqrt() < delta).sum())
        w = w * (1 - lr * wd) if mode == "decoupled" else w
        w = w - lr * m_hat / torch.maximum(b_hat.sqrt(), torch.full_like(w, delta))
    return w, switched


def test_agd_matches_algorithm_1_with_both_regimes() -> None:
    model = tiny_net()
    batches = [tiny_batch(seed=s) for s in range(6)]
    expected, switched = paper_agd(copy.deepcopy(model), batches, lr=0.01, betas=(0.9, 0.99), delta=0.02, wd=0.1)
    opt = AGD(model.parameters(), lr=0.01, betas=(0.9, 0.99), delta=0.02, weight_decay=0.1)
    for x, y in batches:
        backward(model, x, y)
        opt.step()
    torch.testing.assert_close(flat(model), expected, rtol=1e-10, atol=1e-12)
    n = flat(model).numel() * len(batches)
    assert 0 < switched < n  # both the SGD and the adaptive regime were exercised


def test_agd_l2_weight_decay_enters_the_gradient() -> None:
    model = tiny_net()
    batches = [tiny_batch(seed=s) for s in range(3)]
    expected, _ = paper_agd(copy.deepcopy(model), batches, lr=0.01, betas=(0.9, 0.99), delta=0.02, wd=0.1, mode="l2")
    opt = AGD(model.parameters(), lr=0.01, betas=(0.9, 0.99), delta=0.02, weight_decay=0.1, weight_decay_mode="l2")
    for x, y in batches:
        backward(model, x, y)
        opt.step()
    torch.testing.assert_close(flat(model), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("ours_kwargs", "atorch_kwargs"), [
    ({}, {}),  # atorch's defaults: lr 1e-3, betas (0.9, 0.999), delta 1e-5, no decay
    ({"lr": 0.01, "delta": 1e-3, "weight_decay": 0.05}, {"lr": 0.01, "delta": 1e-3, "weight_decay": 0.05}),
    ({"lr": 0.01, "weight_decay": 0.05, "weight_decay_mode": "l2", "amsgrad": True},
     {"lr": 0.01, "weight_decay": 0.05, "weight_decouple": False, "amsgrad": True}),
], ids=["defaults", "decoupled", "l2-amsgrad"])
def test_agd_matches_atorch_over_20_steps(ours_kwargs, atorch_kwargs) -> None:
    ours_model, theirs_model = tiny_net(), tiny_net()
    ours = AGD(ours_model.parameters(), **ours_kwargs)
    theirs = AtorchAGD(theirs_model.parameters(), **atorch_kwargs)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # atorch counts steps in torch.tensor(0.0): float64 like the net
    try:
        for s in range(20):
            x, y = tiny_batch(seed=s)
            for model, opt in ((ours_model, ours), (theirs_model, theirs)):
                backward(model, x, y)
                opt.step()
    finally:
        torch.set_default_dtype(default)
    diff = float((flat(ours_model) - flat(theirs_model)).abs().max())
    print(f"AGD {ours_kwargs}: max |Δθ| after 20 steps = {diff:.1e}")
    assert diff < 1e-10


def test_cifar_recipe_decays_per_step_like_the_atorch_demo() -> None:
    """atorch's demo passes --weight-decay / lr to AGD, so θ shrinks by the demo's 5e-4 per step at its lr."""
    for overrides in (["task=cifar10_resnet20"], ["task=cifar10_resnet20", "optimizer.lr=3e-3"],
                      ["task=cifar10_resnet32"]):
        cfg = compose_config([*overrides, "optimizer=agd"])
        assert cfg.optimizer.lr * cfg.optimizer.weight_decay == pytest.approx(5e-4, rel=1e-12)
        assert cfg.optimizer.weight_decay_mode == "decoupled"


def test_agd_resumes_exactly() -> None:
    batches = [tiny_batch(seed=s) for s in range(6)]

    def train(model, opt, part):
        for x, y in part:
            backward(model, x, y)
            opt.step()

    ref_model = tiny_net()
    ref = AGD(ref_model.parameters(), lr=0.01)
    train(ref_model, ref, batches)
    model = tiny_net()
    opt = AGD(model.parameters(), lr=0.01)
    train(model, opt, batches[:3])
    resumed_model = tiny_net(seed=6)
    resumed_model.load_state_dict(copy.deepcopy(model.state_dict()))
    resumed = AGD(resumed_model.parameters(), lr=0.01)
    resumed.load_state_dict(copy.deepcopy(opt.state_dict()))
    train(resumed_model, resumed, batches[3:])
    assert torch.equal(flat(resumed_model), flat(ref_model))
    assert math.isfinite(float(flat(ref_model).sum()))
