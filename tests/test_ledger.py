"""The setup ledger (results/paper/setup.csv): every run of every paper_* study composes to the paper's stated
setting, or to a deviation declared in results/paper/deviations.csv; compose only, nothing trains."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from bench import ledger, report
from bench.config import choices
from bench.errors import UsageError
from bench.recordset import load
from tests.record_factory import write_record

PAPER_STUDIES = [name for name in choices("experiment") if name.startswith("paper_")]


@pytest.fixture(scope="module")
def book() -> ledger.Ledger:
    return ledger.load()


@pytest.fixture(scope="module")
def runs() -> dict[str, list[tuple[dict[str, str], DictConfig]]]:
    """Every run of every paper_* study, composed as `bench run -m experiment=NAME` would."""
    return {name: ledger.study_runs(name) for name in PAPER_STUDIES}


def test_every_paper_study_is_in_the_ledger(book: ledger.Ledger) -> None:
    assert set(PAPER_STUDIES) == set(book.studies), "add the study and its tables to results/paper/studies.csv"


@pytest.mark.parametrize("study", PAPER_STUDIES)
def test_each_run_composes_to_the_paper_or_a_declared_deviation(
        book: ledger.Ledger, runs: dict[str, list[tuple[dict[str, str], DictConfig]]], study: str) -> None:
    assert runs[study], f"experiment={study} has no runs"
    assert ledger.check_study(book, study, runs[study]) == []


def test_every_keyed_row_reaches_a_run(book: ledger.Ledger,
                                       runs: dict[str, list[tuple[dict[str, str], DictConfig]]]) -> None:
    """A row whose task or optimizer pattern matches no run of its tables' studies would never be checked."""
    reached = {row.id for study, rs in runs.items() for _, cfg in rs for row in ledger.rows_for(book, study, cfg)}
    unreached = [row.id for row in book.rows if row.key and row.id not in reached
                 and not any(r.key == row.key and r.table != row.table for r in book.rows if r.id in reached)]
    assert unreached == []


def test_a_changed_value_fails_unless_declared(book: ledger.Ledger,
                                               runs: dict[str, list[tuple[dict[str, str], DictConfig]]]) -> None:
    cfg = next(c for _, c in runs["paper_iwslt14"] if c.optimizer.name == "adahessian").copy()
    cfg.task.model.dropout = 0.2
    (problem,) = ledger.check_run(book, "paper_iwslt14", cfg)
    assert "task.model.dropout=0.2" in problem and "t3iw-dropout" in problem
    cfg.task.model.dropout = 0.3  # the authors' scripts' value: declared (iwslt-script-dropout)
    assert ledger.check_run(book, "paper_iwslt14", cfg) == []


def test_a_ledger_key_gone_from_the_config_fails(book: ledger.Ledger,
                                                 runs: dict[str, list[tuple[dict[str, str], DictConfig]]]) -> None:
    cfg = runs["paper_cifar10"][0][1].copy()
    OmegaConf.set_struct(cfg, False)
    del cfg.trainer.schedule["milestones"]
    (problem,) = ledger.check_run(book, "paper_cifar10", cfg)
    assert "t2c-milestones" in problem and "no longer has" in problem


def test_fewer_seeds_than_the_paper_fail(book: ledger.Ledger,
                                         runs: dict[str, list[tuple[dict[str, str], DictConfig]]]) -> None:
    one_seed = [(o, c) for o, c in runs["paper_block_size"] if c.seed == 0]
    assert any("seeds per cell" in p and "t3iw-runs" in p for p in ledger.check_study(book, "paper_block_size",
                                                                                       one_seed))


def test_paper_text_is_the_default_and_the_scripts_a_labelled_variant(
        book: ledger.Ledger, runs: dict[str, list[tuple[dict[str, str], DictConfig]]]) -> None:
    paper = {c.optimizer.name: c for _, c in runs["paper_iwslt14"] if c.seed == 0}
    script = {c.optimizer.name: c for _, c in runs["paper_iwslt14_script"] if c.seed == 0}
    assert (paper["adahessian"].trainer.epochs, paper["adahessian"].trainer.early_stop.patience) == (55, 0)
    assert (script["adahessian"].trainer.epochs, script["adahessian"].trainer.early_stop.patience) == (150, 5)
    assert (script["adamw"].trainer.epochs, script["adamw"].trainer.early_stop.patience) == (55, 0)
    assert {d.id for d in ledger.deviations_for(book, paper["adahessian"])} == set()
    assert {d.id for d in ledger.deviations_for(book, script["adahessian"])} >= {
        "iwslt-script-dropout", "iwslt-script-epochs", "iwslt-script-earlystop"}


def test_applies_lists_rows_and_deviations_of_a_run(
        runs: dict[str, list[tuple[dict[str, str], DictConfig]]]) -> None:
    cfg = next(c for _, c in runs["paper_imagenet_step"] if c.optimizer.name == "adamw")
    rows, deviations = ledger.applies(cfg)
    by_key = {row.key: row for row in rows}
    assert by_key["optimizer.lr"].value == 0.01 and by_key["trainer.schedule.name"].value == "plateau"
    assert [d.id for d in deviations] == ["imagenet-step"]


def test_report_lists_the_deviations_under_the_table(tmp_path: Path,
                                                     runs: dict[str, list[tuple[dict[str, str], DictConfig]]]) -> None:
    for _, cfg in runs["paper_iwslt14_script"]:
        if cfg.seed < 2:
            config = OmegaConf.to_container(cfg)
            write_record(tmp_path, task=cfg.task.name, optimizer=cfg.optimizer.name, seed=cfg.seed,
                         study=cfg.study, curve=[30.0, 34.0], metric="bleu", config=config,
                         run_id=f"{cfg.optimizer.name}{cfg.seed}")
    (nmt,) = [s for s in report.build(load(tmp_path), "nmt") if s.title.startswith("Table 3")]
    notes = "\n".join(nmt.notes)
    assert "[iwslt-script-dropout] (6 runs; task.model.dropout=0.3" in notes
    assert "[iwslt-script-epochs] (2 runs;" in notes
    summary = report.build(load(tmp_path), None)
    assert not any("Deviation" in n for s in summary for n in s.notes)


def test_a_malformed_ledger_is_a_one_line_error(tmp_path: Path) -> None:
    for name in ("setup.csv", "deviations.csv", "studies.csv"):
        (tmp_path / name).write_text((ledger.PAPER_DIR / name).read_text())
    text = (tmp_path / "deviations.csv").read_text().replace(",t3iw-dropout,", ",t3iw-nosuch,")
    (tmp_path / "deviations.csv").write_text(text)
    with pytest.raises(UsageError, match=r"deviations\.csv:\d+ \(iwslt-script-dropout\): unknown ledger ids"):
        ledger.load(tmp_path)


def test_expressions_resolve_against_the_run() -> None:
    cfg = OmegaConf.create({"optimizer": {"lr": 0.01}, "lr_scale": 2.0})
    assert ledger.resolve("=5e-4/optimizer.lr", cfg) == pytest.approx(0.05)
    assert ledger.resolve("=0.047*lr_scale", cfg) == pytest.approx(0.094)
    with pytest.raises(UsageError, match="not arithmetic"):
        ledger.parse_value("=__import__('os')", "here")
