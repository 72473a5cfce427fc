"""`bench report --table delayed` shows the curvature batch fraction beside the refresh interval, from each
record's config.trainer.hessian_batch_fraction; `bench perf` times the fraction and prints its target."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

from bench import paper, report, stats
from bench.cli import main
from bench.recordset import label_of, load
from tests.record_factory import write_record


def write_fraction_runs(root: Path) -> None:
    """SGD, Adam, and AdaHessian every 1 and 5 steps with the full batch and with a quarter of it."""
    write_record(root, task="cifar10_resnet20", optimizer="sgd", curve=[85, 92.0], s_per_step=0.01)
    write_record(root, task="cifar10_resnet20", optimizer="adam", curve=[85, 90.0], s_per_step=0.0125)
    for fraction, s_per_step, top1 in ((1.0, 0.04, 92.0), (0.25, 0.02, 91.5)):
        for every in (1, 5):
            path = write_record(root, study=f"f{fraction}", task="cifar10_resnet20", optimizer="adahessian",
                                update_each=every, curve=[85, top1 - every / 10], s_per_step=s_per_step / every)
            record = json.loads(path.read_text())
            record["config"]["trainer"]["hessian_batch_fraction"] = fraction
            path.write_text(json.dumps(record))


def test_labels_name_the_fraction_as_bench_perf_does() -> None:
    assert label_of("adahessian", 1) == "adahessian" and label_of("adahessian", 5) == "adahessian@5"
    assert label_of("adahessian", 1, 0.25) == "adahessian@1/f0.25"
    assert label_of("adahessian", 5, 0.125) == "adahessian@5/f0.125"


def test_delayed_table_has_a_fraction_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_fraction_runs(tmp_path)
    rs = load(tmp_path)
    summary = stats.summarize(rs.runs, stats.time_to_target(rs.runs, rs.history))
    table = paper.delayed(summary, paper.load_reference()).set_index(["every", "fraction", "task"])
    quarter = table.loc[(5, 0.25, "cifar10_resnet20")]
    assert quarter["n"] == 1 and quarter["mean"] == pytest.approx(91.0) and quarter["x_adam"] == pytest.approx(0.32)
    assert math.isnan(quarter["paper_x_adam"])  # the paper estimates from the full batch only
    assert table.loc[(5, 1.0, "cifar10_resnet20"), "paper_x_adam"] == 1.25
    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    assert report.run(parser.parse_args([str(tmp_path), "--table", "delayed"])) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| Hessian every"))
    assert [cell.strip() for cell in header.split("|")[1:3]] == ["Hessian every", "fraction"]
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| 5 ")]
    assert [(row[2].strip(), row[3].strip()) for row in rows] == [
        ("1", "91.50 (n=1); paper 92.16; diff -0.66; inconclusive"), ("0.25", "91.00 (n=1)")]


def test_step_time_times_the_fraction_and_prints_its_targets(capsys: pytest.CaptureFixture) -> None:
    assert main(["perf", "step-time", "--task", "digits", "--batch-size", "32", "--steps", "1", "--warmup", "0",
                 "--optimizers", "adam,adahessian", "--hessian-every", "1,5", "--hessian-batch-fraction", "0.25",
                 "--hvp-mode", "forward_over_reverse", "--memory", "--reuse", "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    timed = set(result["median_s"]) | set(result["diverged"])
    assert {"adahessian@1/f0.25/fwd", "adahessian@5/f0.25/fwd", "adahessian@reuse", "hvp_limit/fwd"} <= timed
    assert result["hvp_limit_fwd_vs_adam"] > 0
    assert {"adahessian@reuse_vs_adam"} <= set(result["targets"])
    assert all(result["peak_mib"][name] > 0 for name in ("hvp_limit", "hvp_limit/fwd"))


def test_step_time_refuses_a_bad_fraction(capsys: pytest.CaptureFixture) -> None:
    assert main(["perf", "step-time", "--task", "digits", "--hessian-batch-fraction", "0,1", "--steps", "1"]) == 2
    assert "error: --hessian-batch-fraction 0,1: expected comma-separated numbers in (0, 1]" in capsys.readouterr().err
