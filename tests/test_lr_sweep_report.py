"""`bench report --table lr`: any lr sweep (experiment=zoo_lr_sweep) laid out per (task, optimizer) by optimizer.lr,
with the grid taken from the runs and diverged runs counted apart."""

from __future__ import annotations

from pathlib import Path

from bench import report
from bench.recordset import load
from tests.record_factory import write_record


def write(root: Path, task: str, optimizer: str, lr: float, seed: int, top1: float | None) -> None:
    write_record(root, task=task, optimizer=optimizer, seed=seed, study="zoo_lr_sweep", metric="top1",
                 curve=[top1 or 10.0], status="completed" if top1 is not None else "diverged",
                 optimizer_config={"lr": lr}, run_id=f"{task}-{optimizer}-{lr}-{seed}")


def test_lr_table_has_a_row_per_task_and_optimizer_and_a_column_per_lr_that_ran(tmp_path: Path) -> None:
    write(tmp_path, "digits", "shampoo", 1e-3, 0, 90.0)
    write(tmp_path, "digits", "shampoo", 1e-3, 1, 92.0)
    write(tmp_path, "digits", "shampoo", 0.1, 0, None)
    write(tmp_path, "digits", "oasis", 0.1, 0, 88.0)
    write(tmp_path, "cifar10_resnet20", "oasis", 0.1, 0, 70.0)
    table, selection = report.build(load(tmp_path), "lr")
    assert table.columns == ["task", "optimizer", "lr=0.001", "lr=0.1"]
    rows = {tuple(row[:2]): row[2:] for row in table.rows}
    assert rows[("digits", "shampoo")] == ["91.00 ± 1.41 (n=2)", "– [1 diverged]"]
    assert rows[("digits", "oasis")] == ["–", "88.00 (n=1)"]
    assert rows[("cifar10_resnet20", "oasis")] == ["–", "70.00 (n=1)"]
    assert any("No paper has this table" in note for note in table.notes)
    # no seed was declared a tuning seed: nothing is chosen, and the sweep that would choose on its own seeds is named
    assert selection.rows == [] and any("digits shampoo" in note and "without declared tuning seeds" in note
                                        for note in selection.notes)


def test_lr_scale_table_groups_glue_tuning_runs_by_multiplier(tmp_path: Path) -> None:
    for scale, score in ((0.33, 70.0), (1.0, 75.0), (3.33, 72.0)):
        write_record(tmp_path, task="glue_rte", optimizer="adamw", seed=0, study="tune", metric="accuracy",
                     curve=[score], config={"lr_scale": scale}, run_id=f"rte-{scale}")
    write_record(tmp_path, task="glue_rte", optimizer="adamw", seed=1, study="tune", metric="accuracy", curve=[10.0],
                 run_id="rte-no-scale")  # not part of any lr_scale sweep: left out, not counted as lr_scale=1
    rs = load(tmp_path)
    table, _ = report.build(rs, "lr_scale")
    assert table.columns == ["task", "optimizer", "lr_scale=0.33", "lr_scale=1", "lr_scale=3.33"]
    assert table.rows == [["glue_rte", "adamw", "70.000 (n=1)", "75.000 (n=1)", "72.000 (n=1)"]]
    assert {s.title for s in report.build(rs, "all")}.isdisjoint({table.title})  # asked for by name only
