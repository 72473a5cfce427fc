"""Forward-over-reverse and reverse-over-reverse Hessian-vector products agree, with the estimator's own probes,
on small non-diagonal models (a tanh MLP; a conv net with BatchNorm in train mode), and leave the model's buffers
untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.errors import UsageError
from bench.hvp import CurvatureBatch, resolve_mode
from optimizers.hutchinson import HutchinsonEstimator
from tasks.tensor_data import TensorClassificationTask

CPU = torch.device("cpu")


class RandomTensors(TensorClassificationTask):
    """Random inputs and labels of the given shape, with the model handed in."""

    def __init__(self, model: nn.Module, shape: tuple[int, ...]) -> None:
        generator = torch.Generator().manual_seed(1)
        x = torch.randn(12, *shape, generator=generator, dtype=torch.float64)
        y = torch.randint(0, 3, (12,), generator=generator)
        super().__init__(x, y, x, y, device=CPU, batch_size=12, eval_batch_size=12, seed=0)
        self.model = model

    def build_model(self) -> nn.Module:
        return self.model


def tanh_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))


def conv_bn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Tanh(), nn.Flatten(),
                         nn.Linear(4 * 5 * 5, 3))


CASES = [(tanh_mlp, (5,)), (conv_bn, (2, 5, 5))]


def setup(build, shape) -> tuple[nn.Module, RandomTensors, list[torch.Tensor]]:
    torch.manual_seed(0)
    model = build().double().train()
    return model, RandomTensors(model, shape), list(model.parameters())


@pytest.mark.parametrize(("build", "shape"), CASES, ids=["tanh_mlp", "conv_bn"])
@pytest.mark.parametrize("n_samples", [1, 2])
def test_both_modes_equal_the_optimizer_double_backward_path(build, shape, n_samples: int) -> None:
    model, task, params = setup(build, shape)
    batch = (task.train_x, task.train_y)
    loss, _ = task.loss(model, batch)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    reference = HutchinsonEstimator(n_samples=n_samples, seed=3).raw(params, grads)
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    for mode in ("double_backward", "forward_over_reverse"):
        hvp = CurvatureBatch(task, model, batch, mode=mode, device=CPU)
        estimate = HutchinsonEstimator(n_samples=n_samples, seed=3).raw_from_hvp(params, hvp)
        for got, want in zip(estimate, reference, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
        assert all(torch.equal(b, buffers[name]) for name, b in model.named_buffers()), mode


@pytest.mark.parametrize("mode", ["double_backward", "forward_over_reverse"])
def test_hz_is_the_exact_hessian_times_the_probe(mode: str) -> None:
    """Against the explicit Hessian of the MLP's loss, which has off-diagonal blocks (so agreement with a
    diagonal-only shortcut would fail)."""
    model, task, params = setup(tanh_mlp, (5,))
    names = [name for name, _ in model.named_parameters()]
    sizes = [p.numel() for p in params]

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        tensors = {n: t.view_as(p) for n, t, p in zip(names, flat.split(sizes), params, strict=True)}
        return task.loss(_Swapped(model, tensors),
                         (task.train_x, task.train_y))[0]

    flat = torch.cat([p.detach().reshape(-1) for p in params])
    hessian = torch.func.hessian(loss_of)(flat)
    assert (hessian - torch.diag(torch.diagonal(hessian))).abs().max() > 1e-3
    probes = HutchinsonEstimator(seed=3).probes(params)
    hvp = CurvatureBatch(task, model, (task.train_x, task.train_y), mode=mode, device=CPU)
    hz = torch.cat([h.reshape(-1) for h in hvp(params, probes, False)])
    torch.testing.assert_close(hz, hessian @ torch.cat([z.reshape(-1) for z in probes]), rtol=1e-9, atol=1e-12)


class _Swapped(nn.Module):
    """`model` called with `tensors` in place of its parameters."""

    def __init__(self, model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.inner, self.tensors = model, tensors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(self.inner, self.tensors, (x,))


def test_auto_is_double_backward_and_bad_modes_are_refused() -> None:
    assert resolve_mode("auto") == "double_backward"
    assert resolve_mode("forward_over_reverse") == "forward_over_reverse"
    with pytest.raises(UsageError, match=r"trainer\.hvp_mode=jvp: expected one of auto, double_backward"):
        resolve_mode("jvp")
