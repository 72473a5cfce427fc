"""The README's studies table is generated, never hand-typed: it must equal what bench.studies makes of the
committed results/studies/*/report.csv, and a verdict read from the other optimizer's side must be flipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import studies
from bench.errors import UsageError

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
"# a note"

# Comparisons: every config against every other, paired by seed
task,comparison,test,n,mean diff,95% CI,p,p Holm,verdict
digits,sgd − adahessian,paired t,5,+0.78,"[-0.71, +2.27]",0.22,0.49,better
digits,adahessian − adam,paired t,5,+1.78,"[+0.30, +3.25]",0.029,0.02,better
digits,adam − sgd,paired t,5,-2.56,"[-3.63, -1.48]",0.0027,0.025,worse
"# another note"
"""


def test_verdicts_are_read_from_adahessians_side(tmp_path: Path) -> None:
    (tmp_path / "report.csv").write_text(REPORT)
    metric, final, verdicts = studies.focus_verdicts(studies.csv_sections(tmp_path / "report.csv"))
    assert (metric, final) == ("top1 % ↑", "96.94 ± 1.02")
    assert verdicts == [studies.Verdict("sgd", "-0.78", "worse"), studies.Verdict("adam", "+1.78", "better")]


def test_a_readme_without_markers_is_a_one_line_error() -> None:
    with pytest.raises(UsageError, match="expected the markers"):
        studies.replace_block("# a README\n", "table", studies.README)
