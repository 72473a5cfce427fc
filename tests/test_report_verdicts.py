"""Issue 20's synthetic studies of known truth, each through `bench report` on record.json files: the answer a
careful reviewer expects is what the report prints."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import numpy as np
import pytest

from bench import report
from tests.record_factory import demo_study, write_record

Z5 = np.array([-2.0, -1.0, 0.0, 1.0, 2.0]) / math.sqrt(2.5)  # five values with mean 0 and sample sd 1


def _report(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    assert report.run(parser.parse_args(argv)) == 0
    return capsys.readouterr().out


def _row(out: str, *cells: str) -> str:
    """The one table line holding every cell."""
    (line,) = [line for line in out.splitlines() if all(f"| {c} |" in re.sub(" +", " ", line) for c in cells)]
    return re.sub(" +", " ", line)


def test_two_equal_pairs_give_no_interval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for seed, (adam, ada) in enumerate([(90.0, 92.22), (91.0, 93.22)]):
        write_record(tmp_path, optimizer="adam", seed=seed, curve=[adam])
        write_record(tmp_path, optimizer="adahessian", seed=seed, curve=[ada])
    out = _report([str(tmp_path)], capsys)
    row = _row(out, "adahessian − adam")
    assert "too few seeds (2 < 3 pairs): differences +2.22, +2.22" in row and "no test" in row
    assert "[+2.22, +2.22]" not in out


def test_five_seed_study_gives_the_t_interval_and_no_verdict(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    # paired differences with mean 0.5 and sd 0.4913: the t interval is [-0.11, +1.11] (a percentile bootstrap
    # printed about [+0.10, +0.88] for such a study)
    diffs = 0.5 + 0.4913 * Z5
    for seed, d in enumerate(diffs):
        write_record(tmp_path, optimizer="adam", seed=seed, curve=[90.0 + seed])
        write_record(tmp_path, optimizer="adahessian", seed=seed, curve=[90.0 + seed + d])
    row = _row(_report([str(tmp_path)], capsys), "adahessian − adam")
    assert "| paired t | 5 | +0.50 | [-0.11, +1.11] |" in row and row.endswith("| not distinguishable |")


def test_lr_sweep_beside_the_demo_is_not_pooled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = demo_study(tmp_path).parent
    for lr, top1 in ((0.001, 40.0), (0.1, 20.0)):
        for seed in range(3):
            write_record(root, study="sweep", optimizer="adam", seed=seed, curve=[10.0, 15.0, top1 + seed],
                         optimizer_config={"lr": lr}, run_id=f"adam-{lr}-{seed}")
    out = _report([str(root)], capsys)
    summary = "top1 % ↑"
    assert "92.00 ± 2.00" in _row(out, "adam lr=0.01", summary)  # the demo's adam, alone
    assert "41.00 ± 1.00" in _row(out, "adam lr=0.001", summary) and "21.00 ± 1.00" in _row(out, "adam lr=0.1", summary)
    assert "no spread observed (every difference +20.00)" in _row(out, "adam lr=0.001 − adam lr=0.1")


def test_a_seed_run_twice_is_kept_once_and_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = demo_study(tmp_path).parent
    write_record(root, study="again", optimizer="adam", seed=0, curve=[80, 88, 96],
                 finished_at="2026-11-23T09:00:00+00:00", target=92.0)
    out = _report([str(root)], capsys)
    assert "| digits | adam | top1 % ↑ | 3 | 94.00 ± 2.00 |" in re.sub(" +", " ", out)  # 96, 92, 94
    assert re.search(r"digits adam seed 0 completed 2 times with the same config: kept the latest \(.*again", out)


def test_sgd_against_adahessian_gets_its_paired_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # docs/clusters.md's example: task=cifar10_resnet32 optimizer=sgd,adahessian seed=0,1,2 (no Adam, the paper's
    # baseline of that table, ran)
    for seed, (sgd, ada) in enumerate([(93.0, 93.2), (93.1, 93.4), (92.9, 93.0)]):
        write_record(tmp_path, task="cifar10_resnet32", optimizer="sgd", seed=seed, curve=[80.0, sgd])
        write_record(tmp_path, task="cifar10_resnet32", optimizer="adahessian", seed=seed, curve=[80.0, ada])
    out = _report([str(tmp_path)], capsys)
    assert "| cifar10_resnet32 | adahessian − sgd | paired t | 3 | +0.20 |" in _row(out, "adahessian − sgd")
    assert "Family: all 1 tested comparisons" in out


def _cifar_gap(root: Path, optimizer: str, paper_mean: float, gap: float, sd: float) -> None:
    for seed, top1 in enumerate(paper_mean + gap + sd * Z5):
        write_record(root, study="paper_cifar10", task="cifar10_resnet20", optimizer=optimizer, seed=seed,
                     curve=[80.0, top1])


def test_gaps_to_the_paper_read_as_reproduced_or_not(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _cifar_gap(tmp_path, "sgd", 92.08, -0.43, 0.175)  # paper 92.08 ± 0.08 (n=5): Welch p = 0.003
    _cifar_gap(tmp_path, "adam", 90.33, -0.06, 0.087)  # paper 90.33 ± 0.13 (n=5): Welch p = 0.42
    out = _report([str(tmp_path), "--table", "cifar10"], capsys)
    sgd = _row(out, "table2", "sgd")
    assert "| 92.08 ± 0.08 (n=5) | 91.65 ± 0.18 (n=5, best) | -0.43 |" in sgd and "| 0.003 |" in sgd
    assert "±0.16 (2× paper std)" in sgd and "| not reproduced |" in sgd
    adam = _row(out, "table2", "adam")
    assert "| 0.42 |" in adam and "±0.26 (2× paper std)" in adam and "| reproduced |" in adam
    assert "91.65 ± 0.18 (n=5); paper 92.08; diff -0.43; not reproduced" in out  # the layout cell says it too


def test_a_small_gap_with_a_tight_paper_std_is_inconclusive(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    _cifar_gap(tmp_path, "sgd", 92.08, -0.06, 0.134)  # Welch p = 0.42, but the 90% interval passes -0.16
    row = _row(_report([str(tmp_path), "--table", "reproduction"], capsys), "table2", "sgd")
    assert "| 0.42 |" in row and "| inconclusive |" in row


def test_one_of_three_seeds_at_target_does_not_reach(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for seed, curve in enumerate([[80.0, 95.0], [80.0, 90.0], [80.0, 91.0]]):
        write_record(tmp_path, optimizer="adam", seed=seed, curve=curve, target=92.0)
    for seed in range(3):
        write_record(tmp_path, optimizer="adahessian", seed=seed, curve=[85.0, 93.0], target=92.0)
    out = _report([str(tmp_path)], capsys)
    assert "| not reached (1/3) |" in _row(out, "adam", "top1 % ↑")
    assert "| 20 steps, 0.2 s (3/3) |" in _row(out, "adahessian", "top1 % ↑")


def test_alpha_is_checked(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args([str(tmp_path), "--alpha", "5"])
    assert exc.value.code == 2


def test_unmatched_seeds_use_welch_and_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for seed, top1 in zip((0, 1, 2), (90.0, 91.0, 90.5), strict=True):
        write_record(tmp_path, optimizer="adam", seed=seed, curve=[top1])
    for seed, top1 in zip((3, 4, 5), (93.0, 92.0, 93.5), strict=True):
        write_record(tmp_path, optimizer="adahessian", seed=seed, curve=[top1])
    out = _report([str(tmp_path)], capsys)
    assert "| Welch t | 3 vs 3 | +2.33 |" in _row(out, "adahessian − adam")
    assert ("digits adahessian − adam: seeds do not match (no partner: adahessian seed(s) 3, 4, 5; adam seed(s) "
            "0, 1, 2); unpaired, Welch t on every seed.") in out
