"""K-FAC against curvlinops: our hooked Kronecker factors equal ``curvlinops.KFACLinearOperator``'s on the same
batch, and our first step equals its damped inverse ``KFACInverseLinearOperator`` applied to the gradient.

Conventions matched (curvlinops 3.0, ``curvlinops/kfac.py``):

- ``fisher_type="empirical"``: its G comes from the backward of the loss on the *true* labels ("Empirical
  gradients are used which corresponds to the uncentered gradient covariance, or the empirical Fisher",
  ``FisherType.EMPIRICAL``), which is what our hooks see from the runner's one backward. Our K-FAC has no
  sampled-label (``"mc"``) or ``"type-2"`` backward, so those have no counterpart here.
- ``separate_weight_and_bias=False``: the bias joins the weight as a ones column of the input
  (``x = cat([x, x.new_ones(x.shape[0], 1)], dim=1)`` when the layer has both), as in ours.
- ``kfac_approx="expand"`` for Conv2d: every output location is a row, ``A = Σ x xᵀ / (N_data · L)``
  (``.div_(self._N_data * scale)`` with ``scale`` the weight-sharing size). Ours splits the same ``A ⊗ G`` as
  alecwangcq/KFAC-Pytorch does, ``A/L`` and ``G·L``: the comparison multiplies back by ``L``.
- Scale of G for a batch-mean loss: ``correction = num_loss_terms**2 / (N_data · mc_samples ·
  num_per_example_loss_terms)`` = N for one batch of N labels, i.e. ``G = N Σ g gᵀ``, which is our
  ``(1/N) Σ (N·g)(N·g)ᵀ`` (times ``L`` for conv, see above). The factors must agree to rounding.
- Our factors start from the first batch here (``factor_init="first_batch"``): the default starts from the
  identity, as the alecwangcq reference, which curvlinops (one batch, no running average) has no counterpart of.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from optimizers import KFAC

curvlinops = pytest.importorskip("curvlinops", reason="curvlinops-for-pytorch (the dev extra) is not installed")

DAMPING = 1e-2


def mlp() -> nn.Module:
    """Two hidden Linear layers, one without a bias (no ones column), three classes."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4, bias=False), nn.Tanh(),
                         nn.Linear(4, 3)).double()


def conv_net() -> nn.Module:
    """Strided/padded Conv2d with bias, a bias-free Conv2d, then a Linear head."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 2, bias=False),
                         nn.Flatten(), nn.Linear(4 * 3 * 3, 3)).double()


def batch(shape: tuple[int, ...], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64), torch.randint(0, 3, (shape[0],), generator=gen)


@pytest.mark.parametrize(("make_model", "x_shape"), [(mlp, (8, 5)), (conv_net, (4, 2, 8, 8))], ids=["mlp", "conv"])
def test_factors_and_first_step_equal_curvlinops_empirical_kfac(make_model, x_shape) -> None:
    model = make_model()
    x, y = batch(x_shape)
    params = list(model.parameters())
    # curvlinops first, before our hooks are attached, so its forward passes cannot feed our factors.
    reference = curvlinops.KFACLinearOperator(
        model, nn.CrossEntropyLoss(), params, [(x, y)], fisher_type="empirical", kfac_approx="expand",
        separate_weight_and_bias=False, check_deterministic=False)
    reference.compute_kronecker_factors()
    factors = reference.state_dict()
    layers = {name: m for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    assert set(factors["input_covariances"]) == set(layers)

    opt = KFAC(params, lr=1.0, momentum=0.0, damping=DAMPING, factor_every=1, inverse_every=1, kl_clip=0.0,
               factor_init="first_batch")
    opt.attach(model)
    for p in params:
        p.grad = None
    for module in layers.values():  # output locations L of each conv, from a forward hook
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(lambda m, i, o: setattr(m, "output_size", o.shape[2] * o.shape[3]))
    nn.functional.cross_entropy(model(x), y).backward()  # the first factor batch initialises A and G (no mixing)
    for name, module in layers.items():
        state = opt.state[module.weight]
        locations = module.output_size if isinstance(module, nn.Conv2d) else 1
        torch.testing.assert_close(state["A"] * locations, factors["input_covariances"][name], rtol=1e-12,
                                   atol=1e-14)
        torch.testing.assert_close(state["G"] / locations, factors["gradient_covariances"][name], rtol=1e-12,
                                   atol=1e-14)

    # With lr = 1 and no momentum, decay or trust region the step is -(A ⊗ G + λI)⁻¹ ∇, which curvlinops gives as
    # (A ⊗ G + damping·I)⁻¹ with use_exact_damping=True (eigendecompositions of the factors, as ours).
    inverse = curvlinops.KFACInverseLinearOperator(reference, damping=DAMPING, use_exact_damping=True)
    expected = inverse @ [p.grad.detach().clone() for p in params]
    before = [p.detach().clone() for p in params]
    opt.step()
    for p, b, e in zip(params, before, expected, strict=True):
        torch.testing.assert_close(b - p.detach(), e, rtol=1e-9, atol=1e-12)
    opt.detach()
