"""bench check on synthetic studies of known truth: noise passes, a lost lead fails, a gain passes and is
reported, another config is refused; --write-baseline shows the diff and will not lower a value unasked."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import yaml

from bench import check
from bench.cli import main
from bench.errors import UsageError
from tests.record_factory import write_record
from tests.test_cli_errors import assert_one_line_error

SEEDS = 7
SD = 1.5  # seed noise of each optimizer's final metric
LEAD = 5.0  # AdaHessian's lead over Adam in the baseline, on both tasks
MEANS = {"digits": {"sgd": 92.6, "adam": 91.3}, "cifar10_resnet20": {"sgd": 30.0, "adam": 39.0}}
TRAINER = {"epochs": 3, "batch_size": 32}


def study(root: Path, *, lead: float = LEAD, noise: int = 0, trainer: dict | None = None,
          seeds: int = SEEDS) -> Path:
    """A ci study: per seed, sgd and adam draw normal noise around MEANS and adahessian = adam + lead + a little
    noise of its own. The same `noise` draws the same noise, so only `lead` differs between two such studies."""
    rng = np.random.default_rng(noise)
    for task, means in MEANS.items():
        finals = {name: mean + rng.normal(0, SD, seeds) for name, mean in means.items()}
        finals["adahessian"] = finals["adam"] + lead + rng.normal(0, 0.3 * SD, seeds)
        for optimizer, values in finals.items():
            for seed, value in enumerate(values):
                write_record(root, task=task, optimizer=optimizer, seed=seed, study="ci",
                             curve=[round(value - 10, 2), round(value, 2)],
                             config={"trainer": trainer or TRAINER})
    return root / "ci"


def _check(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    check.add_arguments(parser)
    return check.run(parser.parse_args(list(argv)))


def failing(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.rstrip(" |").endswith("FAIL") or "| FAIL" in line]


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    path = tmp_path / "baselines" / "ci.yaml"
    assert _check(str(study(tmp_path / "base")), "--write-baseline", str(path)) == 0
    return path


def test_baseline_keeps_seeds_config_code_and_platform(baseline: Path, tmp_path: Path) -> None:
    doc = yaml.safe_load(baseline.read_text())
    assert doc["schema"] == 2 and baseline.read_text().startswith("# bench check baseline (schema 2)")
    assert doc["code"] == {"git_sha": "abc", "dirty": False}
    assert doc["platform"] == {"device": "cpu", "torch": "2.14"}
    assert doc["config"] == {"trainer.epochs": 3, "trainer.batch_size": 32, "optimizer.lr": 0.01}
    digits = doc["tasks"]["digits"]
    assert digits["mode"] == "max" and digits["deltas"] == ["adahessian - adam", "adahessian - sgd"]
    adam = digits["optimizers"]["adam"]
    assert adam["config"] == {"optimizer.name": "adam"} and len(adam["fingerprint"]) == 12
    rng = np.random.default_rng(0)
    rng.normal(0, SD, SEEDS)  # digits sgd
    expected = np.round(MEANS["digits"]["adam"] + rng.normal(0, SD, SEEDS), 2)
    assert list(adam["seeds"]) == list(range(SEEDS)) and np.allclose(list(adam["seeds"].values()), expected)


def test_the_baseline_study_passes(baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert _check(str(tmp_path / "base" / "ci"), "--baseline", str(baseline)) == 0
    out = capsys.readouterr().out
    assert "all 10 entries hold" in out and "alpha = 0.01 over k = 10 entries" in out
    assert "code abc on cpu, torch 2.14" in out


def test_an_optimizer_outside_the_baseline_is_named_not_checked(baseline: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    runs = study(tmp_path / "base")
    write_record(tmp_path / "base", task="digits", optimizer="adamw", seed=0, study="ci", curve=[10.0],
                 config={"trainer": TRAINER})
    capsys.readouterr()
    assert _check(str(runs), "--baseline", str(baseline)) == 0
    assert "Not in the baseline, not checked: digits adamw." in capsys.readouterr().out


def test_noise_only_change_passes(baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every seed redrawn from the same distributions: a change that only perturbs training."""
    assert _check(str(study(tmp_path / "new", noise=1)), "--baseline", str(baseline)) == 0
    assert not failing(capsys.readouterr().out)


def test_lost_80_percent_of_the_lead_fails(baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert _check(str(study(tmp_path / "new", lead=0.2 * LEAD)), "--baseline", str(baseline)) == 1
    rows = failing(capsys.readouterr().out)
    for task in MEANS:
        assert any(task in r and "adahessian - adam" in r for r in rows), rows
        assert any(task in r and "adahessian top1" in r for r in rows), rows
    assert not any("| adam top1" in r or "| sgd top1" in r for r in rows), rows


def test_lost_lead_fails_even_under_fresh_noise(baseline: Path, tmp_path: Path) -> None:
    assert _check(str(study(tmp_path / "new", lead=0.2 * LEAD, noise=1)), "--baseline", str(baseline)) == 1


def test_improvement_of_the_same_size_passes_and_is_reported(baseline: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert _check(str(study(tmp_path / "new", lead=1.8 * LEAD)), "--baseline", str(baseline)) == 0
    out = capsys.readouterr().out
    improved = [line for line in out.splitlines() if line.rstrip(" |").endswith("improved")]
    assert sum("adahessian - adam" in line for line in improved) == 2, out
    assert "Improved beyond noise (passes): cifar10_resnet20 adahessian top1" in out


def test_another_budget_is_refused_naming_the_keys(baseline: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    runs = study(tmp_path / "long", trainer={"epochs": 100, "batch_size": 512})
    capsys.readouterr()
    assert main(["check", str(runs), "--baseline", str(baseline)]) == 2
    captured = capsys.readouterr()
    assert_one_line_error(captured.err, "config differs from the baseline")
    assert "trainer.batch_size 32 -> 512 (6 entries)" in captured.err and "trainer.epochs 3 -> 100" in captured.err
    assert captured.out == ""


def test_write_baseline_refuses_to_lower_without_consent(baseline: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    before = baseline.read_text()
    worse = study(tmp_path / "worse", lead=0.2 * LEAD)
    capsys.readouterr()
    assert main(["check", str(worse), "--write-baseline", str(baseline)]) == 2
    captured = capsys.readouterr()
    assert_one_line_error(captured.err, "lowers or drops 6 guarded value(s) (cifar10_resnet20 adahessian -4.")
    assert "--accept-regression" in captured.err and baseline.read_text() == before
    lowered = [line for line in captured.out.splitlines() if "| lowered" in line]
    assert len(lowered) == 6 and all("adahessian" in line for line in lowered)
    assert main(["check", str(worse), "--write-baseline", str(baseline), "--accept-regression"]) == 0
    assert baseline.read_text() != before
    assert _check(str(worse), "--baseline", str(baseline)) == 0


def test_write_baseline_raises_without_flag_and_shows_the_diff(baseline: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert _check(str(study(tmp_path / "better", lead=1.8 * LEAD)), "--write-baseline", str(baseline)) == 0
    out = capsys.readouterr().out
    assert sum("| raised" in line for line in out.splitlines()) == 6
    assert sum("| unchanged" in line for line in out.splitlines()) == 4


def test_write_baseline_over_an_old_format_file_migrates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ci.yaml"
    path.write_text("schema: 1\ntasks: {}\n")
    assert _check(str(study(tmp_path / "base")), "--write-baseline", str(path)) == 0
    assert "replacing a schema-1 baseline" in capsys.readouterr().err
    assert yaml.safe_load(path.read_text())["schema"] == 2


def test_old_format_is_refused_with_how_to_regenerate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "old.yaml"
    path.write_text("schema: 1\ntasks:\n  digits: {metric: top1, optimizers: {adam: {value: 1, tolerance: 3, "
                    "seeds: [0, 1]}}}\n")
    assert main(["check", str(study(tmp_path / "base")), "--baseline", str(path)]) == 2
    assert_one_line_error(capsys.readouterr().err, "baseline schema 1 (means with a hand-set tolerance, no per-seed "
                                                   "values or config) is no longer read; regenerate it from real "
                                                   "runs: make ci-baseline")


@pytest.mark.parametrize(("drop", "status", "row"), [
    (3, None, "seed 3 missing"),
    (3, "diverged", "seed 3 diverged"),
    (0, "failed", "seed 0 failed"),
])
def test_a_missing_or_broken_seed_fails(baseline: Path, tmp_path: Path, drop: int, status: str | None, row: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    runs = study(tmp_path / "new")
    victim = next(p for p in runs.glob("*/record.json")
                  if '"optimizer": "adam"' in p.read_text() and f'"seed": {drop},' in p.read_text()
                  and '"task": "digits"' in p.read_text())
    victim.unlink()
    if status:
        write_record(tmp_path / "new", task="digits", optimizer="adam", seed=drop, study="ci", status=status,
                     curve=[50.0], config={"trainer": TRAINER})
    capsys.readouterr()
    assert _check(str(runs), "--baseline", str(baseline)) == 1
    assert any("adam runs" in line and row in line for line in failing(capsys.readouterr().out))


def _edit(path: Path, change) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc))


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["tasks"]["digits"]["optimizers"]["adam"]["seeds"].update({0: 99.0}), None),
    (lambda d: d["tasks"]["digits"]["optimizers"]["adam"]["config"].update({"optimizer.lr": 0.1}),
     "fingerprint '"),
    (lambda d: d["tasks"]["digits"]["optimizers"]["adam"].update(seeds={0: 1.0}), "map >= 2 integer seeds"),
    (lambda d: d["tasks"]["digits"].update(deltas=["adahessian - adamw"]), "'A - B'"),
    (lambda d: d["tasks"]["digits"].update(mode="up"), "mode: max|min"),
    (lambda d: d.update(schema=3), "schema: 2"),
])
def test_edited_baselines(baseline: Path, tmp_path: Path, change, message: str | None) -> None:
    _edit(baseline, change)
    runs = str(tmp_path / "base" / "ci")
    if message is None:  # a number edited by hand is no fault of the file: the check just compares with it
        assert _check(runs, "--baseline", str(baseline)) in (0, 1)
        return
    with pytest.raises(UsageError, match=message):
        _check(runs, "--baseline", str(baseline))


def test_other_unusable_input(baseline: Path, tmp_path: Path) -> None:
    runs = str(study(tmp_path / "base"))
    with pytest.raises(UsageError, match="no such baseline"):
        _check(runs, "--baseline", str(tmp_path / "missing.yaml"))
    (tmp_path / "bad.yaml").write_text("tasks: [")
    with pytest.raises(UsageError, match="not valid YAML"):
        _check(runs, "--baseline", str(tmp_path / "bad.yaml"))
    with pytest.raises(UsageError, match="exists and is not a readable baseline"):
        _check(runs, "--write-baseline", str(tmp_path / "bad.yaml"))
    with pytest.raises(UsageError, match="--accept-regression goes with --write-baseline"):
        _check(runs, "--baseline", str(baseline), "--accept-regression")
    with pytest.raises(UsageError, match="--alpha 2"):
        _check(runs, "--baseline", str(baseline), "--alpha", "2")
    one_seed = study(tmp_path / "one", seeds=1)
    with pytest.raises(UsageError, match="no optimizer with >= 2 completed seeds"):
        _check(str(one_seed), "--write-baseline", str(tmp_path / "b.yaml"))
