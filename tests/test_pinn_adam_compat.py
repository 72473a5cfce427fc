"""AdaHessian as a drop-in for torch.optim.Adam: every Adam keyword works or is refused in one line, and a
warm start takes over Adam's first moment and step count."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from optimizers import AdaHessian

pytestmark = pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")


def test_every_adam_keyword_is_accepted() -> None:
    adam = set(inspect.signature(torch.optim.Adam.__init__).parameters) - {"self"}
    assert adam <= set(inspect.signature(AdaHessian.__init__).parameters)
    # The same keyword dict, off values as Adam's defaults, builds both optimizers.
    kwargs = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-4, "amsgrad": True,
              "foreach": None, "maximize": False, "capturable": False, "differentiable": False, "fused": None,
              "decoupled_weight_decay": False}
    assert set(kwargs) == adam - {"params"}
    w = nn.Parameter(torch.ones(3))
    torch.optim.Adam([w], **kwargs)
    AdaHessian([w], **kwargs)


@pytest.mark.parametrize("keyword", ["capturable", "differentiable", "fused"])
def test_unsupported_keywords_are_refused_in_one_line(keyword: str) -> None:
    with pytest.raises(ValueError, match=f"{keyword}=True is not supported by AdaHessian") as info:
        AdaHessian([nn.Parameter(torch.ones(2))], **{keyword: True})
    assert "\n" not in str(info.value)


def _trajectory(steps: int = 4, sign: float = 1.0, **kwargs: object) -> tuple[torch.Tensor, AdaHessian]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    x = torch.randn(16, 3, dtype=torch.float64)
    opt = AdaHessian(model.parameters(), lr=0.05, seed=0, **kwargs)
    for _ in range(steps):
        opt.zero_grad()
        (sign * model(x).pow(2).mean()).backward(create_graph=True)
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()]), opt


def test_maximize_ascends_what_minimize_descends() -> None:
    for mode in ("decoupled", "l2"):
        down, _ = _trajectory(weight_decay=0.1, weight_decay_mode=mode)
        up, _ = _trajectory(sign=-1.0, maximize=True, weight_decay=0.1, weight_decay_mode=mode)
        torch.testing.assert_close(up, down, rtol=0, atol=1e-12)


def test_foreach_false_is_the_same_arithmetic() -> None:
    a, _ = _trajectory(foreach=None, amsgrad=True)
    b, _ = _trajectory(foreach=False, amsgrad=True)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-13)


def test_amsgrad_keeps_the_running_maximum_of_the_hessian_moment() -> None:
    plain, _ = _trajectory(steps=8, betas=(0.9, 0.5))  # a short v memory, so v also falls
    ams, opt = _trajectory(steps=8, betas=(0.9, 0.5), amsgrad=True)
    assert not torch.equal(plain, ams)
    states = [opt.state[p] for p in opt.param_groups[0]["params"]]
    assert all((s["max_exp_hessian_diag_sq"] >= s["exp_hessian_diag_sq"]).all() for s in states)
    assert any((s["max_exp_hessian_diag_sq"] > s["exp_hessian_diag_sq"]).any() for s in states)


def test_decoupled_weight_decay_sets_the_mode_and_conflicts_are_refused() -> None:
    l2, _ = _trajectory(weight_decay=0.1, decoupled_weight_decay=False)
    l2_mode, _ = _trajectory(weight_decay=0.1, weight_decay_mode="l2")
    torch.testing.assert_close(l2, l2_mode, rtol=0, atol=0)
    assert AdaHessian([nn.Parameter(torch.ones(1))]).defaults["weight_decay_mode"] == "decoupled"
    with pytest.raises(ValueError, match="pass only one of them"):
        AdaHessian([nn.Parameter(torch.ones(1))], decoupled_weight_decay=True, weight_decay_mode="l2")


def test_warm_start_takes_adams_first_moment_and_step_count() -> None:
    """On f(w) = ½ Σ a w², Rademacher probes give D = a exactly, so the first AdaHessian step is known."""
    a = torch.tensor([0.5, 2.0, 8.0], dtype=torch.float64)
    w = nn.Parameter(torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64))
    adam = torch.optim.Adam([w], lr=0.01)
    for _ in range(5):
        adam.zero_grad()
        (0.5 * (a * w * w).sum()).backward()
        adam.step()
    m_adam = adam.state[w]["exp_avg"].clone()
    opt = AdaHessian([w], lr=0.1, betas=(0.9, 0.999), eps=1e-8, seed=0)
    opt.load_adam_state(adam.state_dict())
    assert opt.step_count == 5 and opt.state[w]["step"] == 5
    torch.testing.assert_close(opt.state[w]["exp_avg"], m_adam)
    w0 = w.detach().clone()
    opt.zero_grad()
    (0.5 * (a * w * w).sum()).backward(create_graph=True)
    opt.step()
    g = a * w0
    m = 0.9 * m_adam + 0.1 * g
    v = 0.001 * a * a  # v restarts at zero, so after one update its bias correction is 1 - 0.999
    expected = w0 - 0.1 * (m / (1 - 0.9**6)) / ((v / 0.001).sqrt() + 1e-8)
    torch.testing.assert_close(w.detach(), expected, rtol=0, atol=1e-12)


def test_warm_start_refuses_a_mismatched_state() -> None:
    adam = torch.optim.Adam([nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(3))])
    with pytest.raises(ValueError, match="covers 2 parameters, this optimizer has 1"):
        AdaHessian([nn.Parameter(torch.ones(2))]).load_adam_state(adam.state_dict())
    with pytest.raises(ValueError, match=r"expected torch\.optim\.Adam"):
        AdaHessian([nn.Parameter(torch.ones(2))]).load_adam_state({"state": {}})
