"""bench check: a written baseline round-trips; metric, delta and run problems fail; bad input exits 2."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from bench import check
from bench.errors import UsageError
from tests.record_factory import demo_study


def _check(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    check.add_arguments(parser)
    return check.run(parser.parse_args(argv))


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return demo_study(tmp_path / "runs")


@pytest.fixture
def baseline(runs: Path, tmp_path: Path) -> Path:
    path = tmp_path / "baselines" / "demo.yaml"
    assert _check([str(runs), "--write-baseline", str(path), "--tolerance", "0.5"]) == 0
    return path


def _edit(path: Path, change) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc["tasks"]["digits"])
    path.write_text(yaml.safe_dump(doc))


def test_written_baseline_round_trips(runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = tmp_path / "b.yaml"
    assert _check([str(runs), "--write-baseline", str(baseline), "--tolerance", "0.5"]) == 0
    text = baseline.read_text()
    assert text.startswith("# bench check baseline (schema 1)")
    digits = yaml.safe_load(text)["tasks"]["digits"]
    assert digits["metric"] == "top1"
    assert digits["optimizers"]["adam"] == {"value": 92.0, "tolerance": 0.5, "seeds": [0, 1, 2]}
    assert digits["optimizers"]["adahessian"]["value"] == 93.3333  # the diverged seed 3 is left out
    assert "sgd" not in digits["optimizers"]  # it only failed
    assert digits["deltas"] == {"adahessian - adam": {"value": 1.3333, "tolerance": 0.5}}
    assert "digits adahessian seed 3 is diverged: left out" in capsys.readouterr().err
    assert _check([str(runs), "--baseline", str(baseline)]) == 0
    assert "all 5 entries hold" in capsys.readouterr().out


def test_zero_tolerance_still_round_trips(runs: Path, tmp_path: Path) -> None:
    path = tmp_path / "strict.yaml"
    _check([str(runs), "--write-baseline", str(path), "--tolerance", "0"])
    assert _check([str(runs), "--baseline", str(path)]) == 0


@pytest.mark.parametrize(("change", "row"), [
    (lambda t: t["optimizers"]["adam"].update(value=92.6), "adam top1"),
    (lambda t: t["deltas"]["adahessian - adam"].update(value=2.0), "adahessian − adam"),
    (lambda t: t["optimizers"]["adam"]["seeds"].append(7), "seed 7 missing"),
    (lambda t: t["optimizers"]["adahessian"]["seeds"].append(3), "seed 3 diverged"),
    (lambda t: t["optimizers"].update(sgd={"value": 90.0, "tolerance": 1.0, "seeds": [0]}), "seed 0 failed"),
    (lambda t: t.update(metric="ppl"), "runs report top1"),
])
def test_failures_exit_1(runs: Path, baseline: Path, change, row: str, capsys: pytest.CaptureFixture[str]) -> None:
    _edit(baseline, change)
    capsys.readouterr()
    assert _check([str(runs), "--baseline", str(baseline)]) == 1
    failing = [line for line in capsys.readouterr().out.splitlines() if line.rstrip(" |").endswith("FAIL")]
    assert any(row in line for line in failing), failing


def test_tolerance_edge_holds(runs: Path, baseline: Path) -> None:
    _edit(baseline, lambda t: t["optimizers"]["adam"].update(value=92.5))
    assert _check([str(runs), "--baseline", str(baseline)]) == 0


@pytest.mark.parametrize(("text", "message"), [
    ("tasks: [", "not valid YAML"),
    ("schema: 2\ntasks: {}\n", "schema: 1"),
    ("schema: 1\ntasks:\n  digits: {metric: top1, optimizers: {adam: {value: x, tolerance: 1, seeds: [0]}}}\n",
     "value must be a number"),
    ("schema: 1\ntasks:\n  digits: {metric: top1, optimizers: {adam: {value: 1, tolerance: 1, seeds: [0]}},"
     " deltas: {adahessian - adam: {value: 1, tolerance: 1}}}\n", "'A - B'"),
    ("schema: 1\ntasks:\n  digits: {metric: top1, optimizers: {adam: {value: 1, tolerance: -1, seeds: [0]}}}\n",
     ">= 0"),
    ("schema: 1\ntasks:\n  digits: {metric: top1, optimizers: {adam: {value: 1, tolerance: 1, seeds: []}}}\n",
     "non-empty list"),
])
def test_unusable_baseline_is_usage_error(runs: Path, tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        _check([str(runs), "--baseline", str(path)])


def test_other_unusable_input(runs: Path, baseline: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such baseline"):
        _check([str(runs), "--baseline", str(tmp_path / "missing.yaml")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"no record\.json"):
        _check([str(tmp_path / "empty"), "--baseline", str(baseline)])
    with pytest.raises(UsageError, match="--tolerance"):
        _check([str(runs), "--write-baseline", str(tmp_path / "b.yaml")])
