"""AdaHessian: exact steps on quadratics, an independent reference trajectory, delayed updates,
resume, weight decay modes, hooks, errors and graph lifetime."""

from __future__ import annotations

import gc
import io
import math
import subprocess
import sys
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from optimizers import AdaHessian

pytestmark = pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")

ROOT = Path(__file__).resolve().parents[1]


def _quadratic_step(w: nn.Parameter, a: torch.Tensor, opt: AdaHessian) -> None:
    opt.zero_grad()
    (0.5 * (a * w * w).sum()).backward(create_graph=True)
    opt.step()


def _kernel_mean(a: torch.Tensor) -> torch.Tensor:
    return a.mean(dim=tuple(range(2, a.dim())), keepdim=True)


def test_diagonal_quadratic_minimum_in_one_step() -> None:
    a = torch.tensor([0.3, 1.0, 4.0, 25.0], dtype=torch.float64)
    w = nn.Parameter(torch.tensor([1.0, -2.0, 3.0, 0.5], dtype=torch.float64))
    opt = AdaHessian([w], lr=1.0, betas=(0.0, 0.0), eps=1e-12, hessian_power=1.0, seed=0)
    _quadratic_step(w, a, opt)
    assert torch.allclose(w.detach(), torch.zeros(4, dtype=torch.float64), atol=1e-9)


@pytest.mark.parametrize("shape", [(3, 2, 5), (3, 2, 3, 3), (2, 2, 2, 3, 2)])
def test_spatial_averaging_step_on_conv_shaped_params(shape: tuple[int, ...]) -> None:
    """Curvature varies inside each kernel; D is its kernel mean, so w₁ = w₀ − a·w₀/mean_kernel(a)."""
    g = torch.Generator().manual_seed(0)
    a = torch.rand(shape, generator=g, dtype=torch.float64) * 4 + 0.5
    w0 = torch.randn(shape, generator=g, dtype=torch.float64)
    w = nn.Parameter(w0.clone())
    opt = AdaHessian([w], lr=1.0, betas=(0.0, 0.0), eps=1e-12, seed=0)
    _quadratic_step(w, a, opt)
    assert torch.allclose(w.detach(), w0 - a * w0 / _kernel_mean(a), atol=1e-9)
    # Without spatial averaging the step is the exact diagonal Newton step.
    w = nn.Parameter(w0.clone())
    opt = AdaHessian([w], lr=1.0, betas=(0.0, 0.0), eps=1e-12, seed=0, spatial_average=False)
    _quadratic_step(w, a, opt)
    assert torch.allclose(w.detach(), torch.zeros(shape, dtype=torch.float64), atol=1e-9)


def test_conv1d_and_conv3d_models_train() -> None:
    torch.manual_seed(0)
    for model, x in [
        (nn.Sequential(nn.Conv1d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 6, 1)), torch.randn(4, 2, 8)),
        (nn.Sequential(nn.Conv3d(1, 2, 2), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 27, 1)), torch.randn(4, 1, 4, 4, 4)),
    ]:
        opt = AdaHessian(model.parameters(), lr=0.05, seed=0)
        losses = []
        for _ in range(5):
            opt.zero_grad()
            loss = model(x).pow(2).mean()
            loss.backward(create_graph=True)
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < losses[0]
        conv = model[0]
        d = opt.state[conv.weight]["hessian_diag"]
        assert bool((d.flatten(2) == d.flatten(2)[..., :1]).all())  # one value per kernel


# ---------------------------------------------------------------------------------------------------
class _Pointwise(nn.Module):
    """Two channel mixes with a tanh between, as Linear layers or as SqueezeBERT's 1x1 Conv1d layers."""

    def __init__(self, conv: bool) -> None:
        super().__init__()
        make = (lambda i, o: nn.Conv1d(i, o, 1)) if conv else nn.Linear
        self.conv = conv
        self.a, self.b = make(8, 12), make(12, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, 8]
        if self.conv:
            return self.b(torch.tanh(self.a(x.unsqueeze(-1)))).squeeze(-1)
        return self.b(torch.tanh(self.a(x)))


def _pointwise_run(conv: bool, block_size: int, steps: int = 4) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    torch.manual_seed(0)
    model = _Pointwise(conv=False).double()
    if conv:
        state = {k: v.unsqueeze(-1) if v.dim() == 2 else v for k, v in model.state_dict().items()}
        model = _Pointwise(conv=True).double()
        model.load_state_dict(state)
    opt = AdaHessian(model.parameters(), lr=0.05, block_size=block_size, seed=1)
    g = torch.Generator().manual_seed(2)
    for _ in range(steps):
        x, y = torch.randn(6, 8, generator=g, dtype=torch.float64), torch.randn(6, 2, generator=g, dtype=torch.float64)
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward(create_graph=True)
        opt.step()
    weights = [p.detach().reshape(p.shape[:2]) if p.dim() == 3 else p.detach() for p in model.parameters()]
    diags = [opt.state[p]["hessian_diag"] for p in model.parameters()]
    return weights, [d.reshape(d.shape[:2]) if d.dim() == 3 else d for d in diags]


def test_pointwise_conv1d_model_takes_the_same_steps_as_the_linear_model_in_float64() -> None:
    """SqueezeBERT's weights are [out, in, 1] Conv1d kernels: with block_size 4 AdaHessian must update them as the
    equivalent Linear [out, in] weights (same probes), blocks of 4 input channels included."""
    lin_w, lin_d = _pointwise_run(conv=False, block_size=4)
    conv_w, conv_d = _pointwise_run(conv=True, block_size=4)
    for a, b in zip(lin_w + lin_d, conv_w + conv_d, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-14)
    assert lin_d[0].view(12, 2, 4).unique(dim=-1).shape[-1] == 1  # blocks of 4 input channels
    elementwise_w, _ = _pointwise_run(conv=True, block_size=1)
    assert not torch.allclose(elementwise_w[0], conv_w[0])  # the block size reaches the conv weights


# Independent reference: the paper's equations, per parameter, written without the optimizer's code.


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.fc = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


def _data(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(11)
    return [
        (torch.randn(4, 2, 6, 6, generator=g, dtype=torch.float64), torch.randn(4, 2, generator=g, dtype=torch.float64))
        for _ in range(steps)
    ]


def _probe_sequence(model: nn.Module, steps: int) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(22)
    return [
        [torch.randint(0, 2, p.shape, generator=g, dtype=p.dtype) * 2.0 - 1.0 for p in model.parameters()]
        for _ in range(steps)
    ]


def _reference_run(
    model: nn.Module,
    data: list[tuple[torch.Tensor, torch.Tensor]],
    probes: list[list[torch.Tensor]],
    *,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    wd: float,
    k: float,
    update_each: int,
    warmup: int,
) -> list[list[torch.Tensor]]:
    params = list(model.parameters())
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    d: list[torch.Tensor] = []
    used = iter(probes)
    trajectory = []
    for t, (x, y) in enumerate(data, start=1):
        loss = ((model(x) - y) ** 2).mean()
        refresh = (t - 1) < warmup or (t - 1) % update_each == 0
        grads = torch.autograd.grad(loss, params, create_graph=refresh)
        if refresh:
            z = next(used)
            hz = torch.autograd.grad(grads, params, grad_outputs=z)
            d = []
            for zi, hzi in zip(z, hz, strict=True):
                di = (zi * hzi).abs()
                if di.dim() == 4:  # conv kernel: one value per kernel (Eq. 10)
                    di = di.mean(dim=[2, 3], keepdim=True).expand_as(di)
                d.append(di)
        with torch.no_grad():
            for i, p in enumerate(params):
                g = grads[i].detach()
                m[i] = betas[0] * m[i] + (1 - betas[0]) * g
                v[i] = betas[1] * v[i] + (1 - betas[1]) * d[i] * d[i]
                denom = v[i].sqrt() ** k / math.sqrt(1 - betas[1] ** t) ** k + eps
                p.copy_(p - lr * (m[i] / (1 - betas[0] ** t) / denom + wd * p))
        trajectory.append([p.detach().clone() for p in params])
    return trajectory


def _injected(probes: list[list[torch.Tensor]]) -> Callable[[list[torch.Tensor]], list[torch.Tensor]]:
    it: Iterator[list[torch.Tensor]] = iter(probes)
    return lambda params: [z.clone() for z in next(it)]


@pytest.mark.parametrize(("k", "update_each", "warmup"), [(1.0, 1, 0), (0.5, 3, 2)])
def test_matches_reference_implementation_over_20_steps(k: float, update_each: int, warmup: int) -> None:
    steps = 20
    hp = {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-4, "wd": 1e-2, "k": k}
    torch.manual_seed(0)
    ref_model = _Net().double()
    model = _Net().double()
    model.load_state_dict(ref_model.state_dict())
    data = _data(steps)
    probes = _probe_sequence(model, steps)

    expected = _reference_run(ref_model, data, probes, update_each=update_each, warmup=warmup, **hp)

    opt = AdaHessian(
        model.parameters(),
        lr=hp["lr"],
        betas=hp["betas"],
        eps=hp["eps"],
        weight_decay=hp["wd"],
        hessian_power=k,
        update_each=update_each,
        hessian_warmup_steps=warmup,
    )
    opt.estimator.probes = _injected(probes)
    for step, (x, y) in enumerate(data):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward(create_graph=opt.needs_hessian(step))
        opt.step()
        for p, e in zip(model.parameters(), expected[step], strict=True):
            assert torch.allclose(p.detach(), e, rtol=0, atol=1e-6), f"step {step}"
    assert (expected[-1][0] - expected[0][0]).abs().max() > 1e-2  # the trajectory actually moves


# ---------------------------------------------------------------------------------------------------


def _train(
    model: nn.Module, opt: AdaHessian, data: list[tuple[torch.Tensor, torch.Tensor]], loss_extra=None
) -> list[float]:
    losses = []
    for x, y in data:
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        if loss_extra is not None:
            loss = loss + loss_extra(model)
        loss.backward(create_graph=opt.needs_hessian(opt.step_count))
        opt.step()
        losses.append(loss.item())
    return losses


def test_delayed_update_schedule_and_hvp_count() -> None:
    torch.manual_seed(0)
    model = _Net().double()
    opt = AdaHessian(model.parameters(), lr=0.01, update_each=3, hessian_warmup_steps=2, n_samples=2, seed=0)
    assert [s for s in range(12) if opt.needs_hessian(s)] == [0, 1, 3, 6, 9]
    assert not AdaHessian(model.parameters(), update_each=4).needs_hessian(5)
    assert AdaHessian(model.parameters(), update_each=4).needs_hessian(8)
    refreshed, ds = [], []
    for step, (x, y) in enumerate(_data(10)):
        opt.zero_grad()
        # create_graph on every step: on non-refresh steps the graph is simply dropped.
        ((model(x) - y) ** 2).mean().backward(create_graph=True)
        before = opt.hvp_count
        opt.step()
        refreshed.append(opt.hvp_count > before)
        ds.append(opt.state[model.conv.weight]["hessian_diag"])
        assert opt.step_count == step + 1
    assert [i for i, r in enumerate(refreshed) if r] == [0, 1, 3, 6, 9]
    assert opt.hvp_count == 5 * 2
    # D is reused (same tensor) between refreshes and replaced at refreshes.
    assert [ds[i] is ds[i - 1] for i in range(1, 10)] == [not r for r in refreshed[1:]]


@pytest.mark.parametrize("v_update", ["every_step", "on_refresh"])
def test_v_update_variants(v_update: str) -> None:
    torch.manual_seed(0)
    model = _Net().double()
    opt = AdaHessian(model.parameters(), lr=0.01, update_each=3, v_update=v_update, seed=0)
    vs = []
    for x, y in _data(4):
        _train(model, opt, [(x, y)])
        vs.append(opt.state[model.fc.weight]["exp_hessian_diag_sq"].clone())
    changed = [not torch.equal(vs[i], vs[i - 1]) for i in range(1, 4)]
    assert changed == ([True, True, True] if v_update == "every_step" else [False, False, True])
    state = opt.state[model.fc.weight]
    assert (state["step"], state["hessian_step"]) == (4, 2)


def test_plain_backward_on_a_refresh_step_is_a_clear_error() -> None:
    torch.manual_seed(0)
    model = _Net().double()
    opt = AdaHessian(model.parameters(), update_each=2, seed=0)
    data = _data(3)
    x, y = data[0]
    ((model(x) - y) ** 2).mean().backward()
    with pytest.raises(RuntimeError, match=r"loss\.backward\(create_graph=True\).*needs_hessian"):
        opt.step()
    opt.zero_grad()
    _train(model, opt, data)  # plain backward on the non-refresh step 1 is fine
    assert opt.hvp_count == 2


def test_resume_is_bitwise_identical() -> None:
    data = _data(12)
    torch.manual_seed(0)
    model = _Net().double()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    kwargs = {"lr": 0.05, "weight_decay": 1e-3, "update_each": 2, "hessian_warmup_steps": 2, "n_samples": 2}
    opt = AdaHessian(model.parameters(), seed=7, **kwargs)
    _train(model, opt, data)
    uninterrupted = [p.detach().clone() for p in model.parameters()]

    model = _Net().double()
    model.load_state_dict(start)
    opt = AdaHessian(model.parameters(), seed=7, **kwargs)
    _train(model, opt, data[:5])  # stop mid-cycle: step 5 is not a refresh step
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)

    model = _Net().double()
    model.load_state_dict(ckpt["model"])
    opt = AdaHessian(model.parameters(), seed=None, **kwargs)  # seed comes from the checkpoint
    opt.load_state_dict(ckpt["opt"])
    assert (opt.step_count, opt.hvp_count) == (5, 2 * 4)
    _train(model, opt, data[5:])
    assert all(torch.equal(p, u) for p, u in zip(model.parameters(), uninterrupted, strict=True))
    assert opt.hvp_count == 2 * 7
    with pytest.raises(ValueError, match="not an AdaHessian state_dict"):
        opt.load_state_dict(torch.optim.SGD(model.parameters()).state_dict())


def test_weight_decay_modes() -> None:
    wd, lr = 0.1, 0.05
    data = _data(4)
    torch.manual_seed(0)
    start = _Net().double().state_dict()

    def run(loss_extra=None, **kwargs) -> list[torch.Tensor]:
        model = _Net().double()
        model.load_state_dict(start)
        opt = AdaHessian(model.parameters(), lr=lr, seed=3, **kwargs)
        _train(model, opt, data, loss_extra)
        return [p.detach().clone() for p in model.parameters()]

    def penalty(model: nn.Module) -> torch.Tensor:
        return 0.5 * wd * sum((p * p).sum() for p in model.parameters())

    decoupled = run(weight_decay=wd)
    l2 = run(weight_decay=wd, weight_decay_mode="l2")
    in_loss = run(loss_extra=penalty)
    assert all((a - b).abs().max() > 1e-4 for a, b in zip(decoupled, l2, strict=True))
    # l2 mode is the penalty in the loss: its gradient and its curvature (wd on the diagonal).
    assert all(torch.allclose(a, b, rtol=0, atol=1e-10) for a, b in zip(l2, in_loss, strict=True))

    # Decoupled: one step equals the undecayed step minus lr·wd·p₀.
    def one_step(**kwargs) -> list[torch.Tensor]:
        model = _Net().double()
        model.load_state_dict(start)
        opt = AdaHessian(model.parameters(), lr=lr, seed=3, **kwargs)
        _train(model, opt, data[:1])
        return [p.detach().clone() for p in model.parameters()]

    p0 = [t.clone() for t in start.values()]
    for a, b, p in zip(one_step(weight_decay=wd), one_step(), p0, strict=True):
        assert torch.allclose(a, b - lr * wd * p, rtol=0, atol=1e-12)


def test_reduce_hook_set_after_construction_is_used() -> None:
    a = torch.tensor([0.5, 2.0], dtype=torch.float64)
    w = nn.Parameter(torch.tensor([1.0, 1.0], dtype=torch.float64))
    opt = AdaHessian([w], lr=1.0, betas=(0.0, 0.0), eps=1e-12, seed=0)
    calls = []

    def fake_all_reduce(tensors: list[torch.Tensor]) -> None:
        calls.append(len(tensors))
        torch._foreach_mul_(tensors, 4.0)  # as if the other ranks saw 7x the curvature

    opt.hessian_reduce = fake_all_reduce
    _quadratic_step(w, a, opt)
    assert calls == [1]
    assert torch.allclose(w.detach(), torch.full((2,), 0.75, dtype=torch.float64))
    with pytest.raises(ValueError):
        opt.hessian_reduce = 3


def test_gaussian_probe() -> None:
    a = torch.tensor([0.5, 2.0, 8.0], dtype=torch.float64)
    w = nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = AdaHessian([w], lr=1.0, betas=(0.0, 0.0), eps=1e-12, probe="gaussian", n_samples=4000, seed=0)
    _quadratic_step(w, a, opt)
    d = opt.state[w]["hessian_diag"]
    # z² has variance 2: the mean of 4000 samples is within 5·sqrt(2/4000) of 1.
    assert torch.all((d / a - 1).abs() < 5 * math.sqrt(2 / 4000))
    assert not torch.equal(d, a)


def test_update_hessian_before_clipping_and_graph_is_freed() -> None:
    torch.manual_seed(0)
    model = _Net().double()
    opt = AdaHessian(model.parameters(), lr=0.01, seed=0)
    x, y = _data(1)[0]
    x = x.clone()
    x_ref = weakref.ref(x)  # the conv weight's gradient graph saves the input
    loss = ((model(x) - y) ** 2).mean()
    loss.backward(create_graph=True)
    assert model.conv.weight.grad.grad_fn is not None
    assert opt.update_hessian() is True
    assert all(p.grad.grad_fn is None for p in model.parameters())
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1e-3)
    assert opt.update_hessian() is False  # at most one estimate per step
    opt.step()
    assert opt.hvp_count == 1
    opt.zero_grad(set_to_none=True)
    del x, loss
    gc.collect()
    assert x_ref() is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": 0.0},
        {"lr": -1.0},
        {"betas": (1.0, 0.9)},
        {"betas": (0.9, -0.1)},
        {"eps": 0.0},
        {"weight_decay": -1.0},
        {"hessian_power": 1.5},
        {"weight_decay_mode": "adamw"},
        {"update_each": 0},
        {"update_each": 1.5},
        {"hessian_warmup_steps": -1},
        {"v_update": "sometimes"},
        {"n_samples": 0},
        {"probe": "sphere"},
        {"block_size": 0},
    ],
)
def test_invalid_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        AdaHessian([nn.Parameter(torch.zeros(2))], **kwargs)


def test_param_groups_override_and_are_validated() -> None:
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    opt = AdaHessian([{"params": [a]}, {"params": [b], "lr": 0.01, "weight_decay": 0.0}], weight_decay=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.15, 0.01]
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(1))], "lr": -1.0})
    assert len(opt.param_groups) == 2


def test_import_does_not_pull_in_bench() -> None:
    code = "import sys; from optimizers import AdaHessian; assert 'bench' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_and_resume() -> None:
    torch.manual_seed(0)
    model = _Net().cuda()
    data = [(x.float().cuda(), y.float().cuda()) for x, y in _data(6)]
    opt = AdaHessian(model.parameters(), lr=0.01, update_each=2, seed=1)
    _train(model, opt, data[:3])
    ckpt = {"model": {k: v.clone() for k, v in model.state_dict().items()}, "opt": opt.state_dict()}
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    _train(model, opt, data[3:])
    expected = [p.detach().clone() for p in model.parameters()]
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    model = _Net().cuda()
    model.load_state_dict(ckpt["model"])
    opt = AdaHessian(model.parameters(), lr=0.01, update_each=2)
    opt.load_state_dict(ckpt["opt"])
    _train(model, opt, data[3:])
    assert all(torch.equal(p, e) for p, e in zip(model.parameters(), expected, strict=True))
    assert opt.state[model.conv.weight]["hessian_diag"].device.type == "cuda"
