"""Tuning apart from evaluation (bench/tuning.py): the lr is chosen on the declared tuning seeds only and judged on
the other seeds; an evaluation run on a tuning seed is flagged and left out."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir

from bench import plots, report, tuning
from bench.config import CONF_DIR, register_resolvers
from bench.recordset import load
from tests.record_factory import write_record


def sweep_run(root: Path, lr: float, seed: int, top1: float | None, study: str = "zoo_lr_sweep",
              tuning_seeds: tuple[int, ...] = (100, 101), optimizer: str = "shampoo") -> None:
    write_record(root, optimizer=optimizer, seed=seed, study=study, curve=[top1 or 10.0],
                 status="completed" if top1 is not None else "diverged", optimizer_config={"lr": lr},
                 config={"tuning_seeds": list(tuning_seeds)}, run_id=f"{study}-{optimizer}-{lr}-{seed}")


def study(root: Path) -> None:
    """Tuning seeds 100-101 prefer lr 0.01 (90, 92) over 0.1 (85, 87); lr 1 diverged on one tuning seed. Seeds 0-2
    ran every lr, and on them 0.1 would win (a choice made there would be judged on its own seeds). A run of another
    study at lr 0.01 on seed 100, not declared a tuning seed there, is a reuse."""
    for lr, (a, b) in ((0.01, (90.0, 92.0)), (0.1, (85.0, 87.0)), (1.0, (95.0, None))):
        sweep_run(root, lr, 100, a)
        sweep_run(root, lr, 101, b)
    for seed in range(3):
        sweep_run(root, 0.01, seed, 80.0 + seed)
        sweep_run(root, 0.1, seed, 95.0)
    sweep_run(root, 0.01, 100, 99.0, study="zoo_eval", tuning_seeds=())


def test_the_choice_is_made_on_tuning_seeds_and_never_judged_on_them(tmp_path: Path) -> None:
    study(tmp_path)
    runs = load(tmp_path).runs
    assert sorted(set(runs.loc[runs["tuning"], "seed"])) == [100, 101]
    (row,) = tuning.select(runs, "lr").itertuples()
    assert row.value == 0.01 and row.tuning_seeds == [100, 101] and row.tuning_mean == 91.0
    assert row.eval_seeds == [0, 1, 2] and row.eval_mean == 81.0  # seed 100 of zoo_eval is not among them
    assert row.reused_seeds == [100] and row.ineligible == [1.0]
    assert not set(row.eval_seeds) & set(row.tuning_seeds)
    # config labels that tell the lrs apart (`shampoo lr=0.01`) do not split the choice: it is per optimizer name
    relabelled = runs.assign(label=runs["name"] + " lr=" + runs["lr"].astype(str))
    assert tuning.select(relabelled, "lr").equals(tuning.select(runs, "lr"))


def test_lr_table_reports_which_seeds_served_what(tmp_path: Path) -> None:
    study(tmp_path)
    sweep, selection = report.build(load(tmp_path), "lr")
    assert sweep.title.startswith("Learning-rate sweep")
    (row,) = selection.rows
    assert row[:7] == ["digits", "shampoo", "0.01", "100, 101", "91 ± 1.4 (n=2)", "0, 1, 2", "81 ± 1 (n=3)"]
    assert "reuses tuning seed(s) 100: left out" in row[7] and "lr=1" in row[7]


def test_lr_scale_runs_without_the_key_evaluate_the_recipe_lr(tmp_path: Path) -> None:
    for scale, score in ((0.5, 70.0), (1.0, 75.0)):
        write_record(tmp_path, task="glue_rte", optimizer="adamw", seed=100, study="paper_glue_tune",
                     metric="accuracy", curve=[score], config={"lr_scale": scale, "tuning_seeds": [100]},
                     run_id=f"tune-{scale}")
    write_record(tmp_path, task="glue_rte", optimizer="adamw", seed=0, study="paper_glue", metric="accuracy",
                 curve=[73.0], run_id="eval-0")  # experiment=paper_glue: no lr_scale, the recipe's lr
    (row,) = tuning.select(load(tmp_path).runs, "lr_scale").itertuples()
    assert (row.value, row.tuning_seeds, row.eval_seeds, row.eval_mean) == (1.0, [100], [0], 73.0)


def test_lr_sensitivity_plot_is_written_for_a_sweep(tmp_path: Path) -> None:
    study(tmp_path)
    written, _ = plots.write_all(load(tmp_path), tmp_path / "plots")
    assert {p.name for p in written} >= {"lr_sensitivity_digits.png", "lr_sensitivity_digits.svg"}
    assert (tmp_path / "plots" / "lr_sensitivity_digits.png").stat().st_size > 5000


def test_sweep_experiments_tune_only_on_their_declared_tuning_seeds() -> None:
    """zoo_lr_sweep and paper_glue_tune sweep exactly their tuning_seeds; the studies that evaluate (paper_glue, the
    default seed) declare none and never run on one."""
    def seeds(experiment: str) -> tuple[set[int], set[int]]:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
        swept = str(cfg.hydra.sweeper.params.get("seed", cfg.seed)).split(",")
        return {int(s) for s in swept}, set(cfg.tuning_seeds)

    register_resolvers()
    for experiment in ("zoo_lr_sweep", "paper_glue_tune"):
        swept, declared = seeds(experiment)
        assert swept == declared and declared
    swept, declared = seeds("paper_glue")
    assert declared == set() and not swept & seeds("paper_glue_tune")[1]
