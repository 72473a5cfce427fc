"""Curvature from a sub-batch (`trainer.hessian_batch_fraction`): the gradient is the full batch's, the estimate
the first fraction's, and the extra pass leaves BatchNorm statistics and the RNG stream as a plain step does, so
a preempted run resumes to the uninterrupted record."""

from __future__ import annotations

import copy
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.errors import UsageError
from bench.preemption import Preempted
from bench.step import train_step
from optimizers import AdaHessian
from optimizers.hutchinson import HutchinsonEstimator, smooth_
from tasks.digits import DigitsTask
from tasks.tensor_data import TensorClassificationTask
from tests.runs import comparable, interrupted_then_resumed, run

CPU = torch.device("cpu")


def bn_dropout_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Tanh(), nn.Flatten(), nn.Dropout(0.3),
                         nn.Linear(4 * 8 * 8, 10))


class RandomImages(TensorClassificationTask):
    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(1)
        x, y = torch.randn(16, 1, 8, 8, generator=generator), torch.randint(0, 10, (16,), generator=generator)
        super().__init__(x, y, x, y, device=CPU, batch_size=16, eval_batch_size=16, seed=0)

    def build_model(self) -> nn.Module:
        return bn_dropout_net()


def test_default_sub_batch_slices_tensors_and_tuples_and_refuses_the_rest() -> None:
    task = RandomImages()
    x, y = task.sub_batch((task.train_x, task.train_y), 0.25)
    assert torch.equal(x, task.train_x[:4]) and torch.equal(y, task.train_y[:4])
    assert task.sub_batch(task.train_x, 0.01).shape[0] == 1  # never empty
    with pytest.raises(TypeError, match=r"override Task\.sub_batch"):
        task.sub_batch({"x": task.train_x}, 0.5)


def test_gradient_is_full_batch_estimate_is_sub_batch_and_buffers_and_rng_are_untouched() -> None:
    task = RandomImages()
    torch.manual_seed(0)
    model = task.build_model().train()
    reference = copy.deepcopy(model)
    batch = (task.train_x, task.train_y)
    optimizer = AdaHessian(model.parameters(), lr=0.01, seed=5)
    torch.manual_seed(7)
    train_step(task, model, optimizer, batch, hessian=True, device=CPU, hessian_batch_fraction=0.5)
    rng_after_step = torch.get_rng_state()

    torch.manual_seed(7)  # the reference: a plain full-batch step's forward and backward ...
    loss, _ = task.loss(reference, batch)
    params = list(reference.parameters())
    grads = torch.autograd.grad(loss, params)
    assert torch.equal(torch.get_rng_state(), rng_after_step)  # the extra pass drew nothing from the stream
    for (name, got), want in zip(model.named_buffers(), reference.buffers(), strict=True):
        assert torch.equal(got, want), name  # BatchNorm saw the full batch once, as in a plain step
    # ... and the estimate from the first half, taken from the RNG state the step left (same dropout mask)
    frozen = copy.deepcopy(reference)
    sub_loss, _ = task.loss(frozen, task.sub_batch(batch, 0.5))
    sub_params = list(frozen.parameters())
    estimate = HutchinsonEstimator(seed=5).raw(sub_params, torch.autograd.grad(sub_loss, sub_params,
                                                                                 create_graph=True))
    smooth_(estimate)
    for p, g, d in zip(model.parameters(), grads, estimate, strict=True):
        state = optimizer.state[p]
        torch.testing.assert_close(state["exp_avg"], 0.1 * g, rtol=1e-6, atol=1e-9)  # the full batch's gradient
        torch.testing.assert_close(state["hessian_diag"], d, rtol=1e-5, atol=1e-8)


def test_bad_fraction_is_a_one_line_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^trainer\.hessian_batch_fraction=1\.5: expected a number in \(0, 1\]"):
        run(tmp_path, "optimizer=adahessian", "trainer.hessian_batch_fraction=1.5", "trainer.epochs=1")


OVERRIDES = ("task=digits", "optimizer=adahessian", "optimizer.lr=0.02", "trainer.hessian_batch_fraction=0.5",
             "trainer.epochs=2", "trainer.deterministic=true")


def test_preempted_sub_batch_run_resumes_to_the_uninterrupted_record(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DigitsTask, "build_model", lambda self: bn_dropout_net())
    reference = run(tmp_path / "reference", *OVERRIDES)
    assert reference["status"] == "completed"
    assert reference["config"]["trainer"]["hessian_batch_fraction"] == 0.5
    assert reference["cost"]["hvp_mode"] == "double_backward"
    assert reference["cost"]["hvp_count"] == reference["cost"]["steps"]  # one probe per step, every step
    original = DigitsTask.train_batches

    def stopped_mid_epoch(self: DigitsTask, epoch: int, start: int = 0) -> Iterator:
        for number, batch in enumerate(original(self, epoch, start), start=start):
            if (epoch, number) == (1, 3):
                os.kill(os.getpid(), signal.SIGUSR1)  # what a scheduler sends; the runner checkpoints here
            yield batch

    resumed = interrupted_then_resumed(monkeypatch, DigitsTask, "train_batches", stopped_mid_epoch, Preempted,
                                       tmp_path / "preempted", *OVERRIDES)
    assert comparable(resumed) == comparable(reference)
    full = run(tmp_path / "full", *OVERRIDES, "trainer.hessian_batch_fraction=1.0")
    assert comparable(full)["history"] != comparable(reference)["history"]  # the fraction took effect


def test_an_optimizer_without_the_hvp_entry_point_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"SophiaH takes its Hessian-vector products itself"):
        run(tmp_path, "optimizer=sophiah", "trainer.hessian_batch_fraction=0.5", "trainer.epochs=1")
