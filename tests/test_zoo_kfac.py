"""K-FAC: the hooked factors equal explicitly computed Kronecker factors (Linear and Conv2d), the step is the
explicit damped inverse (A ⊗ G + λI)⁻¹ vec ∇W, hooks come off on detach, and resume is exact."""

from __future__ import annotations

import copy

import torch
from torch import nn

from optimizers import KFAC
from tests.zoo_nets import backward, flat, tiny_batch, tiny_net


def test_linear_factors_and_step_equal_the_explicit_kronecker_inverse() -> None:
    model = tiny_net()
    x, y = tiny_batch()
    n = x.shape[0]
    first, second = model[0], model[2]
    # Explicit: inputs with a ones column, per-example output gradients N·∂L/∂s.
    h = torch.tanh(x @ first.weight.T + first.bias).detach().requires_grad_(True)
    s2 = h @ second.weight.T + second.bias
    s2.retain_grad()
    nn.functional.cross_entropy(s2, y).backward()
    a2 = torch.cat([h.detach(), torch.ones(n, 1, dtype=x.dtype)], dim=1)
    a_expected = sum(torch.outer(r, r) for r in a2) / n
    g_expected = sum(torch.outer(n * r, n * r) for r in s2.grad) / n
    v = torch.cat([second.weight.grad, second.bias.grad[:, None]], dim=1).detach()

    lam, lr = 1e-2, 0.1
    opt = KFAC(model.parameters(), lr=lr, momentum=0.0, damping=lam, kl_clip=0.0)
    opt.attach(model)
    before = second.weight.detach().clone(), second.bias.detach().clone()
    backward(model, x, y)
    opt.step()
    state = opt.state[second.weight]
    torch.testing.assert_close(state["A"], a_expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state["G"], g_expected, rtol=1e-12, atol=1e-12)
    damped = torch.kron(a_expected, g_expected) + lam * torch.eye(a_expected.shape[0] * g_expected.shape[0],
                                                                   dtype=x.dtype)
    u = torch.linalg.solve(damped, v.T.reshape(-1)).reshape(v.shape[1], v.shape[0]).T  # column-major vec
    torch.testing.assert_close(second.weight.detach(), before[0] - lr * u[:, :-1], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(second.bias.detach(), before[1] - lr * u[:, -1], rtol=1e-10, atol=1e-12)
    opt.detach()
    assert not first._forward_hooks and not second._forward_hooks


def test_conv_factors_equal_explicit_patch_sums() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 2, stride=1, padding=1).double()
    model = nn.Sequential(conv, nn.Flatten(), nn.Linear(3 * 5 * 5, 2).double())
    x = torch.randn(4, 2, 4, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0])
    opt = KFAC(model.parameters(), kl_clip=0.0)
    opt.attach(model)
    out = conv(x)
    out.retain_grad()
    nn.functional.cross_entropy(model[2](model[1](out)), y).backward()
    padded = nn.functional.pad(x, (1, 1, 1, 1))
    rows, grads = [], []
    for n in range(4):
        for i in range(5):
            for j in range(5):
                rows.append(torch.cat([padded[n, :, i:i + 2, j:j + 2].reshape(-1), torch.ones(1, dtype=x.dtype)]))
                grads.append(4 * out.grad[n, :, i, j])
    a_expected = sum(torch.outer(r, r) for r in rows) / len(rows)
    g_expected = sum(torch.outer(g, g) for g in grads) / 4
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    torch.testing.assert_close(opt.state[conv.weight]["A"], a_expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(opt.state[conv.weight]["G"], g_expected, rtol=1e-12, atol=1e-12)


def test_kfac_resumes_exactly_and_counts_precondition_time() -> None:
    batches = [tiny_batch(seed=s) for s in range(8)]
    kwargs = dict(lr=0.05, factor_every=2, inverse_every=3)

    def train(model, opt, part):
        for x, y in part:
            backward(model, x, y)
            opt.step()

    ref_model = tiny_net()
    ref = KFAC(ref_model.parameters(), **kwargs)
    ref.attach(ref_model)
    train(ref_model, ref, batches)
    model = tiny_net()
    opt = KFAC(model.parameters(), **kwargs)
    opt.attach(model)
    train(model, opt, batches[:5])
    resumed_model = tiny_net(seed=4)
    resumed_model.load_state_dict(copy.deepcopy(model.state_dict()))
    resumed = KFAC(resumed_model.parameters(), **kwargs)
    resumed.load_state_dict(copy.deepcopy(opt.state_dict()))
    resumed.attach(resumed_model)
    train(resumed_model, resumed, batches[5:])
    assert torch.equal(flat(resumed_model), flat(ref_model))
    assert ref.precond_time_s > 0
