"""`bench report --table glue`: per-task names from glue_task, MNLI's mismatched score, the average of present tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import paper, report, stats
from bench.config import compose_config
from bench.recordset import load
from tests.record_factory import make_record, write_record


def test_task_name_resolves_from_glue_task() -> None:
    for glue_task in ("rte", "mnli_m", "cola"):
        cfg = compose_config(["task=glue_squeezebert", f"task.glue_task={glue_task}"])
        assert cfg.task.name == f"glue_{glue_task}"


def write_mnli(root: Path, optimizer: str, matched: float, mismatched: float) -> None:
    rec = make_record(task="glue_mnli_m", optimizer=optimizer, curve=[matched - 1, matched], metric="accuracy")
    for row, mm in zip(rec["history"], (mismatched - 1, mismatched), strict=True):
        row["metrics"]["accuracy_mm"] = mm
    path = root / rec["study"] / rec["run_id"] / "record.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(rec))


def test_glue_table_groups_by_task_and_reads_mnli_mm_from_the_mnli_m_run(tmp_path: Path) -> None:
    write_record(tmp_path, task="glue_rte", optimizer="adahessian", curve=[70.0, 80.0], metric="accuracy")
    write_record(tmp_path, task="glue_rte", optimizer="adamw", curve=[78.0], metric="accuracy")
    write_mnli(tmp_path, "adahessian", 82.0, 83.0)
    rs = load(tmp_path)
    assert sorted(rs.runs["task"]) == ["glue_mnli_m", "glue_mnli_mm", "glue_rte", "glue_rte"]
    summary = stats.summarize(rs.runs, stats.time_to_target(rs.runs, rs.history))
    cmp = paper.compare(paper.LAYOUTS["glue"], summary, paper.load_reference()).set_index(["optimizer", "task"])
    ada = cmp.loc["adahessian"]
    assert ada.loc["glue_rte", "mean"] == 80.0 and ada.loc["glue_mnli_m", "mean"] == 82.0
    assert ada.loc["glue_mnli_mm", "mean"] == 83.0
    assert ada.loc["glue_avg", "mean"] == pytest.approx((80 + 82 + 83) / 3)  # over the tasks present
    assert ada.loc["glue_avg", "paper"] == pytest.approx((80.14 + 82.78 + 82.62) / 3)  # the paper's, same tasks
    assert cmp.loc[("adamw", "glue_avg"), "mean"] == 78.0  # its one task
    assert cmp.loc[("adamw", "glue_avg"), "paper"] == pytest.approx((79.06 + 82.61 + 81.84) / 3)  # same 3 columns
    assert cmp.loc[("adahessian", "glue_avg"), "paper_delta"] == pytest.approx(
        (80.14 + 82.78 + 82.62 - 79.06 - 82.61 - 81.84) / 3)
    section = report.layout_section(paper.LAYOUTS["glue"], summary, paper.load_reference())
    row = next(r for r in section.rows if r[0] == "adahessian")
    assert row[section.columns.index("glue_rte")] == "80.00 (n=1); paper 80.14; diff -0.14"


def test_a_real_mnli_mm_run_is_not_doubled(tmp_path: Path) -> None:
    write_mnli(tmp_path, "adamw", 82.0, 83.0)
    write_record(tmp_path, task="glue_mnli_mm", optimizer="adamw", curve=[81.0], metric="accuracy")
    rs = load(tmp_path)
    assert list(rs.runs.loc[rs.runs["task"] == "glue_mnli_mm", "final"]) == [81.0]
