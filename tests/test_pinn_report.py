"""The published PINN rows (`results/paper/pinn.csv`) that `bench report --table pinn` lists beside ours: each cites
a primary source and says how its setup differs, and the values are the ones the papers print."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench import paper, report
from bench.recordset import RecordSet


def test_published_rows_carry_the_papers_values_and_their_sources() -> None:
    ref = pd.read_csv(paper.PINN_CSV)
    assert list(ref.columns) == ["table", "task", "optimizer", "metric", "mean", "std", "n_runs", "source", "config"]
    for row in ref.itertuples():  # the setup a run must have for the row to judge it
        assert paper.pinn_conditions(row.config)["task.problem"] == row.task.removeprefix("pinn_")
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
    empty = RecordSet(root=tmp_path, runs=pd.DataFrame(columns=["task", "name", "label", "status", "final", "wall_s",
                                                                  "config"]),
                      history=pd.DataFrame())
    section = report.pinn_section(empty)
    sources = [row[2] for row in section.rows]
    assert len(section.rows) == len(pd.read_csv(paper.PINN_CSV))
    assert any(s.startswith("Rathore et al. ICML 2024") for s in sources)
    assert all(row[4] != "–" for row in section.rows)
    assert {row[-1] for row in section.rows} == {"not run in this setup"}


def _runs(finals: list[float], setup: str, beta: float, optimizer: str = "lbfgs") -> pd.DataFrame:
    config = {"task": {"problem": "convection", "setup": setup, "params": {"beta": beta}}}
    return pd.DataFrame({"task": "pinn_convection_x", "name": optimizer, "label": optimizer, "status": "completed",
                         "final": finals, "wall_s": 1.0, "config": [config] * len(finals)})


def test_a_published_row_is_judged_on_log_rel_l2_in_its_own_setup() -> None:
    """Krishnapriyan et al.'s beta = 30 L-BFGS row (0.897): five seeds near it reproduce it, five seeds ten times
    lower do not, and runs in another setup or of another optimizer are not compared with it."""
    rng = np.random.default_rng(0)
    conditions = {"task.problem": "convection", "task.setup": "krishnapriyan2021", "task.params.beta": "30.0"}
    near = _runs(list(0.897 * 10 ** rng.normal(0, 0.02, 5)), "krishnapriyan2021", 30.0)
    assert report.pinn_reproduction(near, "lbfgs", 0.897, conditions).startswith("reproduced (ours 0.")
    far = _runs(list(0.0897 * 10 ** rng.normal(0, 0.02, 5)), "krishnapriyan2021", 30)
    assert report.pinn_reproduction(far, "lbfgs", 0.897, conditions).startswith("not reproduced")
    few = _runs([0.9, 0.8], "krishnapriyan2021", 30.0)
    assert report.pinn_reproduction(few, "lbfgs", 0.897, conditions).startswith("inconclusive")
    other = pd.concat([_runs([0.9] * 5, "rathore2024", 40.0), _runs([0.9] * 5, "krishnapriyan2021", 30.0, "adam")])
    assert report.pinn_reproduction(other, "lbfgs", 0.897, conditions) == "not run in this setup"
