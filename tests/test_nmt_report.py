"""`bench report --table table6|table7`: the NMT sweeps laid out by swept value, diverged runs counted apart."""

from __future__ import annotations

from pathlib import Path

from bench import report
from bench.recordset import load
from tests.record_factory import write_record


def write(root: Path, optimizer: str, seed: int, bleu: float | None, *, lr_scale: float | None = None,
          block_size: int | None = None) -> None:
    write_record(root, task="iwslt14_transformer", optimizer=optimizer, seed=seed, study="nmt", metric="bleu",
                 curve=[bleu or 1.0], status="completed" if bleu is not None else "diverged",
                 config={} if lr_scale is None else {"lr_scale": lr_scale},
                 optimizer_config={} if block_size is None else {"block_size": block_size},
                 run_id=f"{optimizer}-{seed}-{lr_scale}-{block_size}")


def test_table6_and_table7_group_runs_by_the_swept_value(tmp_path: Path) -> None:
    write(tmp_path, "adamw", 0, 34.0, lr_scale=1.0)
    write(tmp_path, "adamw", 1, 36.0, lr_scale=1.0)
    write(tmp_path, "adamw", 0, None, lr_scale=10.0)
    write(tmp_path, "adahessian", 0, 33.5, lr_scale=10.0, block_size=32)
    write(tmp_path, "adahessian", 1, 35.0, block_size=4)
    rs = load(tmp_path)
    (table6,) = report.build(rs, "table6")
    assert table6.columns == ["task", "optimizer", *(f"lr_scale={v}" for v in ("0.5", 1, 2, 3, 4, 5, 6, 10))]
    rows = {row[1]: dict(zip(table6.columns[2:], row[2:], strict=True)) for row in table6.rows}
    assert rows["adamw"]["lr_scale=1"] == "35.00 ± 1.41 (n=2); paper 35.66; diff -0.66; inconclusive"
    assert rows["adamw"]["lr_scale=10"] == "– [1 diverged]; paper diverged"  # the paper's table prints "Diverge"
    assert rows["adahessian"]["lr_scale=10"] == "33.50 (n=1); paper 32.48; diff +1.02; inconclusive"
    assert rows["adamw"]["lr_scale=3"] == "–; paper 35.18"  # a multiplier nobody ran still shows the paper's value
    (table7,) = report.build(rs, "table7")
    cells = dict(zip(table7.columns[2:], table7.rows[0][2:], strict=True))
    assert table7.rows[0][:2] == ["iwslt14_transformer", "adahessian"]
    assert cells["block_size=4"] == "35.00 (n=1); paper 35.78; diff -0.78; inconclusive"
    assert cells["block_size=32"] == "33.50 (n=1); paper 35.79; diff -2.29; inconclusive"
    assert cells["block_size=1"] == "–; paper 35.67"
