"""`bench report --table lm`: our perplexities beside the paper's Table 4, with the note that the model differs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import paper, report, stats
from bench.recordset import load
from tests.record_factory import write_record


def test_table4_shows_ours_beside_the_paper_with_the_model_note(tmp_path: Path) -> None:
    for seed, (adamw, ada) in enumerate([(60.0, 55.0), (58.0, 53.0)]):
        for optimizer, final in (("adamw", adamw), ("adahessian", ada)):
            write_record(tmp_path, study="paper_lm", task="ptb_transformer_lm", optimizer=optimizer, seed=seed,
                         curve=[150.0, final], metric="ppl", mode="min")
    rs = load(tmp_path)
    summary = stats.summarize(rs.runs, stats.time_to_target(rs.runs, rs.history))
    section = report.layout_section(paper.LAYOUTS["lm"], summary, paper.load_reference())
    rows = {row[0]: row[1:] for row in section.rows}
    assert rows["adahessian"][0] == "54.00 ± 1.41 (n=2); paper 51.50; diff +2.50"
    assert rows["adahessian"][1] == "-5.00; paper -2.70"  # lower is better: AdaHessian minus AdamW
    assert rows["sgd"][2].endswith("paper 78.50")  # WikiText-103 is shown, empty, beside the paper
    notes = [n for n in section.notes if n.startswith("Model, ")]
    assert [n.split(":")[0] for n in notes] == ["Model, ptb_transformer_lm", "Model, wikitext103_transformer_lm"]
    assert all("Tensorized Transformer" in n and "never released" in n for n in notes)


@pytest.mark.parametrize("name", ["ptb_transformer_lm", "wikitext103_transformer_lm"])
def test_paper_rows_use_the_real_task_names(name: str) -> None:
    ref = paper.load_reference()
    assert set(ref.loc[ref["task"] == name, "optimizer"]) == {"sgd", "adamw", "adahessian"}
    assert (Path(paper.CONF_DIR) / "task" / f"{name}.yaml").is_file()
