"""The shared Hutchinson estimator: unbiasedness, probes and seeding, averaging rules, hooks, errors."""

from __future__ import annotations

import math

import pytest
import torch

from optimizers import HutchinsonEstimator, smooth_

pytestmark = pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")


def _dense_spd(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    return a @ a.T / n + torch.eye(n, dtype=torch.float64)


def _quadratic_grads(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x and ∇f(x) with its graph, for f(x) = ½ xᵀHx (Hessian H everywhere)."""
    x = torch.randn(h.shape[0], dtype=h.dtype, requires_grad=True)
    (grad,) = torch.autograd.grad(0.5 * x @ h @ x, x, create_graph=True)
    return x, grad


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_mean_of_estimates_converges_to_dense_diagonal(probe: str) -> None:
    """Var[z_i (Hz)_i] = Σ_{j≠i} H_ij² for Rademacher z (z_i² = 1 removes the diagonal term) and
    Σ_{j≠i} H_ij² + 2 H_ii² for Gaussian z (E z⁴ = 3). The mean of N samples is within 5 standard
    errors of diag(H) in every coordinate; the probes are seeded, so the test is deterministic."""
    n, samples = 12, 4000
    h = _dense_spd(n, seed=1)
    x, grad = _quadratic_grads(h)
    est = HutchinsonEstimator(n_samples=samples, probe=probe, seed=3)
    (raw,) = est.raw([x], [grad])
    diag = torch.diagonal(h)
    var = (h**2).sum(dim=1) - diag**2
    if probe == "gaussian":
        var = var + 2 * diag**2
    stderr = (var / samples).sqrt()
    assert torch.all((raw - diag).abs() <= 5 * stderr), (raw - diag) / stderr
    # The bound is informative: the off-diagonal mass is large compared with it.
    assert torch.all(5 * stderr < 0.2 * diag)
    assert est.hvp_count == samples


def test_diagonal_hessian_is_exact_with_one_rademacher_probe() -> None:
    a = torch.tensor([0.5, 2.0, 7.0], dtype=torch.float64)
    x, grad = _quadratic_grads(torch.diag(a))
    (d,) = HutchinsonEstimator(seed=0).estimate([x], [grad])
    assert torch.equal(d, a)


def test_one_autograd_call_per_sample_over_all_params(monkeypatch: pytest.MonkeyPatch) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    params = list(model.parameters())
    loss = model(torch.randn(5, 3)).pow(2).sum()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    calls: list[tuple[int, bool]] = []
    real_grad = torch.autograd.grad

    def counting_grad(outputs, inputs, *args, **kwargs):
        calls.append((len(inputs), kwargs["retain_graph"]))
        return real_grad(outputs, inputs, *args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    HutchinsonEstimator(n_samples=3, seed=0).raw(params, grads)
    assert calls == [(len(params), True), (len(params), True), (len(params), False)]


def test_probe_distributions_and_seeding() -> None:
    params = [torch.zeros(1000), torch.zeros(10, 30, dtype=torch.float64)]
    z = HutchinsonEstimator(seed=5).probes(params)
    assert [t.shape for t in z] == [p.shape for p in params]
    assert [t.dtype for t in z] == [p.dtype for p in params]
    assert all(bool(((t == 1) | (t == -1)).all()) for t in z)
    assert abs(float(z[0].mean())) < 0.15

    g = torch.cat([t.flatten().double() for t in HutchinsonEstimator(probe="gaussian", seed=5).probes(params)])
    assert abs(float(g.mean())) < 0.15 and abs(float(g.var()) - 1.0) < 0.15
    assert not bool(((g == 1) | (g == -1)).all())

    same = HutchinsonEstimator(seed=5).probes(params)
    other = HutchinsonEstimator(seed=6).probes(params)
    assert all(torch.equal(a, b) for a, b in zip(z, same, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(z, other, strict=True))


def test_default_seed_comes_from_the_global_rng() -> None:
    torch.manual_seed(123)
    first = HutchinsonEstimator().seed
    torch.manual_seed(123)
    assert HutchinsonEstimator().seed == first
    assert HutchinsonEstimator().seed != first


def test_state_dict_resumes_the_probe_stream() -> None:
    params = [torch.zeros(50)]
    a = HutchinsonEstimator(seed=9)
    a.probes(params)
    saved = a.state_dict()
    expected = [a.probes(params)[0] for _ in range(3)]
    b = HutchinsonEstimator(seed=1)
    b.load_state_dict(saved)
    assert b.seed == 9
    assert all(torch.equal(b.probes(params)[0], e) for e in expected)
    # A loaded but not yet used generator state survives another save/load.
    c = HutchinsonEstimator()
    c.load_state_dict(saved)
    d = HutchinsonEstimator()
    d.load_state_dict(c.state_dict())
    assert torch.equal(d.probes(params)[0], expected[0])


def test_reduce_hook_gets_the_raw_estimate_and_its_effect_is_kept() -> None:
    a = torch.tensor([1.0, 3.0])
    x, grad = _quadratic_grads(torch.diag(a))
    seen: list[list[torch.Tensor]] = []

    def double(tensors: list[torch.Tensor]) -> None:
        seen.append([t.clone() for t in tensors])
        torch._foreach_mul_(tensors, 2.0)

    est = HutchinsonEstimator(seed=0)
    est.reduce = double
    (d,) = est.estimate([x], [grad])
    assert len(seen) == 1 and seen[0][0].shape == x.shape
    assert torch.equal(d, 2 * a)


def test_error_without_graph() -> None:
    x = torch.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"create_graph=True"):
        HutchinsonEstimator(seed=0).raw([x], [torch.ones(3)])


@pytest.mark.parametrize(
    "kwargs",
    [{"n_samples": 0}, {"probe": "uniform"}, {"block_size": 0}, {"seed": 1.5}, {"reduce": 3}],
)
def test_invalid_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        HutchinsonEstimator(**kwargs)


@pytest.mark.parametrize("shape", [(4, 3, 5), (4, 3, 3, 3), (2, 3, 2, 3, 4)])
def test_spatial_average_of_conv_kernels(shape: tuple[int, ...]) -> None:
    t = torch.randn(shape)
    out = t.clone()
    smooth_([out])
    kernel_dims = tuple(range(2, len(shape)))
    assert torch.allclose(out, t.abs().mean(dim=kernel_dims, keepdim=True).expand(shape))
    # One value per kernel.
    assert out.flatten(2).unique(dim=-1).shape[-1] == 1


def test_block_average_last_dim_with_short_final_block() -> None:
    t = torch.arange(14.0).reshape(2, 7) - 6.0
    out = t.clone()
    smooth_([out], block_size=3)
    a = t.abs()
    expected = torch.cat(
        [
            a[:, 0:3].mean(1, keepdim=True).expand(2, 3),
            a[:, 3:6].mean(1, keepdim=True).expand(2, 3),
            a[:, 6:7],
        ],
        dim=1,
    )
    assert torch.equal(out, expected)


def test_averaging_rules_by_rank() -> None:
    vec, mat, scalar = torch.randn(6), torch.randn(3, 4), torch.randn(())
    out = [vec.clone(), mat.clone(), scalar.clone()]
    smooth_(out)  # block_size=1: 0-D, 1-D and 2-D tensors stay element-wise
    assert torch.equal(out[0], vec.abs()) and torch.equal(out[1], mat.abs()) and out[2] == scalar.abs()
    out = [vec.clone(), mat.clone(), scalar.clone()]
    smooth_(out, block_size=2)  # block averaging applies to 2-D tensors; 0-D and 1-D stay element-wise
    assert torch.equal(out[0], vec.abs()) and out[2] == scalar.abs()
    assert torch.allclose(out[1], mat.abs().view(3, 2, 2).mean(2).repeat_interleave(2, dim=1))
    conv = torch.randn(2, 2, 3, 3)
    out = [conv.clone()]
    smooth_(out, spatial_average=False, block_size=1)
    assert torch.equal(out[0], conv.abs())
    out = [conv.clone()]
    smooth_(out, spatial_average=False, block_size=3)  # not spatial: blocks along the last dim
    assert torch.allclose(out[0], conv.abs().mean(-1, keepdim=True).expand_as(conv))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_probes_and_state() -> None:
    params = [torch.zeros(100, device="cuda"), torch.zeros(3)]
    a = HutchinsonEstimator(seed=4)
    z = a.probes(params)
    assert z[0].device.type == "cuda" and z[1].device.type == "cpu"
    saved = a.state_dict()
    nxt = a.probes(params)
    b = HutchinsonEstimator()
    b.load_state_dict(saved)
    assert all(torch.equal(u, v) for u, v in zip(b.probes(params), nxt, strict=True))
    assert math.isclose(float(z[0].abs().mean()), 1.0)


def test_non_diagonal_hessian_one_probe_is_z_times_hz_and_not_constant_probes() -> None:
    """On a dense Hessian, constant probes (z = -1 everywhere, pytorch-optimizer <= 3.10.1) would return the row
    sums H·1 every time; ours returns z ⊙ Hz for the drawn z, and its mean approaches diag(H), not H·1."""
    h = _dense_spd(8, seed=2)
    x, grad = _quadratic_grads(h)
    est = HutchinsonEstimator(n_samples=1, seed=5)
    (z,) = HutchinsonEstimator(seed=5).probes([x])
    (one,) = est.raw([x], [grad])
    torch.testing.assert_close(one, z * (h @ z), rtol=1e-12, atol=1e-12)
    x, grad = _quadratic_grads(h)
    (mean,) = HutchinsonEstimator(n_samples=2000, seed=6).raw([x], [grad])
    diag, row_sums = torch.diagonal(h), h.sum(dim=1)
    assert (mean - diag).abs().max() < 0.25 * (row_sums - diag).abs().max()


def test_installed_peer_estimator_is_unbiased_on_a_non_diagonal_hessian() -> None:
    """The peer caveat of `bench perf` depends on this: pytorch-optimizer after 3.10.1 draws real probes."""
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
    from bench.perf import peer_caveat

    h = _dense_spd(8, seed=2)
    x = torch.randn(8, dtype=h.dtype, requires_grad=True)
    opt = pytorch_optimizer.AdaHessian([x])
    (x.grad,) = torch.autograd.grad(0.5 * x @ h @ x, x, create_graph=True)
    torch.manual_seed(0)
    opt.zero_hessian(opt.param_groups, opt.state)
    opt.compute_hutchinson_hessian(opt.param_groups, opt.state, num_samples=2000, distribution="rademacher")
    mean = opt.state[x]["hessian"]  # already divided by num_samples
    diag, row_sums = torch.diagonal(h), h.sum(dim=1)
    constant_probes = bool((mean - row_sums).abs().max() < 1e-9)
    assert constant_probes == ("which is always -1" in peer_caveat())
    if not constant_probes:
        assert (mean - diag).abs().max() < 0.25 * (row_sums - diag).abs().max()


def _fairseq_block_rule(hz: torch.Tensor, z: torch.Tensor, b: int) -> torch.Tensor:
    """The authors' fairseq rule for a 2-D weight (transformer/fairseq/optim/adahessian.py, get_trace):
    |hv * v| viewed row-major as (-1, b), each block's mean repeated back to the weight's shape."""
    return (hz * z).abs().view(-1, b).mean(dim=1).repeat_interleave(b).view(hz.shape)


def _linear_and_conv1d(out_f: int, in_f: int, seed: int) -> tuple[torch.nn.Linear, torch.nn.Conv1d]:
    torch.manual_seed(seed)
    linear = torch.nn.Linear(in_f, out_f).double()
    conv = torch.nn.Conv1d(in_f, out_f, 1).double()
    with torch.no_grad():
        conv.weight.copy_(linear.weight.unsqueeze(-1))
        conv.bias.copy_(linear.bias)
    return linear, conv


def _nonlinear_loss(y: torch.Tensor) -> torch.Tensor:
    return (torch.tanh(y) ** 2).sum() + (y**3).mean()  # a dense, non-diagonal Hessian in the weight


def test_pointwise_conv1d_weight_gets_the_linear_block_rule_in_float64() -> None:
    """SqueezeBERT's [out, in, 1] Conv1d weights: the same Hessian-diagonal estimate as the equivalent Linear
    [out, in] under the authors' block rule (blocks of block_size input channels), from the same probes."""
    linear, conv = _linear_and_conv1d(3, 8, seed=0)
    x = torch.randn(5, 8, dtype=torch.float64)
    g_lin = torch.autograd.grad(_nonlinear_loss(linear(x)), list(linear.parameters()), create_graph=True)
    g_conv = torch.autograd.grad(_nonlinear_loss(conv(x.unsqueeze(-1)).squeeze(-1)), list(conv.parameters()),
                                 create_graph=True)
    z_w, z_b = HutchinsonEstimator(seed=3).probes(list(linear.parameters()))
    hz_w, hz_b = torch.autograd.grad(g_lin, list(linear.parameters()), grad_outputs=[z_w, z_b], retain_graph=True)
    est_lin = HutchinsonEstimator(block_size=4, seed=3).estimate(list(linear.parameters()), g_lin)
    est_conv = HutchinsonEstimator(block_size=4, seed=3).estimate(list(conv.parameters()), g_conv)
    assert est_conv[0].shape == (3, 8, 1)
    torch.testing.assert_close(est_conv[0].squeeze(-1), est_lin[0], rtol=1e-12, atol=0)
    torch.testing.assert_close(est_conv[1], est_lin[1], rtol=1e-12, atol=0)

    # Both equal the authors' rule on the Linear weight, and the blocks really average (not element-wise).
    torch.testing.assert_close(est_lin[0], _fairseq_block_rule(hz_w, z_w, 4), rtol=1e-12, atol=0)
    assert not torch.allclose(est_lin[0], (hz_w * z_w).abs())
    assert est_lin[0].view(3, 2, 4).unique(dim=-1).shape[-1] == 1
    # The 1-D bias stays element-wise: |z ⊙ Hz|.
    torch.testing.assert_close(est_lin[1], (hz_b * z_b).abs(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("block_size", [2, 4, 32])
@pytest.mark.parametrize("spatial_average", [True, False])
def test_one_dim_tensors_stay_element_wise_whatever_the_block_size(block_size: int, spatial_average: bool) -> None:
    t = torch.randn(64, dtype=torch.float64)
    out = [t.clone()]
    smooth_(out, spatial_average=spatial_average, block_size=block_size)
    assert torch.equal(out[0], t.abs())


@pytest.mark.parametrize("shape", [(6, 8, 1), (6, 8, 1, 1), (6, 8, 1, 1, 1)])
@pytest.mark.parametrize("spatial_average", [True, False])
def test_pointwise_conv_weights_of_any_rank_are_blocked_along_input_channels(
    shape: tuple[int, ...], spatial_average: bool
) -> None:
    t = torch.randn(shape, dtype=torch.float64)
    out = [t.clone()]
    smooth_(out, spatial_average=spatial_average, block_size=4)
    expected = t.abs().view(6, 2, 4).mean(-1, keepdim=True).expand(6, 2, 4).reshape(shape)
    assert torch.equal(out[0], expected)
    out = [t.clone()]
    smooth_(out, spatial_average=spatial_average, block_size=1)
    assert torch.equal(out[0], t.abs())


def test_conv_kernels_keep_the_spatial_mean_whatever_the_block_size() -> None:
    """Kernels with more than one position: one value per kernel (the authors' image-classification rule);
    block_size does not reach them."""
    t = torch.randn(4, 8, 3, 3, dtype=torch.float64)
    out = [t.clone()]
    smooth_(out, block_size=4)
    assert torch.equal(out[0], t.abs().mean(dim=(2, 3), keepdim=True).expand_as(t))
