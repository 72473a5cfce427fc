# Copyright 2022 The Google Research Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""A line-by-line torch transcription of ``distributed_shampoo`` from google-research/scalable_shampoo/optax
(optax-shampoo 0.0.6 on PyPI, Rohan Anil and Vineet Gupta), for the test only: the single-device, unquantized
path with ``PreconditionerType.ALL``, no LOBPCG and no gradient clipping. Function names and the order of every
operation follow the original; ``jax.lax.while_loop``/``cond`` become Python loops and branches.

Why a transcription: the JAX original needs about 470 MB (jax, jaxlib, flax) and shims to run on current JAX,
so CI checks ``optimizers.Shampoo`` against this file; tests/test_shampoo_jax_reference.py checks this file and
the optimizer against the original where the ``shampoo-reference`` extra is installed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

SGD, ADAGRAD, RMSPROP, RMSPROP_NORMALIZED, SQRT_N, ADAGRAD_NORMALIZED = 1, 2, 3, 4, 5, 6


def power_iteration(matrix: Tensor, num_iters: int = 100, error_tolerance: float = 1e-6) -> Tensor:
    v_0 = torch.from_numpy(np.random.RandomState(1729).uniform(-1.0, 1.0, matrix.shape[-1]).astype(np.float64))
    i, new_v, s, run_step = 0, v_0, torch.zeros([], dtype=matrix.dtype), True
    while i < num_iters and run_step:
        new_v = new_v / torch.linalg.norm(new_v)
        s_v = torch.einsum("ij,j->i", matrix, new_v)
        s_new = torch.einsum("i,i->", new_v, s_v)
        i, new_v, run_step, s = i + 1, s_v, bool(torch.abs(s_new - s) > error_tolerance), s_new
    return s


def mat_power(mat_m: Tensor, p: int) -> Tensor:
    power = torch.eye(mat_m.shape[0], dtype=torch.float64)
    i, mat = p, mat_m
    while i > 0:
        power = torch.matmul(mat, power) if i % 2 == 1 else power
        i //= 2
        mat = torch.matmul(mat, mat)
    return power


def matrix_inverse_pth_root(matrix: Tensor, p: int, num_iters: int = 100, ridge_epsilon: float = 1e-6,
                            error_tolerance: float = 1e-6,
                            relative_matrix_epsilon: bool = True) -> tuple[Tensor, float]:
    matrix_size = matrix.shape[0]
    orig_dtype = matrix.dtype
    matrix = matrix.to(torch.float64)
    alpha = -1.0 / p
    identity = torch.eye(matrix_size, dtype=torch.float64)
    max_ev = power_iteration(matrix) if relative_matrix_epsilon else 1.0
    ridge_epsilon = ridge_epsilon * max(float(max_ev), 1e-6)
    max_error_ratio = 1.2
    if matrix_size == 1:
        resultant_mat_h = (matrix + ridge_epsilon) ** alpha
        error = 0.0
    else:
        damped_matrix = matrix + ridge_epsilon * identity
        z = (1 + p) / (2 * torch.linalg.norm(damped_matrix))
        mat_m = damped_matrix * z
        error = torch.max(torch.abs(mat_m - identity))
        mat_h = identity * torch.pow(z, 1.0 / p)
        old_mat_h, error_ratio, i = mat_h, 1.0, 0
        while i < num_iters and bool(error > error_tolerance) and error_ratio < max_error_ratio:
            mat_m_i = (1 - alpha) * identity + alpha * mat_m
            new_mat_m = torch.matmul(mat_power(mat_m_i, p), mat_m)
            new_mat_h = torch.matmul(mat_h, mat_m_i)
            new_error = torch.max(torch.abs(new_mat_m - identity))
            i, mat_m, old_mat_h, mat_h, error_ratio, error = (i + 1, new_mat_m, mat_h, new_mat_h,
                                                               float(new_error / error), new_error)
        error = float(torch.max(torch.abs(mat_m - identity)))
        resultant_mat_h = mat_h if error_ratio < max_error_ratio else old_mat_h
    return resultant_mat_h.to(orig_dtype), error


def merge_small_dims(shape_to_merge: tuple[int, ...], max_dim: int) -> list[int]:
    if shape_to_merge and np.all(np.array(shape_to_merge) == 1):
        return [1]
    resulting_shape = []
    product = 1
    for d in shape_to_merge:
        if product * d <= max_dim:
            product *= d
        else:
            if product > 1:
                resulting_shape.append(product)
            product = d
    if product > 1:
        resulting_shape.append(product)
    return resulting_shape


class BlockPartitioner:
    def __init__(self, shape: list[int], block_size: int) -> None:
        self._shape = tuple(shape)
        self._splits = []
        split_sizes = []
        for i, d in enumerate(shape):
            if 0 < block_size < d:
                nsplit = (d - 1) // block_size
                indices = (np.arange(nsplit, dtype=np.int32) + 1) * block_size
                sizes = np.ones(nsplit + 1, dtype=np.int32) * block_size
                sizes[-1] = d - indices[-1]
                self._splits.append((i, indices))
                split_sizes.append(sizes)
            else:
                split_sizes.append(np.array([d], dtype=np.int32))
        self._split_sizes = split_sizes

    def split_sizes(self) -> list[np.ndarray]:
        return self._split_sizes

    def partition(self, tensor: Tensor) -> list[Tensor]:
        assert tuple(tensor.shape) == self._shape
        tensors = [tensor]
        for (i, indices) in self._splits:
            tensors_local = []
            for t in tensors:
                tensors_local.extend(torch.tensor_split(t, [int(k) for k in indices], dim=i))
            tensors = tensors_local
        return tensors

    def merge_partitions(self, partitions: list[Tensor]) -> Tensor:
        for (i, indices) in reversed(self._splits):
            n = len(indices) + 1
            partial_merged_tensors = []
            ind = 0
            while ind < len(partitions):
                partial_merged_tensors.append(torch.cat(partitions[ind:ind + n], dim=i))
                ind += n
            partitions = partial_merged_tensors
        assert len(partitions) == 1
        return partitions[0]


def gram_weighted_update(old_stats: Tensor, g: Tensor, axis: int, w1: float, w2: float) -> Tensor:
    axes = [i for i in range(g.ndim) if i != axis]
    gram_matrix = torch.tensordot(g, g, dims=(axes, axes))
    return w1 * old_stats + w2 * gram_matrix


class Preconditioner:
    def __init__(self, param: Tensor, block_size: int, merge_small_dims_block_size: int,
                 best_effort_shape_interpretation: bool) -> None:
        self._original_shape = tuple(param.shape)
        self._transformed_shape = list(param.shape)
        if best_effort_shape_interpretation:
            self._transformed_shape = merge_small_dims(self._original_shape, merge_small_dims_block_size)
        self._partitioner = BlockPartitioner(self._transformed_shape, block_size)

    def updated_statistics_from_grad(self, stats: list[Tensor], grad: Tensor, w1: float, w2: float) -> list[Tensor]:
        reshaped_grad = torch.reshape(grad, self._transformed_shape)
        partitioned_grads = self._partitioner.partition(reshaped_grad)
        new_stats = []
        index = 0
        for g in partitioned_grads:
            for axis in range(len(self._partitioner.split_sizes())):
                new_stats.append(gram_weighted_update(stats[index], g, axis, w1, w2))
                index += 1
        return new_stats

    def shapes_for_preconditioners(self) -> list[list[int]]:
        shapes = []
        for t in itertools.product(*self._partitioner.split_sizes()):
            shapes.extend([[int(d), int(d)] for d in t])
        return shapes

    def exponent_for_preconditioner(self) -> int:
        return 2 * len(self._partitioner.split_sizes())

    def preconditioned_grad(self, grad: Tensor, preconditioners: list[Tensor]) -> Tensor:
        reshaped_grad = torch.reshape(grad, self._transformed_shape)
        partitioned_grads = self._partitioner.partition(reshaped_grad)
        num_preconditioners = len(self._partitioner.split_sizes())
        preconditioned_partitioned_grads = []
        for i, g in enumerate(partitioned_grads):
            preconditioners_for_grad = preconditioners[i * num_preconditioners:(i + 1) * num_preconditioners]
            precond_g = g
            for j in range(num_preconditioners):
                precond_g = torch.tensordot(precond_g, preconditioners_for_grad[j], dims=([0], [0]))
            preconditioned_partitioned_grads.append(precond_g)
        merged_grad = self._partitioner.merge_partitions(preconditioned_partitioned_grads)
        return torch.reshape(merged_grad, self._original_shape)


@dataclass
class ParameterStats:
    diagonal_statistics: Tensor | None
    statistics: list[Tensor]
    preconditioners: list[Tensor]
    diagonal_momentum: Tensor
    momentum: Tensor


def distributed_shampoo(learning_rate: float, block_size: int, beta1: float = 0.9, beta2: float = 0.999,
                        diagonal_epsilon: float = 1e-10, matrix_epsilon: float = 1e-6, weight_decay: float = 0.0,
                        start_preconditioning_step: int = 5, preconditioning_compute_steps: int = 1,
                        statistics_compute_steps: int = 1, best_effort_shape_interpretation: bool = True,
                        graft_type: int = SGD, nesterov: bool = True, exponent_override: int = 0,
                        inverse_failure_threshold: float = 0.1, moving_average_for_momentum: bool = False,
                        skip_preconditioning_dim_size_gt: int = 4096, relative_matrix_epsilon: bool = True,
                        merge_small_dims_block_size: int = 4096, skip_preconditioning_rank_lt: int = 1,
                        decoupled_weight_decay: bool = False):
    """``(init_fn, update_fn)`` over lists of tensors; ``update_fn(grads, state, params) -> (updates, state)``."""

    def preconditioner_from_params(param: Tensor) -> Preconditioner:
        return Preconditioner(param, block_size, merge_small_dims_block_size, best_effort_shape_interpretation)

    def _skip_preconditioning(param: Tensor) -> bool:
        return len(param.shape) < skip_preconditioning_rank_lt or any(s > skip_preconditioning_dim_size_gt
                                                                      for s in param.shape)

    def init_fn(params: list[Tensor]) -> dict:
        def _init(param: Tensor) -> ParameterStats:
            statistics, preconditioners = [], []
            if not _skip_preconditioning(param):
                shapes = preconditioner_from_params(param).shapes_for_preconditioners()
                statistics = [matrix_epsilon * torch.eye(s[0], dtype=param.dtype) for s in shapes]
                preconditioners = [torch.eye(s[0], dtype=param.dtype) for s in shapes]
            diagonal_statistics = None if graft_type in (SGD, SQRT_N) else torch.zeros_like(param)
            return ParameterStats(diagonal_statistics, statistics, preconditioners, torch.zeros_like(param),
                                  torch.zeros_like(param))
        return {"count": 0, "stats": [_init(p) for p in params]}

    def _compute_stats(grad: Tensor, state: ParameterStats, param: Tensor, step: int) -> ParameterStats:
        w1 = beta2
        w2 = beta2 if beta2 == 1.0 else 1.0 - beta2
        new_statistics = state.statistics
        if not _skip_preconditioning(param) and step % statistics_compute_steps == 0:
            new_statistics = preconditioner_from_params(param).updated_statistics_from_grad(
                state.statistics, grad, w1, w2)
        return ParameterStats(state.diagonal_statistics, new_statistics, state.preconditioners,
                              state.diagonal_momentum, state.momentum)

    def _compute_preconditioners(states: list[ParameterStats], params: list[Tensor],
                                 step: int) -> list[ParameterStats]:
        if step % preconditioning_compute_steps != 0:
            return states
        new_states = []
        for state, param in zip(states, params, strict=True):
            new_preconditioners = []
            if state.statistics:
                exponent = preconditioner_from_params(param).exponent_for_preconditioner()
                exponent = exponent if exponent_override == 0 else exponent_override
                for statistic, prev_p in zip(state.statistics, state.preconditioners, strict=True):
                    p, error = matrix_inverse_pth_root(statistic, exponent, ridge_epsilon=matrix_epsilon,
                                                       relative_matrix_epsilon=relative_matrix_epsilon)
                    skip = np.isnan(error) or error >= inverse_failure_threshold
                    new_preconditioners.append(prev_p if skip else p)
            new_states.append(ParameterStats(state.diagonal_statistics, state.statistics, new_preconditioners,
                                             state.diagonal_momentum, state.momentum))
        return new_states

    def _transform_grad(grad: Tensor, state: ParameterStats, param: Tensor,
                        step: int) -> tuple[Tensor, ParameterStats]:
        preconditioner = preconditioner_from_params(param)
        sgd_update = grad
        new_diagonal_statistics = state.diagonal_statistics
        if graft_type in (ADAGRAD, ADAGRAD_NORMALIZED):
            scaled_grad = grad
            if graft_type == ADAGRAD_NORMALIZED:
                scaled_grad = grad / (torch.linalg.norm(grad) + 1e-16)
            new_diagonal_statistics = state.diagonal_statistics + torch.square(scaled_grad)
            grafting_update = scaled_grad / (torch.sqrt(new_diagonal_statistics) + diagonal_epsilon)
        elif graft_type in (RMSPROP, RMSPROP_NORMALIZED):
            scaled_grad = grad
            if graft_type == RMSPROP_NORMALIZED:
                scaled_grad = grad / (torch.linalg.norm(grad) + 1e-16)
            w1 = beta2
            w2 = beta2 if beta2 == 1.0 else 1.0 - beta2
            new_diagonal_statistics = w1 * state.diagonal_statistics + w2 * torch.square(scaled_grad)
            grafting_update = scaled_grad / (torch.sqrt(new_diagonal_statistics) + diagonal_epsilon)
        elif graft_type == SGD:
            grafting_update = sgd_update
        else:
            grafting_update = torch.ones_like(sgd_update) * torch.sign(sgd_update)
        lr = learning_rate
        precond_grad = grad
        if not _skip_preconditioning(param):
            precond_grad = preconditioner.preconditioned_grad(precond_grad, state.preconditioners)
        else:
            precond_grad = grafting_update
        grafting_update_norm = torch.linalg.norm(grafting_update)
        precond_grad_norm = torch.linalg.norm(precond_grad)
        multiplier = grafting_update_norm / (precond_grad_norm + 1e-16)
        shampoo_update = precond_grad * multiplier
        shampoo_update_with_wd = shampoo_update
        grafting_update_with_wd = grafting_update
        if weight_decay != 0 and not decoupled_weight_decay:
            shampoo_update_with_wd = shampoo_update + weight_decay * param
            grafting_update_with_wd = grafting_update + weight_decay * param
        w = (1.0 - beta1) if moving_average_for_momentum else 1.0
        shampoo_update_with_wd_momentum = state.momentum * beta1 + w * shampoo_update_with_wd
        grafting_update_with_wd_momentum = state.diagonal_momentum * beta1 + w * grafting_update_with_wd
        run_shampoo = float(step >= start_preconditioning_step)
        momentum_update = (run_shampoo * shampoo_update_with_wd_momentum
                           + (1.0 - run_shampoo) * grafting_update_with_wd_momentum)
        wd_update = run_shampoo * shampoo_update_with_wd + (1.0 - run_shampoo) * grafting_update_with_wd
        nesterov_momentum_update = momentum_update
        if nesterov:
            nesterov_momentum_update = w * wd_update + beta1 * momentum_update
        if weight_decay != 0 and decoupled_weight_decay:
            nesterov_momentum_update = nesterov_momentum_update + lr * weight_decay * param
        transformed_update = -1.0 * lr * nesterov_momentum_update
        return transformed_update, ParameterStats(new_diagonal_statistics, state.statistics, state.preconditioners,
                                                  grafting_update_with_wd_momentum,
                                                  shampoo_update_with_wd_momentum)

    def update_fn(grads: list[Tensor], state: dict, params: list[Tensor]) -> tuple[list[Tensor], dict]:
        step = state["count"]
        stats = [_compute_stats(g, s, p, step) for g, s, p in zip(grads, state["stats"], params, strict=True)]
        stats = _compute_preconditioners(stats, params, step)
        outputs = [_transform_grad(g, s, p, step) for g, s, p in zip(grads, stats, params, strict=True)]
        return [u for u, _ in outputs], {"count": step + 1, "stats": [s for _, s in outputs]}

    return init_fn, update_fn
