"""Pipeline honesty: `bench report` flags data-bound runs, and `bench perf loader` measures both rates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main
from bench.recordset import load
from bench.report import build, to_markdown
from tests.imagenet_fixture import write_imagenet
from tests.record_factory import make_record


def test_report_flags_runs_that_waited_for_data(tmp_path: Path) -> None:
    for seed, wait in ((0, 0.04), (1, 0.35)):
        record = make_record(task="imagenet_resnet18", optimizer="sgd", seed=seed, study="inet", curve=[50.0, 60.0])
        record["cost"]["data_wait_frac"] = wait
        path = tmp_path / "inet" / f"run{seed}" / "record.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(record))
    text = to_markdown(build(load(tmp_path), None))
    assert "data-bound: imagenet_resnet18 sgd seed 1 waited 35% of its training time for data (> 10%)" in text
    assert "seed 0 waited" not in text


def test_perf_loader_prints_loader_and_step_rates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_imagenet(tmp_path / "imagenet").root
    code = main(["perf", "loader", "--data-dir", str(data), "--batch-size", "8", "--batches", "2", "--warmup", "1",
                 "--device", "cpu", "--set", "task.image_size=16", "--set", "task.workers=0", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["loader"] == "dataloader" and result["workers"] == 0
    assert result["loader_images_per_s"] > 0 and result["step_images_per_s"] > 0
    assert result["data_bound"] == (result["loader_images_per_s"] < result["step_images_per_s"])
