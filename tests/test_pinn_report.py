"""The published PINN rows (`results/paper/pinn.csv`) that `bench report --table pinn` lists beside ours: each cites
a primary source and says how its setup differs, and the values are the ones the papers print."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench import paper, report
from bench.recordset import RecordSet


def test_published_rows_carry_the_papers_values_and_their_sources() -> None:
    ref = pd.read_csv(paper.PINN_CSV)
    assert list(ref.columns) == ["table", "task", "optimizer", "metric", "mean", "std", "n_runs", "source"]
    assert (ref["table"] == "pinn").all() and (ref["metric"] == "rel_l2").all()
    assert set(ref["task"]) <= {"pinn_burgers", "pinn_poisson", "pinn_convection"}
    assert ref["source"].str.contains(r"arXiv \d{4}\.\d{4,5}").all()
    by = {(r.task, r.optimizer, r.mean) for r in ref.itertuples()}
    assert ("pinn_convection", "lbfgs", 0.897) in by  # Krishnapriyan et al. 2021, beta = 30
    assert ("pinn_convection", "adam→lbfgs", 0.00419) in by  # Rathore et al. 2024 Table 1, beta = 40
    assert ("pinn_burgers", "lbfgs", 0.00067) in by  # Raissi et al. 2019
    beta40 = ref[ref["source"].str.contains("beta = 40")]
    assert len(beta40) == 4  # every row not at our default beta says so


def test_the_pinn_section_lists_them_with_their_source(tmp_path: Path) -> None:
    empty = RecordSet(root=tmp_path, runs=pd.DataFrame(columns=["task", "label", "status", "final", "wall_s"]),
                      history=pd.DataFrame())
    section = report.pinn_section(empty)
    sources = [row[2] for row in section.rows]
    assert len(section.rows) == len(pd.read_csv(paper.PINN_CSV))
    assert any(s.startswith("Rathore et al. ICML 2024") for s in sources)
    assert all(row[4] != "–" for row in section.rows)
