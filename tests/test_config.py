"""Every task x optimizer pair composes, and the paper recipes land where they should."""

from __future__ import annotations

import pytest

from bench.config import choices, compose_config
from bench.records import run_id_of

PAIRS = [(t, o) for t in choices("task") for o in choices("optimizer")]

# Task configs that name their records per sub-task (task.name: glue_${task.glue_task}), with the default one.
RECORD_NAMES = {"glue_squeezebert": "glue_rte"}


@pytest.mark.parametrize(("task", "optimizer"), PAIRS)
def test_every_task_optimizer_pair_composes(task: str, optimizer: str) -> None:
    cfg = compose_config([f"task={task}", f"optimizer={optimizer}"])
    assert cfg.task.name == RECORD_NAMES.get(task, task)
    assert cfg.optimizer.name == optimizer
    assert cfg.optimizer.lr > 0
    assert cfg.optimizer.weight_decay_mode in ("l2", "decoupled")


def test_cifar_recipe_matches_the_paper() -> None:
    sgd = compose_config(["task=cifar10_resnet20", "optimizer=sgd"])
    assert (sgd.optimizer.lr, sgd.optimizer.weight_decay, sgd.optimizer.momentum) == (0.1, 5e-4, 0.9)
    assert (sgd.trainer.epochs, sgd.trainer.batch_size) == (160, 256)
    assert list(sgd.trainer.schedule.milestones) == [0.5, 0.75]
    adam = compose_config(["task=cifar10_resnet32", "optimizer=adam"])
    assert (adam.optimizer.lr, adam.optimizer.weight_decay) == (1e-3, 5e-4)
    adamw = compose_config(["task=cifar10_resnet20", "optimizer=adamw"])
    assert adamw.optimizer.lr == 1e-2
    assert adamw.optimizer.lr * adamw.optimizer.weight_decay == pytest.approx(5e-4)  # per-step decay
    scaled = compose_config(["task=cifar10_resnet20", "optimizer=adamw", "optimizer.lr=0.02"])
    assert scaled.optimizer.lr * scaled.optimizer.weight_decay == pytest.approx(5e-4)


def test_run_id_ignores_paths_but_not_semantics() -> None:
    base = compose_config(["seed=1"])
    assert run_id_of(base) == run_id_of(compose_config(["seed=1", "paths.runs=/elsewhere", "study=x"]))
    assert run_id_of(base) != run_id_of(compose_config(["seed=2"]))
    assert run_id_of(base) != run_id_of(compose_config(["seed=1", "trainer.epochs=3"]))


def test_a_key_added_at_its_neutral_default_leaves_the_run_id_alone() -> None:
    """trainer.test_on came after runs were recorded: at `last` (the old behaviour) it is not in the hash."""
    base = compose_config(["seed=1"])
    without = compose_config(["seed=1", "~trainer.test_on"])
    assert run_id_of(base) == run_id_of(without)
    assert run_id_of(base) != run_id_of(compose_config(["seed=1", "trainer.test_on=best"]))
