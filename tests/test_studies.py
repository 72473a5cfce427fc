"""The README's studies table is generated, never hand-typed: it must equal what bench.studies makes of the
committed results/studies/*/report.csv, and a verdict read from the other optimizer's side must be flipped."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench import studies
from bench.errors import UsageError
from bench.recordset import RecordSet, concat

ROOT = Path(__file__).resolve().parents[1]


def test_readme_table_matches_the_committed_reports() -> None:
    text = (ROOT / "README.md").read_text()
    assert studies.replace_block(text, studies.readme_table(ROOT), studies.README) == text, \
        "README.md's studies table is out of date: run `bench studies readme`"


@pytest.mark.parametrize("name", studies.STUDIES)
def test_every_declared_study_ships_its_files(name: str) -> None:
    folder = ROOT / studies.OUT / name
    for file in ("report.md", "report.html", "report.csv", "command.txt", "meta.json", "discussion.md"):
        assert (folder / file).is_file(), f"{folder / file} is missing: run `make studies`"
    assert any((folder / "plots").glob("*.png"))
    assert f"experiment={name}" in (folder / "command.txt").read_text()


REPORT = """# Summary
task,optimizer,metric,done,final
digits,adahessian,top1 % ↑,5,96.94 ± 1.02
digits,sgd,top1 % ↑,5,97.72 ± 0.69
pinn_poisson,adam,rel_l2 ↓,5,0.01 ± 0.002
"# a note"

# Comparisons: every config against every other, paired by seed
task,comparison,test,n,mean diff,95% CI,p,p Holm,verdict
digits,sgd − adahessian,paired t,5,+0.78,"[-0.71, +2.27]",0.22,0.49,better
digits,adahessian − adam,paired t,5,+1.78,"[+0.30, +3.25]",0.029,0.02,better
digits,adam − sgd,paired t,5,-2.56,"[-3.63, -1.48]",0.0027,0.025,worse
pinn_poisson,adam − adahessian,paired t,5,-0.02,"[-0.03, -0.01]",0.001,0.01,better
"# another note"
"""


def test_verdicts_are_read_from_adahessians_side(tmp_path: Path) -> None:
    (tmp_path / "report.csv").write_text(REPORT)
    digits, poisson = studies.focus_verdicts(studies.csv_sections(tmp_path / "report.csv"))
    assert (digits.task, digits.metric, digits.final) == ("digits", "top1 % ↑", "96.94 ± 1.02")
    assert digits.verdicts == [studies.Verdict("sgd", "-0.78", "worse"), studies.Verdict("adam", "+1.78", "better")]
    # a task where AdaHessian did not run still gets its line, and its verdicts stay on their own task
    assert (poisson.task, poisson.final) == ("pinn_poisson", "not run")
    assert poisson.verdicts == [studies.Verdict("adam", "+0.02", "worse")]


def test_a_readme_without_markers_is_a_one_line_error() -> None:
    with pytest.raises(UsageError, match="expected the markers"):
        studies.replace_block("# a README\n", "table", studies.README)


def test_a_study_without_its_data_stops_before_any_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(UsageError, match=r"study ptb_lm: .*nowhere/ptb.train.txt not found; set PTB_DIR"):
        studies.run_studies(["digits_zoo", "ptb_lm"], str(tmp_path / "runs"), 1, tmp_path)
    assert not (tmp_path / "runs").exists()  # digits_zoo, first in line, did not start either
    monkeypatch.delenv("MULTI30K_DIR", raising=False)
    monkeypatch.setenv("MULTI30K_BPE_DIR", str(tmp_path / "bpe"))
    with pytest.raises(UsageError, match=r"set MULTI30K_BPE_DIR .* or MULTI30K_DIR to the raw release"):
        studies.ensure_data(studies.STUDIES["multi30k_translation"])
    (tmp_path / "ptb").mkdir()
    (tmp_path / "ptb" / "ptb.train.txt").write_text("a b\n")
    monkeypatch.setenv("PTB_DIR", str(tmp_path / "ptb"))
    assert studies.ensure_data(studies.STUDIES["ptb_lm"]) == {"PTB_DIR": str(tmp_path / "ptb")}


def test_studies_concatenate_with_their_history_still_pointing_at_their_runs(tmp_path: Path) -> None:
    def one(task: str, finals: list[float]) -> RecordSet:
        runs = pd.DataFrame({"task": task, "final": finals}).rename_axis("rid")
        history = pd.DataFrame({"rid": range(len(finals)), "value": finals})
        return RecordSet(root=tmp_path, runs=runs, history=history)

    both = concat([one("digits", [0.9, 0.8]), one("pinn_poisson", [0.1, 0.2, 0.3])], tmp_path)
    assert list(both.runs.index) == [0, 1, 2, 3, 4]
    joined = both.history.join(both.runs, on="rid", rsuffix="_run")
    assert (joined["value"] == joined["final"]).all() and list(joined["task"]) == ["digits"] * 2 + ["pinn_poisson"] * 3
