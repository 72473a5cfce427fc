"""Shampoo: the reference's structure (merged dims, blocks, exponents) and the per-dimension option, steps equal
to L^(-1/4) G R^(-1/4) from explicit roots, grafting to the graft's norm, failed roots keep the previous
preconditioner, no global RNG, refusals before any state changes, both weight-decay modes, momentum as stated,
and a state_dict of plain values that resumes exactly and loads weights-only."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from optimizers import Shampoo
from optimizers.shampoo import merge_small_dims
from tests.zoo_nets import backward, flat, tiny_batch, tiny_net


def structure(shape: tuple[int, ...], **kwargs: object) -> tuple[tuple[int, ...], list[int], int, bool]:
    lay = Shampoo([torch.zeros(shape, requires_grad=True)], **kwargs).layout(torch.zeros(shape))
    return lay.transformed, lay.statistic_sizes, lay.exponent, lay.preconditioned


def test_default_structure_is_the_references() -> None:
    assert merge_small_dims((1, 2, 512, 1, 2048, 1, 3, 4), 1024) == [1024, 2048, 12]  # the reference's examples
    assert merge_small_dims((1, 2, 768, 1, 2048), 1024) == [2, 768, 2048]
    assert merge_small_dims((1, 1), 4096) == [1]
    assert structure((16, 3, 3, 3)) == ((432,), [128, 128, 128, 48], 2, True)  # one dim, cut at 128
    assert structure((16, 16, 3, 3)) == ((2304,), [128] * 18, 2, True)
    assert structure((64, 64, 3, 3)) == ((4096, 9), [128, 9] * 32, 4, True)
    assert structure((16,)) == ((16,), [16], 2, True)  # vectors get a full-matrix statistic
    assert structure((10, 5000))[3] is False  # a dim over skip_preconditioning_dim_size_gt: graft only


def test_merging_at_512_gives_256_by_9_and_one_432_statistic() -> None:
    kwargs = dict(block_size=512, merge_small_dims_block_size=512)
    assert structure((16, 16, 3, 3), **kwargs) == ((256, 9), [256, 9], 4, True)
    assert structure((16, 3, 3, 3), **kwargs) == ((432,), [432], 2, True)


def test_per_dimension_form_keeps_every_dim() -> None:
    assert structure((16, 16, 3, 3), merge_small_dims=False) == ((16, 16, 3, 3), [16, 16, 3, 3], 8, True)


def test_layer_with_a_dim_over_the_limit_takes_the_graft_step_without_error() -> None:
    emb = nn.Parameter(torch.randn(5000, 2, dtype=torch.float64))
    before = emb.detach().clone()
    opt = Shampoo([emb], lr=0.1, betas=(0.0, 0.9), nesterov=False, start_preconditioning_step=0)
    emb.grad = torch.ones_like(emb)
    opt.step()
    assert opt.state[emb]["statistics"] == []
    torch.testing.assert_close(emb.detach(), before - 0.1 * torch.ones_like(emb))  # the SGD graft's step


def inverse_root(mat: torch.Tensor, p: int, eps: float) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(mat)
    vals = vals + eps * vals.max()  # the relative ridge
    return vecs @ torch.diag(vals ** (-1.0 / p)) @ vecs.T


def test_step_is_the_kronecker_inverse_fourth_root_update() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(3, 4, bias=False).double()
    w = layer.weight.detach().clone()
    lr, beta2, eps = 0.1, 0.9, 1e-6
    left, right = eps * torch.eye(4, dtype=w.dtype), eps * torch.eye(3, dtype=w.dtype)
    opt = Shampoo(layer.parameters(), lr=lr, betas=(0.0, beta2), graft="none", nesterov=False,
                  start_preconditioning_step=0, matrix_eps=eps, merge_small_dims=False)
    for seed in range(3):
        x, _ = tiny_batch(seed=seed)
        target = torch.zeros(x.shape[0], 4, dtype=x.dtype)
        w_graph = w.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(nn.functional.mse_loss(x @ w_graph.T, target), w_graph)
        left = beta2 * left + (1 - beta2) * g @ g.T
        right = beta2 * right + (1 - beta2) * g.T @ g
        w = w - lr * inverse_root(left, 4, eps) @ g @ inverse_root(right, 4, eps)
        opt.zero_grad()
        nn.functional.mse_loss(layer(x), target).backward()
        opt.step()
    torch.testing.assert_close(layer.weight.detach(), w, rtol=1e-5, atol=1e-8)  # roots converge to 1e-6


def test_grafting_takes_the_rmsprop_step_norm_without_bias_correction() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(3, 4, bias=False).double()
    x, _ = tiny_batch()
    w0 = layer.weight.detach().clone()
    opt = Shampoo(layer.parameters(), lr=0.1, betas=(0.0, 0.9), graft="rmsprop", nesterov=False,
                  start_preconditioning_step=0)
    layer(x).pow(2).mean().backward()
    g = layer.weight.grad.detach().clone()
    opt.step()
    graft_step = 0.1 * g / (((1 - 0.9) * g * g).sqrt() + 1e-10)  # 0.1 / sqrt(0.1) per coordinate, not Adam's 0.1
    step = w0 - layer.weight.detach()
    torch.testing.assert_close(step.norm(), graft_step.norm(), rtol=1e-10, atol=0)
    assert not torch.allclose(step, graft_step)  # the direction is Shampoo's, only the norm is the graft's


@pytest.mark.parametrize(("average", "expected"), [(False, 10.0), (True, 1.0)])
def test_momentum_is_a_heavy_ball_sum_unless_averaged(average: bool, expected: float) -> None:
    p = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = Shampoo([p], lr=1.0, nesterov=False, moving_average_for_momentum=average, start_preconditioning_step=10**6)
    for _ in range(400):
        before = p.detach().clone()
        p.grad = -torch.ones_like(p)
        opt.step()
    torch.testing.assert_close(float(p.detach() - before), expected, rtol=1e-6, atol=0)  # steady step / (lr g)


def test_failed_roots_keep_the_previous_preconditioner() -> None:
    model = tiny_net()
    opt = Shampoo(model.parameters(), lr=0.01, inverse_failure_threshold=1e-30)  # every root counts as failed
    for seed in range(3):
        x, y = tiny_batch(seed=seed)
        opt.zero_grad()
        backward(model, x, y)
        opt.step()
    for p in model.parameters():
        state = opt.state[p]
        assert all(torch.equal(r, torch.eye(len(r), dtype=r.dtype)) for r in state["preconditioners"])
        assert state["root_failures"] == 3 * len(state["statistics"]) > 0
    healthy = Shampoo(tiny_net().parameters(), lr=0.01)
    for p in healthy.param_groups[0]["params"]:
        p.grad = torch.randn_like(p)
    healthy.step()
    assert all(max(s["root_errors"]) < 1e-6 and s["root_failures"] == 0 for s in healthy.state.values())


def test_steps_draw_nothing_from_the_global_rng() -> None:
    model = tiny_net()
    opt = Shampoo(model.parameters(), lr=0.01, start_preconditioning_step=0)
    rng = torch.get_rng_state()
    for seed in range(3):
        x, y = tiny_batch(seed=seed)
        opt.zero_grad()
        backward(model, x, y)
        opt.step()
    assert torch.equal(torch.get_rng_state(), rng)


def test_sparse_gradient_is_refused_before_any_state_changes() -> None:
    dense = nn.Parameter(torch.ones(3, 2, dtype=torch.float64))
    sparse = nn.Parameter(torch.ones(4, 2, dtype=torch.float64))
    opt = Shampoo([dense, sparse], lr=0.1)
    dense.grad = torch.ones_like(dense)
    sparse.grad = torch.ones_like(sparse).to_sparse()
    with pytest.raises(RuntimeError, match=r"sparse gradients \(parameter of shape \(4, 2\)\)"):
        opt.step()
    assert len(opt.state) == 0 and torch.equal(dense.detach(), torch.ones(3, 2, dtype=torch.float64))


@pytest.mark.parametrize(("kwargs", "message"), [(dict(graft="adamw"), "graft must be one of"),
                                                 (dict(weight_decay_mode="adamw"), "weight_decay_mode must be one of"),
                                                 (dict(betas=(0.9, 0.0)), r"betas\[1\] must be in \(0, 1\]"),
                                                 (dict(block_size=-1), "block_size must be >= 0")])
def test_bad_arguments_are_refused_by_name(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Shampoo(tiny_net().parameters(), **kwargs)


@pytest.mark.parametrize("mode", ["l2", "decoupled"])
def test_weight_decay_modes_do_what_their_names_say(mode: str) -> None:
    lr, wd = 0.05, 0.1
    x, y = tiny_batch()
    decayed, plain = tiny_net(), tiny_net()
    opt = Shampoo(decayed.parameters(), lr=lr, weight_decay=wd, weight_decay_mode=mode)
    ref = Shampoo(plain.parameters(), lr=lr)
    for _ in range(6):
        opt.zero_grad()
        ref.zero_grad()
        backward(decayed, x, y)
        backward(plain, x, y)
        if mode == "l2":  # the decay is part of the gradient that statistics, graft and roots see
            for p in plain.parameters():
                p.grad.add_(p.detach(), alpha=wd)
        else:  # p <- (1 - lr wd) p, then the undecayed update
            with torch.no_grad():
                for p in plain.parameters():
                    p.mul_(1 - lr * wd)
        opt.step()
        ref.step()
    torch.testing.assert_close(flat(decayed), flat(plain), rtol=1e-12, atol=1e-14)


def plain_values(value: object) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, (str, int)) and plain_values(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(plain_values(v) for v in value)
    return torch.is_tensor(value) or isinstance(value, (int, float, str, bool)) or value is None


def test_state_dict_is_plain_resumes_exactly_and_loads_weights_only() -> None:
    batches = [tiny_batch(seed=s) for s in range(8)]
    kwargs = dict(lr=0.05, preconditioning_compute_steps=2, start_preconditioning_step=2)

    def train(model, opt, part):
        for x, y in part:
            opt.zero_grad()
            backward(model, x, y)
            opt.step()

    ref_model = tiny_net()
    train(ref_model, Shampoo(ref_model.parameters(), **kwargs), batches)
    model = tiny_net()
    opt = Shampoo(model.parameters(), **kwargs)
    train(model, opt, batches[:5])
    assert plain_values(opt.state_dict())
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_model = tiny_net(seed=3)
    resumed_model.load_state_dict(copy.deepcopy(model.state_dict()))
    resumed = Shampoo(resumed_model.parameters(), **kwargs)
    resumed.load_state_dict(saved)
    train(resumed_model, resumed, batches[5:])
    assert torch.equal(flat(resumed_model), flat(ref_model))
