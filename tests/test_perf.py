"""`bench perf step-time` plumbing: the paper-layout keys come out (timings are not asserted here)."""

from __future__ import annotations

import json

import pytest

from bench.cli import main
from bench.perf import peer_caveat


def test_step_time_reports_ratios_and_the_hvp_limit(capsys: pytest.CaptureFixture) -> None:
    assert main(["perf", "step-time", "--task", "digits", "--batch-size", "32", "--steps", "2", "--warmup", "0",
                 "--optimizers", "sgd,adam,adahessian", "--hessian-every", "1,5", "--device", "cpu", "--json",
                 "--peers"]) == 0
    result = json.loads(capsys.readouterr().out)
    timed_or_diverged = set(result["ratios_vs_adam"]) | set(result["diverged"])
    assert timed_or_diverged == {"sgd", "adahessian@1", "adahessian@5", "peer:pytorch_optimizer@1",
                                 "peer:pytorch_optimizer@5"}
    assert {"adahessian@1", "adahessian@5"} <= set(result["ratios_vs_adam"])
    assert set(result["ratios_vs_sgd"]) >= {"adam", "adahessian@1", "adahessian@5"}
    assert result["hvp_limit_vs_adam"] > 0 and result["data"] == "bundled"
    assert set(result["targets"]) == {"adahessian@1_vs_hvp_limit", "adahessian@5_vs_adam"}
    assert result["peer_caveat"] == peer_caveat()


@pytest.mark.parametrize(("version", "constant_probes"), [("3.10.1", True), ("3.10.2", False), ("4.1.0", False)])
def test_peer_caveat_depends_on_the_installed_version(version: str, constant_probes: bool) -> None:
    assert ("which is always -1" in peer_caveat(version)) == constant_probes
    assert version in peer_caveat(version)


def test_missing_cifar_data_falls_back_to_random_tensors(capsys: pytest.CaptureFixture, tmp_path) -> None:
    assert main(["perf", "step-time", "--task", "cifar10_resnet20", "--data-dir", str(tmp_path), "--batch-size", "8",
                 "--steps", "1", "--warmup", "0", "--optimizers", "sgd,adam", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["data"] == "synthetic"
    assert "timing on random tensors" in captured.err


def test_hessian_every_alone_leaves_first_order_optimizers_alone(capsys: pytest.CaptureFixture) -> None:
    assert main(["perf", "step-time", "--task", "digits", "--batch-size", "32", "--steps", "1", "--warmup", "0",
                 "--optimizers", "sgd,adahessian", "--hessian-every", "5", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)["ratios_vs_adam"]) == {"sgd", "adahessian@5"}


def test_bad_flags_are_usage_errors(capsys: pytest.CaptureFixture) -> None:
    assert main(["perf", "step-time", "--task", "digits", "--hessian-every", "0"]) == 2
    assert "--hessian-every 0: expected comma-separated positive integers" in capsys.readouterr().err
    assert main(["perf", "step-time", "--task", "nosuch"]) == 2
    assert "unknown task 'nosuch'" in capsys.readouterr().err
