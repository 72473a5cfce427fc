"""Inverse p-th roots of symmetric PSD matrices as Anil et al.'s distributed Shampoo computes them: the coupled
Newton iteration (Higham, "Functions of Matrices", eq. 7.18) in float64 with a ridge scaled by the largest
eigenvalue (power iteration from a fixed start vector, so no random generator is touched), iterating to a
max-entry error of 1e-6 and stopping early, on the previous iterate, when the error grows by more than 1.2x.

The caller decides what to do with an inaccurate root: :func:`inverse_pth_root` returns the error
``max |M_k - I|`` of the final iterate with the root.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

ROOT_DTYPE = torch.float64  # the reference's _MAT_INV_PTH_ROOT_DTYPE
MAX_ERROR_RATIO = 1.2  # "Sometimes error increases after an iteration before decreasing and converging."


def power_iteration_max_eigenvalue(matrix: Tensor, num_iters: int = 100, error_tolerance: float = 1e-6) -> Tensor:
    """Largest eigenvalue of a symmetric PSD matrix; the start vector is the reference's fixed
    ``RandomState(1729).uniform(-1, 1, n)``, drawn from numpy's own seeded generator, not torch's global one."""
    start = np.random.RandomState(1729).uniform(-1.0, 1.0, matrix.shape[-1])
    v = torch.as_tensor(start, dtype=matrix.dtype, device=matrix.device)
    s = torch.zeros((), dtype=matrix.dtype, device=matrix.device)
    for _ in range(num_iters):
        v = v / torch.linalg.vector_norm(v)
        s_v = matrix @ v
        s_new = v @ s_v
        moving = bool(torch.abs(s_new - s) > error_tolerance)
        v, s = s_v, s_new
        if not moving:
            break
    return s


def matrix_power(mat: Tensor, p: int) -> Tensor:
    """``mat ** p`` for a positive integer ``p`` by binary powering, multiplied in the reference's order."""
    power = torch.eye(mat.shape[0], dtype=mat.dtype, device=mat.device)
    while p > 0:
        if p % 2 == 1:
            power = mat @ power
        p //= 2
        mat = mat @ mat
    return power


def inverse_pth_root(matrix: Tensor, p: int, ridge_epsilon: float = 1e-6, relative_epsilon: bool = True,
                     num_iters: int = 100, error_tolerance: float = 1e-6) -> tuple[Tensor, float]:
    """``(matrix + eps I)^(-1/p)`` and the error ``max |M - I|`` of the iteration's last ``M``.

    ``eps`` is ``ridge_epsilon * max(lambda_max, 1e-6)`` with ``relative_epsilon`` (the reference's default),
    else ``ridge_epsilon``. Computed in float64, returned in the input's dtype. A 1 x 1 matrix is raised to
    ``-1/p`` directly (error 0)."""
    out_dtype = matrix.dtype
    mat = matrix.to(ROOT_DTYPE)
    size = mat.shape[0]
    alpha = -1.0 / p
    identity = torch.eye(size, dtype=ROOT_DTYPE, device=mat.device)
    max_ev = power_iteration_max_eigenvalue(mat) if relative_epsilon else torch.ones((), dtype=ROOT_DTYPE)
    ridge = ridge_epsilon * torch.clamp(max_ev, min=1e-6)
    if size == 1:
        return ((mat + ridge) ** alpha).to(out_dtype), 0.0
    damped = mat + ridge * identity
    z = (1 + p) / (2 * torch.linalg.matrix_norm(damped))
    mat_m = damped * z
    error = torch.max(torch.abs(mat_m - identity))
    mat_h = identity * torch.pow(z, 1.0 / p)
    old_mat_h = mat_h
    error_ratio = torch.ones((), dtype=ROOT_DTYPE)
    iters = 0
    while iters < num_iters and bool(error > error_tolerance) and bool(error_ratio < MAX_ERROR_RATIO):
        mat_m_i = (1 - alpha) * identity + alpha * mat_m
        new_mat_m = matrix_power(mat_m_i, p) @ mat_m
        new_mat_h = mat_h @ mat_m_i
        new_error = torch.max(torch.abs(new_mat_m - identity))
        error_ratio = new_error / error
        old_mat_h, mat_m, mat_h, error = mat_h, new_mat_m, new_mat_h, new_error
        iters += 1
    final_error = float(torch.max(torch.abs(mat_m - identity)))
    root = mat_h if bool(error_ratio < MAX_ERROR_RATIO) else old_mat_h
    return root.to(out_dtype), final_error
