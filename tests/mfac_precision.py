"""Measures how accurately M-FAC applies ``F⁻¹ = (λI + GᵀG/m)⁻¹`` in float32: relative error of ``F⁻¹ g``
against a float64 dense solve, for the float32 Cholesky/Woodbury solve optimizers/mfac.py used before, a float64
m × m part alone, the solve it uses now (all in float64, the window stored in float32) and the authors' LU
recursion (tests/reference/mfac_optim.py, run in float32 on the CPU with the shims of tests/test_zoo_mfac.py).
Gradients: m = 1024 mini-batch gradients (batch 64) of a 64-40-10 MLP (d = 3010) along an SGD run on
scikit-learn's digits. About 8 minutes on one CPU core (the reference's recursion in Python).

    python -m tests.mfac_precision      (results/sweeps/mfac_precision.md)
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch import Tensor, nn

from optimizers import MFAC
from tests.test_zoo_mfac import reference_hinv

M, BATCH = 1024, 64


def window() -> tuple[Tensor, Tensor]:
    """m gradients along SGD (lr 0.1) and the next one, in float64."""
    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    model = nn.Sequential(nn.Linear(64, 40), nn.Tanh(), nn.Linear(40, 10))
    grads = []
    gen = torch.Generator().manual_seed(0)
    for _ in range(M + 1):
        idx = torch.randint(0, len(x), (BATCH,), generator=gen)
        model.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        grads.append(g.double())
        with torch.no_grad():
            for p in model.parameters():
                p.sub_(0.1 * p.grad)
    return torch.stack(grads[:M]), grads[M]


def old_float32_cholesky(grads: Tensor, g: Tensor, damp: float) -> Tensor:
    """optimizers/mfac.py before: Gram matrix, Cholesky and solve all in the window's float32."""
    gram = grads @ grads.T + damp * M * torch.eye(M)
    y = torch.cholesky_solve((grads @ g)[:, None], torch.linalg.cholesky(gram))[:, 0]
    return (g - grads.T @ y) / damp


def float64_gram_only(grads: Tensor, g: Tensor, damp: float) -> Tensor:
    """The Gram matrix, factorisation and m × m solve in float64; the products with the window in float32."""
    gram = (grads @ grads.T).double() + damp * M * torch.eye(M, dtype=torch.float64)
    y = torch.cholesky_solve((grads @ g).double()[:, None], torch.linalg.cholesky(gram))[:, 0]
    return (g - grads.T @ y.float()) / damp


def ours(grads: Tensor, g: Tensor, damp: float) -> Tensor:
    opt = MFAC([torch.zeros(grads.shape[1])], ngrads=M, damp=damp)
    opt.grads.copy_(grads)
    opt.dots.copy_(grads.double() @ grads.double().T)  # as step() fills it
    return opt.inverse_fisher_times(g)


def main() -> None:
    grads64, g64 = window()
    grads, g = grads64.float(), g64.float()
    print(f"m = {M}, d = {grads.shape[1]}; relative error ‖x − x*‖/‖x*‖ of x = F⁻¹g, x* a float64 dense solve")
    print("| λ | float32 Cholesky (before) | float64 m × m only | all float64 (now) | authors' LU recursion, float32 |")
    print("|---|---|---|---|---|")
    for damp in (1e-5, 1e-6):
        # The float32 window is the input every method sees: the exact answer is for it, not for grads64.
        fisher = damp * torch.eye(grads.shape[1], dtype=torch.float64) + grads.double().T @ grads.double() / M
        exact = torch.linalg.solve(fisher, g.double())
        hinv = reference_hinv(grads, damp)
        errs = [float((x.double() - exact).norm() / exact.norm())
                for x in (old_float32_cholesky(grads, g, damp), float64_gram_only(grads, g, damp),
                         ours(grads, g, damp), hinv.mul(g))]
        print(f"| {damp:g} | " + " | ".join(f"{e:.1e}" for e in errs) + " |")


if __name__ == "__main__":
    main()
