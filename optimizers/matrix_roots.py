"""Inverse p-th roots of symmetric PSD matrices as Anil et al.'s distributed Shampoo computes them: the coupled
Newton iteration (Higham, "Functions of Matrices", eq. 7.18) in float64 with a ridge scaled by the largest
eigenvalue (power iteration from a fixed start vector, so no random generator is touched), iterating to a
max-entry error of 1e-6 and stopping early, on the previous iterate, when the error grows by more than 1.2x.

Matrices of one size are solved together as a batch, each element iterating exactly as it would alone (an
element that has stopped is frozen while the others go on), as the reference's ``vmap`` does. The caller decides
what to do with an inaccurate root: :func:`inverse_pth_roots` returns the error ``max |M_k - I|`` of each final
iterate with the roots.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

ROOT_DTYPE = torch.float64  # the reference's _MAT_INV_PTH_ROOT_DTYPE
MAX_ERROR_RATIO = 1.2  # "Sometimes error increases after an iteration before decreasing and converging."


def power_iteration_max_eigenvalues(mats: Tensor, num_iters: int = 100, error_tolerance: float = 1e-6) -> Tensor:
    """Largest eigenvalue of each symmetric PSD matrix in the batch ``mats`` (B, n, n); the start vector is the
    reference's fixed ``RandomState(1729).uniform(-1, 1, n)``, from numpy's own seeded generator, not torch's."""
    start = np.random.RandomState(1729).uniform(-1.0, 1.0, mats.shape[-1])
    v = torch.as_tensor(start, dtype=mats.dtype, device=mats.device).expand(mats.shape[0], -1).clone()
    s = torch.zeros(mats.shape[0], dtype=mats.dtype, device=mats.device)
    running = torch.ones(mats.shape[0], dtype=torch.bool, device=mats.device)
    for _ in range(num_iters):
        unit = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)
        s_v = (mats @ unit.unsqueeze(-1)).squeeze(-1)
        s_new = (unit * s_v).sum(-1)
        v = torch.where(running.unsqueeze(-1), s_v, v)
        moving = torch.abs(s_new - s) > error_tolerance
        s = torch.where(running, s_new, s)
        running = running & moving
        if not bool(running.any()):
            break
    return s


def matrix_power(mats: Tensor, p: int) -> Tensor:
    """``mats ** p`` (batched) for a positive integer ``p`` by binary powering, in the reference's order of
    products, less its products with the identity and its last unused squaring (which change no value)."""
    power: Tensor | None = None
    while True:
        if p % 2 == 1:
            power = mats if power is None else mats @ power
        p //= 2
        if p == 0:
            assert power is not None, "p must be a positive integer"
            return power
        mats = mats @ mats


def inverse_pth_roots(mats: Tensor, p: int, ridge_epsilon: float = 1e-6, relative_epsilon: bool = True,
                      num_iters: int = 100, error_tolerance: float = 1e-6) -> tuple[Tensor, Tensor]:
    """``(M + eps I)^(-1/p)`` for each ``M`` of the batch ``mats`` (B, n, n), and the errors ``max |M_k - I|`` of
    each iteration's last ``M_k`` (B,).

    ``eps`` is ``ridge_epsilon * max(lambda_max, 1e-6)`` with ``relative_epsilon`` (the reference's default),
    else ``ridge_epsilon``. Computed in float64, returned in the input's dtype. 1 x 1 matrices are raised to
    ``-1/p`` directly (error 0)."""
    out_dtype, batch, size = mats.dtype, mats.shape[0], mats.shape[-1]
    mat = mats.to(ROOT_DTYPE)
    alpha = -1.0 / p
    if relative_epsilon:
        max_ev = power_iteration_max_eigenvalues(mat)
    else:
        max_ev = torch.ones(batch, dtype=ROOT_DTYPE, device=mat.device)
    ridge = (ridge_epsilon * torch.clamp(max_ev, min=1e-6)).view(batch, 1, 1)
    if size == 1:
        return ((mat + ridge) ** alpha).to(out_dtype), torch.zeros(batch, dtype=ROOT_DTYPE, device=mat.device)
    identity = torch.eye(size, dtype=ROOT_DTYPE, device=mat.device)
    damped = mat + ridge * identity
    z = ((1 + p) / (2 * torch.linalg.matrix_norm(damped))).view(batch, 1, 1)
    mat_m = damped * z
    error = torch.amax(torch.abs(mat_m - identity), dim=(-2, -1))
    mat_h = identity * torch.pow(z, 1.0 / p)
    old_mat_h = mat_h.clone()
    error_ratio = torch.ones(batch, dtype=ROOT_DTYPE, device=mat.device)
    for _ in range(num_iters):
        active = ((error > error_tolerance) & (error_ratio < MAX_ERROR_RATIO)).nonzero().squeeze(-1)
        if active.numel() == 0:
            break
        mat_m_i = (1 - alpha) * identity + alpha * mat_m[active]  # only the elements still iterating
        new_mat_m = matrix_power(mat_m_i, p) @ mat_m[active]
        new_error = torch.amax(torch.abs(new_mat_m - identity), dim=(-2, -1))
        old_mat_h[active] = mat_h[active]
        mat_h[active] = mat_h[active] @ mat_m_i
        mat_m[active] = new_mat_m
        error_ratio[active] = new_error / error[active]
        error[active] = new_error
    final_error = torch.amax(torch.abs(mat_m - identity), dim=(-2, -1))
    roots = torch.where((error_ratio < MAX_ERROR_RATIO).view(batch, 1, 1), mat_h, old_mat_h)
    return roots.to(out_dtype), final_error
