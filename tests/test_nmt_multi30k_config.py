"""experiment=multi30k_translation composes as the study runs it: each optimizer at its tuned lr with its IWSLT14
recipe's other settings (AdaHessian's token-summed loss), tuning seeds apart from the evaluation seeds."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from bench.config import CONF_DIR, compose_config

SWEEP_SEEDS = {0, 1, 2, 3, 4}


@pytest.mark.parametrize("optimizer", ["sgd", "adamw", "adahessian"])
def test_each_optimizer_gets_its_tuned_lr_and_its_recipe(optimizer: str) -> None:
    cfg = compose_config(["experiment=multi30k_translation", f"optimizer={optimizer}"])
    assert cfg.optimizer.lr == cfg.multi30k_lr[optimizer]
    assert cfg.task.loss_reduction == ("sum" if optimizer == "adahessian" else "mean")
    assert cfg.trainer.epochs == 2 and cfg.trainer.schedule.warmup_steps == 150  # the experiment, not the recipe
    assert cfg.task.model.layers == 2 and cfg.trainer.average_last >= 1 and cfg.task.beam == 5
    if optimizer == "adahessian":
        assert cfg.optimizer.block_size == 32 and cfg.optimizer.eps == 1.0e-4


def test_the_sweep_is_three_optimizers_on_evaluation_seeds_only() -> None:
    cfg = compose_config(["experiment=multi30k_translation"])
    params = OmegaConf.load(CONF_DIR / "experiment" / "multi30k_translation.yaml").hydra.sweeper.params
    assert set(params.optimizer.split(",")) == {"sgd", "adamw", "adahessian"}
    seeds = {int(s) for s in str(params.seed).split(",")}
    assert seeds == SWEEP_SEEDS and not seeds & set(cfg.tuning_seeds)
