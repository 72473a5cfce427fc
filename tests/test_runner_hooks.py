"""The runner's optional hooks: final test, checkpoint averaging, early stopping, closures, cost fields."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.config import compose_config
from bench.distributed import Distributed
from bench.runner import build_task, resolve_device
from bench.snapshots import load_best, save_best, snapshot_paths
from tests.conftest import bench
from tests.runs import run

WITH_TEST = "task._target_=tests.contract_tasks.DigitsWithTest"


def test_final_test_and_data_summary_are_recorded(tmp_path: Path) -> None:
    record = run(tmp_path, WITH_TEST, "optimizer=adam", "trainer.epochs=2")
    assert record["status"] == "completed"
    assert record["metric"]["test"] == record["test"]["top1"] == record["history"][-1]["metrics"]["top1"]
    assert record["data"] == {"train_images": 1437, "test_images": 360}
    cost = record["cost"]
    assert cost["throughput_unit"] == "images" and cost["items_per_s"] > 0
    assert 0 <= cost["data_wait_frac"] < 1
    assert cost["grad_evals"] == cost["steps"]


def test_test_evaluates_the_average_of_the_last_epochs(tmp_path: Path) -> None:
    record = run(tmp_path, WITH_TEST, "optimizer=adam", "trainer.epochs=3", "trainer.average_last=2",
                 "trainer.deterministic=true")
    run_dir = tmp_path / "default" / record["run_id"]
    paths = snapshot_paths(run_dir)
    assert [p.name for p in paths] == ["epoch_00002.pt", "epoch_00003.pt"]
    assert record["test_model"] == "average of the weights at the end of epochs [2, 3]"
    states = [torch.load(p, weights_only=True) for p in paths]
    by_hand = {k: (states[0][k] + states[1][k]) / 2 for k in states[0]}
    cfg = compose_config([WITH_TEST, "trainer.device=cpu"])
    task = build_task(cfg, resolve_device("cpu"), Distributed.single())
    model = task.build_model()
    model.load_state_dict(by_hand)
    model.eval()
    with torch.no_grad():
        assert task.test(model)["top1"] == pytest.approx(record["test"]["top1"])


def test_test_on_best_evaluates_the_best_validation_epoch(tmp_path: Path) -> None:
    worse = "task._target_=tests.contract_tasks.DigitsWorseEachEpoch"
    record = run(tmp_path, worse, "optimizer=adam", "trainer.epochs=3", "trainer.test_on=best",
                 "trainer.deterministic=true")
    assert record["test_model"].startswith("the weights at the end of epoch 1, the best valid top1")
    first_epoch = run(tmp_path, WITH_TEST, "optimizer=adam", "trainer.epochs=1", "trainer.deterministic=true")
    last = run(tmp_path, worse, "optimizer=adam", "trainer.epochs=3", "trainer.deterministic=true")
    assert record["test"]["top1"] == first_epoch["test"]["top1"]  # epoch 1's weights, not the final ones
    assert "test_model" not in last and last["test"]["top1"] != record["test"]["top1"]


def test_test_on_is_checked_before_training(tmp_path: Path) -> None:
    bad = bench("run", "trainer.test_on=worst", f"paths.runs={tmp_path}")
    assert bad.returncode == 2 and "trainer.test_on=worst: expected one of last, best" in bad.stderr
    both = bench("run", WITH_TEST, "trainer.test_on=best", "trainer.average_last=2", f"paths.runs={tmp_path}")
    assert both.returncode == 2 and "set trainer.average_last=0 or test_on=last" in both.stderr
    no_test = bench("run", "trainer.test_on=best", f"paths.runs={tmp_path}")  # digits has no Task.test
    assert no_test.returncode == 2 and "task digits has no final test (Task.test)" in no_test.stderr
    assert not list(tmp_path.rglob("record.json"))  # nothing claims a run that did not happen


def test_a_best_snapshot_of_another_epoch_is_not_tested(tmp_path: Path) -> None:
    """A resume from an older checkpoint redoes an epoch: the kept snapshot may then be of an epoch the history
    no longer has as its best; the final weights stay and the record says why."""
    model = torch.nn.Linear(2, 1)
    history = [{"epoch": 1, "metrics": {"top1": 50.0}}, {"epoch": 2, "metrics": {"top1": 60.0}}]
    save_best(tmp_path, 2, model)  # epoch 2's weights
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    # epoch 2 redone, now worse than epoch 1: the history's best is epoch 1
    assert load_best(tmp_path, history[0], "top1", model) == (
        "the final weights (the snapshot kept is epoch 2's, not the best epoch 1's)")
    assert not torch.equal(model.weight, before["weight"])
    assert load_best(tmp_path, history[1], "top1", model).startswith("the weights at the end of epoch 2")
    assert torch.equal(model.weight, before["weight"])


def test_early_stop_ends_a_completed_run(tmp_path: Path) -> None:
    # lr 1e-7 cannot improve the loss measurably, so the validation loss stalls at once.
    record = run(tmp_path, "optimizer=sgd", "optimizer.lr=1e-7", "optimizer.momentum=0", "trainer.epochs=8",
                 "trainer.early_stop.patience=1", "trainer.early_stop.metric=top1")
    assert record["status"] == "completed"
    stopped = record["stopped_early"]
    assert stopped["epoch"] < 8 and len(record["history"]) == stopped["epoch"]
    assert "did not improve" in stopped["reason"]


def test_summed_loss_is_logged_per_item(tmp_path: Path) -> None:
    summed = run(tmp_path, "task._target_=tests.contract_tasks.SummedLossDigits", "optimizer=adam",
                 "trainer.epochs=1", "study=sum")
    assert 0 < summed["history"][0]["train_loss"] < 3.0  # a mean cross-entropy, not a batch sum (~64x larger)


def test_lbfgs_gets_a_closure_and_counts_gradient_evaluations(tmp_path: Path) -> None:
    record = run(tmp_path, "optimizer=adam", "optimizer._target_=torch.optim.LBFGS", "~optimizer.betas",
                 "~optimizer.eps", "~optimizer.weight_decay", "~optimizer.weight_decay_mode", "optimizer.lr=0.5",
                 "+optimizer.max_iter=3", "trainer.epochs=1")
    assert record["status"] == "completed"
    assert record["cost"]["steps"] < record["cost"]["grad_evals"] <= 3 * record["cost"]["steps"]
    assert record["metric"]["final"] > 50.0


def test_batch_size_is_refused_where_a_task_does_not_use_it() -> None:
    proc = bench("run", "task=digits", "+task.batch_size_unused=batches hold task.max_tokens tokens",
                 "trainer.batch_size=8")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: trainer.batch_size does not apply to task=digits: batches hold "
                                   "task.max_tokens tokens")
