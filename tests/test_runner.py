"""The train loop: it learns, it records divergence, it resumes exactly, it never half-writes a record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.atomic import write_atomic, write_json_atomic
from bench.records import read_record
from tests.conftest import REPO
from tests.runs import comparable, run

CIFAR_SHORT = ("trainer.epochs=3", "trainer.batch_size=16", "trainer.eval_batch_size=100",
               "trainer.schedule.name=constant")


def test_digits_run_lowers_the_loss_and_writes_a_full_record(tmp_path: Path) -> None:
    record = run(tmp_path, "task=digits", "optimizer=adam", "trainer.epochs=3")
    assert record["status"] == "completed"
    losses = [row["train_loss"] for row in record["history"]]
    assert losses[-1] < 0.5 * losses[0]
    assert record["metric"]["final"] > 80.0
    assert set(record) >= {"schema", "run_id", "study", "task", "optimizer", "seed", "status", "metric", "history",
                           "cost", "env", "config", "started_at", "finished_at"}
    assert record["cost"]["steps"] == 3 * (1437 // 64)
    assert record["cost"]["s_per_step"] > 0 and record["cost"]["optimizer_state_bytes"] > 0
    assert record["env"]["world_size"] == 1
    run_dir = tmp_path / "default" / record["run_id"]
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    assert (run_dir / "checkpoint.pt").exists()


@pytest.mark.parametrize("task", ["cifar10_resnet20", "cifar10_resnet32"])
def test_cifar_run_lowers_the_loss(tmp_path: Path, cifar_dir: Path, task: str) -> None:
    record = run(tmp_path, f"task={task}", "optimizer=adam", f"task.data_dir={cifar_dir}", *CIFAR_SHORT)
    assert record["status"] == "completed"
    losses = [row["train_loss"] for row in record["history"]]
    assert losses[-1] < losses[0]


def test_nonfinite_loss_is_recorded_as_diverged(tmp_path: Path) -> None:
    record = run(tmp_path, "optimizer=sgd", "optimizer.lr=1e6", "trainer.epochs=2")
    assert record["status"] == "diverged"
    assert "loss became" in record["error"]
    assert record["metric"]["final"] is None  # no final result for a run that did not finish
    assert record["cost"]["steps"] < 2 * (1437 // 64)


def test_completed_run_is_skipped_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    first = run(tmp_path, "trainer.epochs=1")
    second = run(tmp_path, "trainer.epochs=1")
    assert "is already completed" in capsys.readouterr().err
    assert second["finished_at"] == first["finished_at"]
    forced = run(tmp_path, "trainer.epochs=1", "force=true")
    assert comparable(forced) == comparable(first) and forced["resumed"] == 0


def test_killed_run_resumes_to_the_uninterrupted_record(tmp_path: Path, cifar_dir: Path) -> None:
    overrides = ["task=cifar10_resnet20", "optimizer=adam", f"task.data_dir={cifar_dir}", "trainer.deterministic=true",
                 "trainer.epochs=3", "trainer.batch_size=32", "trainer.eval_batch_size=100"]
    reference = run(tmp_path / "reference", *overrides)
    runs = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", *overrides, f"paths.runs={runs}"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = runs / "default" / reference["run_id"] / "checkpoint.pt"
    deadline = time.monotonic() + 300

    def evaluated() -> bool:  # the first epoch's checkpoint and the record that follows it are both written
        record = read_record(checkpoint.parent / "record.json") or {}
        return checkpoint.exists() and bool(record.get("history"))

    while not evaluated() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted = json.loads((checkpoint.parent / "record.json").read_text())
    assert interrupted["status"] == "running", "the run finished before it could be killed"
    assert 1 <= len(interrupted["history"]) < 3
    resumed = run(runs, *overrides)
    assert resumed["resumed"] == 1
    assert comparable(resumed) == comparable(reference)
    metrics = (checkpoint.parent / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in metrics] == [row["epoch"] for row in reference["history"]]


def test_interrupted_write_leaves_the_old_record_and_no_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    write_json_atomic(path, {"status": "running"})

    def half_then_crash(f) -> None:
        f.write(b'{"status": "compl')
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomic(path, half_then_crash)
    assert json.loads(path.read_text()) == {"status": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_conv_tf32_sets_cudnn_for_each_run_of_a_process(tmp_path: Path) -> None:
    import torch

    fp32 = run(tmp_path, "trainer.epochs=1", "trainer.conv_tf32=false")
    assert fp32["config"]["trainer"]["conv_tf32"] is False and torch.backends.cudnn.allow_tf32 is False
    run(tmp_path, "trainer.epochs=1", "seed=1")  # PyTorch's default again: a sweep's next run is not left in fp32
    assert torch.backends.cudnn.allow_tf32 is True
