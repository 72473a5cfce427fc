"""Time to target and performance profiles (bench/profile.py): AlgoPerf's median-with-misses rule, its score, the
three units, and wall-clock kept within one device class."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import trapezoid

from bench import aggregate, profile, report, stats
from bench.cli import main
from bench.recordset import load
from tests.record_factory import write_record


def run(root: Path, *, host: str = "test", gpu: str | None = None, grad_evals: int | None = None,
        **kwargs: Any) -> Path:
    """A record (tests/record_factory) with the env and cost fields the profile reads."""
    path = write_record(root, **kwargs)
    rec = json.loads(path.read_text())
    rec["env"].update(host=host, gpu=gpu)
    rec["cost"]["grad_evals"] = rec["cost"]["steps"] if grad_evals is None else grad_evals
    path.write_text(json.dumps(rec))
    return path


def one_of_three(root: Path) -> None:
    """digits, target 90: adam reaches at epoch 1 on seed 0 only; adahessian reaches at epoch 3 on all three seeds.
    Second task tiny: both reach at epoch 1 on every seed."""
    for seed in range(3):
        run(root, optimizer="adam", seed=seed, curve=[95.0, 95.0, 95.0] if seed == 0 else [50.0, 60.0, 70.0],
            target=90.0)
        run(root, optimizer="adahessian", seed=seed, curve=[50.0, 60.0, 91.0], target=90.0, hvp_count=30)
        for opt in ("adam", "adahessian"):
            run(root, task="tiny", optimizer=opt, seed=seed, curve=[95.0], target=90.0)


def test_one_seed_of_three_at_target_is_not_reaching_in_table_and_profile(tmp_path: Path) -> None:
    one_of_three(tmp_path)
    rs = load(tmp_path)
    costs = profile.run_costs(rs.runs, rs.history)
    steps = profile.cell_times(costs, "steps")
    assert steps.loc["digits", "adam"] == np.inf and steps.loc["digits", "adahessian"] == 30
    prof, table = profile.sections(rs.runs, rs.history)
    rows = {(r[0], r[1]): r[2:] for r in table.rows}
    assert rows[("digits", "adam")][:3] == ["1/3", "never", "never"]
    assert rows[("digits", "adahessian")][:3] == ["3/3", "30", "135"]  # 30 steps x (1 grad + 3.5 x 1 HVP)
    scores = {(r[0], r[1]): r[2:] for r in prof.rows}
    # on tiny both tie at ratio 1; on digits adam never reaches: half the tasks, score (3 + 0) / 3 / 2
    assert scores[("optimizer steps", "adam")] == ["0.500", "0.50", "0.50", "0.50", "2"]
    assert scores[("optimizer steps", "adahessian")] == ["1.000", "1.00", "1.00", "1.00", "2"]


def test_a_strict_majority_reaches_and_the_median_is_over_all_seeds() -> None:
    assert stats.cell_time_to_target(pd.Series([10.0, 20.0, 30.0, np.inf, np.inf])) == 30.0  # 3 of 5
    assert stats.cell_time_to_target(pd.Series([10.0, 20.0, np.inf, np.inf])) == np.inf  # 2 of 4 is no majority
    assert stats.cell_time_to_target(pd.Series([10.0, 20.0, 40.0, np.inf])) == 30.0


def test_score_is_the_exact_area_under_rho_over_1_to_4() -> None:
    r = pd.DataFrame({"a": [1.0, 2.0, np.inf, 5.0], "b": [1.5, 1.0, 1.0, 1.0]})
    assert profile.score(r)["a"] == pytest.approx((3 + 2 + 0 + 0) / 4 / 3)
    tau = np.linspace(1, 4, 30001)
    area = trapezoid(profile.rho(r, tau).to_numpy(), tau, axis=1) / 3
    assert area == pytest.approx(profile.score(r).to_numpy(), abs=1e-3)
    times = pd.DataFrame({"a": [10.0, np.inf], "b": [20.0, np.inf]}, index=["t1", "nobody"])
    assert profile.ratios(times)["b"].tolist() == [2.0, np.inf]  # a task nobody reached counts as never for all


def test_wall_clock_is_never_pooled_across_device_classes(tmp_path: Path) -> None:
    for seed in range(3):  # adam on the H100, adahessian on a CPU host: their seconds must not meet in one profile
        run(tmp_path, optimizer="adam", seed=seed, curve=[95.0], target=90.0, gpu="NVIDIA H100", host="node1",
            s_per_step=0.001)
        run(tmp_path, optimizer="adahessian", seed=seed, curve=[95.0], target=90.0, host="laptop", s_per_step=1.0)
    rs = load(tmp_path)
    walls = [p for p in profile.profiles(profile.run_costs(rs.runs, rs.history)) if p.unit == "wall_s"]
    assert [(p.device, list(p.ratios.columns)) for p in walls] == [("NVIDIA H100 x1", ["adam"]),
                                                                   ("cpu laptop", ["adahessian"])]
    prof, table = profile.sections(rs.runs, rs.history)
    assert any("2 device classes" in n and "never pooled" in n for n in prof.notes)
    units = {(r[0], r[1]): r[2] for r in prof.rows}
    assert units[("optimizer steps", "adam")] == units[("optimizer steps", "adahessian")] == "1.000"
    assert units[("wall-clock s on cpu laptop", "adahessian")] == "1.000"  # alone in its class, not 1000x slower
    assert {r[1]: r[5] for r in table.rows} == {"adam": "0.01 (NVIDIA H100 x1)", "adahessian": "10 (cpu laptop)"}


def test_hvp_cost_is_an_option_and_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one_of_three(tmp_path)
    assert main(["report", str(tmp_path), "--table", "to_target", "--format", "csv", "--hvp-cost", "1"]) == 0
    assert "digits,adahessian,3/3,30,60," in capsys.readouterr().out  # 30 steps x (1 + 1 x 1)
    assert main(["report", str(tmp_path), "--table", "profile", "--format", "csv"]) == 0
    assert "one HVP = 3.5 gradients" in capsys.readouterr().out
    assert main(["report", str(tmp_path), "--table", "profile", "--hvp-cost", "-1"]) == 2
    assert "error: --hvp-cost -1: expected a finite number >= 0" in capsys.readouterr().err


def test_default_report_of_two_tasks_has_the_profile(tmp_path: Path) -> None:
    one_of_three(tmp_path)
    titles = [s.title for s in report.build(load(tmp_path), None)]
    assert titles[-2:] == ["Performance profile over tasks (time to target)",
                           "Time to target per task: median over all seeds, a miss counts as never"]


def test_an_optimizer_that_did_not_run_a_task_never_reaches_it(tmp_path: Path) -> None:
    one_of_three(tmp_path)
    for seed in range(3):
        run(tmp_path, task="tiny", optimizer="sgd", seed=seed, curve=[95.0], target=90.0)
    rs = load(tmp_path)
    steps = profile.cell_times(profile.run_costs(rs.runs, rs.history), "steps")
    assert steps.loc["digits", "sgd"] == np.inf and steps.loc["tiny", "sgd"] == 10
    section = aggregate.aggregate_section(rs.runs)
    assert any("different task sets" in note for note in section.notes)
