"""User mistakes: one line on stderr, exit code 2, no traceback, and never a `completed` record."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.cli import main
from tests.conftest import bench

BAD_OVERRIDES = [
    (["task=imagenet_resnet9"], "unknown task 'imagenet_resnet9'; available: cifar10_resnet20"),
    (["optimizer=lbfgs2"], "unknown optimizer 'lbfgs2'; available: adagrad"),
    (["trainer.epoch=3"], "unknown config key 'trainer.epoch'; trainer has: amp, average_last, batch_size"),
    (["optimizer.lr=0"], "optimizer.lr=0: must be a positive number"),
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1: must be a positive number"),
    (["trainer.epochs=0"], "trainer.epochs=0: must be an integer >= 1"),
    (["trainer.batch_size=-8"], "trainer.batch_size=-8: must be an integer >= 1"),
    (["trainer.foo=1", "trainer.bar=2"], "unknown config key 'trainer.foo'"),
    (["-m", "optimizer=sgd", "optimizer.lr=0.1,-1"], "optimizer.lr=-1: must be a positive number"),
    (["-m", "optimizer=sgd,nosuch"], "unknown optimizer 'nosuch'"),
    (["launcher=torchrun", "trainer.devices=3", "trainer.batch_size=64"], "must split evenly over the run's 3"),
    (["trainer.grad_clip=-1"], "trainer.grad_clip=-1: must be >= 0"),
    (["trainer.amp=fp16", "trainer.device=cpu"], "trainer.amp=fp16 needs CUDA"),
    (["logger=wandb", "logger.mode=bogus"], "logger.mode=bogus: expected one of offline|online|disabled"),
    (["trainer.epochs=2.5"], "trainer.epochs=2.5: must be an integer >= 1"),
    (["seed=abc"], "seed=abc: must be an integer >= 0"),
    (["trainer.device=tpu"], "trainer.device=tpu: expected one of auto|cpu|cuda"),
    (["task=iwslt14_transformer", "optimizer=adamw", "+lr_scale=0"], "divides by zero (is a multiplier such as "
                                                                     "lr_scale 0?)"),
    (["trainer.test_on=first"], "trainer.test_on=first: expected one of last, best"),
]


def assert_one_line_error(err: str, expected: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and expected in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize(("overrides", "expected"), BAD_OVERRIDES)
def test_bad_overrides(overrides: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", *overrides, f"paths.runs={tmp_path}"]) == 2
    assert_one_line_error(capsys.readouterr().err, expected)
    assert not any(tmp_path.rglob("record.json"))


def test_missing_data_dir_through_the_real_entry_point(tmp_path: Path) -> None:
    proc = bench("run", "task=cifar10_resnet20", f"task.data_dir={tmp_path / 'nope'}", f"paths.runs={tmp_path}")
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, f"task.data_dir={tmp_path / 'nope'}: no CIFAR-10 data there; expected "
                                       "DATA_DIR/cifar-10-batches-py/ with data_batch_1")
    assert not any(tmp_path.rglob("record.json"))


def test_malformed_data_file(tmp_path: Path, cifar_dir: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    shutil.copytree(cifar_dir, data)
    (data / "cifar-10-batches-py" / "test_batch").write_text("garbage")
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "task=cifar10_resnet20", f"task.data_dir={data}", f"paths.runs={tmp_path / 'runs'}"])
    assert exit_info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, "test_batch: not a CIFAR-10 python pickle")
    assert not any((tmp_path / "runs").rglob("record.json"))


def test_bad_resnet_depth(tmp_path: Path, cifar_dir: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "task=cifar10_resnet20", f"task.data_dir={cifar_dir}", "task.depth=21", f"paths.runs={tmp_path}"])
    assert exit_info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, "task.depth=21: a CIFAR ResNet has depth 6n+2")


def test_weight_decay_mode_must_match_the_optimizer(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "optimizer=adam", "optimizer.weight_decay_mode=decoupled", f"paths.runs={tmp_path}"])
    assert exit_info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, "Adam applies weight_decay as l2")
