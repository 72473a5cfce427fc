"""`bench run task=imagenet_resnet18` end to end on the tiny fixture: it learns, it resumes mid-epoch exactly,
and bad input is one line with exit code 2."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench.errors import UsageError
from bench.preemption import Preempted
from tasks.imagenet import ImageNetTask
from tests.conftest import bench
from tests.imagenet_fixture import truncated_jpeg, write_imagenet
from tests.runs import comparable, interrupted_then_resumed, run

SHORT = ("task=imagenet_resnet18", "task.image_size=16", "task.workers=0", "trainer.device=cpu",
         "trainer.batch_size=16", "trainer.eval_batch_size=12", "trainer.schedule.name=constant")


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_imagenet(tmp_path_factory.mktemp("imagenet"), "kaggle").root


def test_short_run_lowers_the_loss_and_records_top1_and_top5(tmp_path: Path, kaggle: Path) -> None:
    record = run(tmp_path, *SHORT, f"task.data_dir={kaggle}", "optimizer=adam", "trainer.epochs=3",
                 "trainer.checkpoint=false")
    assert record["status"] == "completed"
    losses = [row["train_loss"] for row in record["history"]]
    assert losses[-1] < losses[0]
    assert {"top1", "top5", "loss"} <= set(record["history"][-1]["metrics"])
    assert record["metric"]["name"] == "top1" and record["cost"]["steps"] == 3 * (48 // 16)
    cost = record["cost"]
    assert cost["throughput_unit"] == "images" and cost["items_per_s"] > 0 and 0 <= cost["data_wait_frac"] < 1
    assert record["data"]["layout"] == "kaggle" and record["data"]["train_images"] == 48
    assert record["data"]["skipped_images"] == 0 and record["data"]["loader"] == "dataloader"


def test_a_bad_image_met_mid_run_is_one_line_and_a_failed_record(tmp_path: Path) -> None:
    data = write_imagenet(tmp_path / "imagenet").root
    bad = data / "train" / "n01443537" / "n01443537_4.JPEG"
    bad.write_bytes(truncated_jpeg(Image.open(bad).convert("RGB")))
    with pytest.raises(UsageError, match=r"n01443537_4\.JPEG: unreadable image") as caught:
        run(tmp_path / "runs", *SHORT, f"task.data_dir={data}", "trainer.epochs=1")
    assert "\n" not in str(caught.value)
    (record_path,) = (tmp_path / "runs").glob("default/*/record.json")
    record = json.loads(record_path.read_text())
    assert record["status"] == "failed" and "unreadable image" in record["error"]


def test_run_preempted_mid_epoch_resumes_to_the_uninterrupted_record(tmp_path: Path, kaggle: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = (*SHORT, f"task.data_dir={kaggle}", "optimizer=sgd", "optimizer.lr=0.01", "trainer.epochs=2",
                 "trainer.deterministic=true")
    reference = run(tmp_path / "reference", *overrides)
    original = ImageNetTask.train_batches

    def stopped_at_step_4(self: ImageNetTask, epoch: int, start: int = 0) -> Iterator:
        for number, batch in enumerate(original(self, epoch, start), start=start):
            if (epoch, number) == (1, 1):
                os.kill(os.getpid(), signal.SIGUSR1)  # what a scheduler sends; the runner checkpoints here
            yield batch

    resumed = interrupted_then_resumed(monkeypatch, ImageNetTask, "train_batches", stopped_at_step_4, Preempted,
                                       tmp_path / "preempted", *overrides)
    assert comparable(resumed) == comparable(reference)


def test_synthetic_images_need_no_data_dir() -> None:
    task = ImageNetTask("/nonexistent", synthetic=16, image_size=32, device=torch.device("cpu"), batch_size=8,
                        eval_batch_size=8, seed=0)
    (x, y), _ = list(task.train_batches(0))
    assert x.shape == (8, 3, 32, 32) and int(y.max()) < 1000 and task.steps_per_epoch() == 2
    assert task.build_model().fc.out_features == 1000


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = bench("run", "task=imagenet_resnet18", f"task.data_dir={tmp_path}", f"paths.runs={tmp_path / 'runs'}")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: task.data_dir={tmp_path}: no train/ or ILSVRC/Data/")
    with pytest.raises(ValueError, match=r"task\.loader=fast: expected one of dataloader\|dali"):
        ImageNetTask(str(tmp_path), loader="fast", device=torch.device("cpu"), batch_size=8, eval_batch_size=8,
                     seed=0)
