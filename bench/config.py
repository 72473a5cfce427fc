"""Where the config tree lives, its resolvers, and checks that turn config mistakes into one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from bench.errors import UsageError
from bench.snapshots import TEST_ON

CONF_DIR = Path(os.environ.get("BENCH_CONF_DIR", Path(__file__).resolve().parents[1] / "conf"))
GROUPS = ("task", "optimizer", "experiment", "trainer", "logger", "launcher", "recipe")
WANDB_MODES = ("offline", "online", "disabled")


def divide(a: float, b: float) -> float:
    if float(b) == 0.0:
        raise ZeroDivisionError(f"${{div:{a},{b}}} divides by zero (is a multiplier such as lr_scale 0?)")
    return float(a) / float(b)


def register_resolvers() -> None:
    """`${div:a,b}` lets a recipe keep lr * weight_decay fixed when lr is overridden; `${bench_gpus:}` is the
    number of GPUs this node shows (at least 1), the parallelism of `launcher=gpus`."""
    from bench.gpus import parallel_jobs

    if not OmegaConf.has_resolver("div"):
        OmegaConf.register_new_resolver("div", divide)
    if not OmegaConf.has_resolver("bench_gpus"):
        OmegaConf.register_new_resolver("bench_gpus", parallel_jobs)


def choices(group: str) -> list[str]:
    """The options of a config group, e.g. every task name."""
    folder = CONF_DIR / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def compose_config(overrides: list[str]) -> DictConfig:
    """Compose conf/ as `bench run` would, without running anything."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


def check_test_on(trainer: DictConfig) -> None:
    """`trainer.test_on` is `last` or `best`, and `best` excludes checkpoint averaging (two answers to one
    question)."""
    if trainer.test_on not in TEST_ON:
        raise UsageError(f"trainer.test_on={trainer.test_on}: expected one of {', '.join(TEST_ON)}")
    if trainer.test_on == "best" and trainer.average_last:
        raise UsageError(f"trainer.test_on=best with trainer.average_last={trainer.average_last}: the final test "
                         "takes either the best epoch's weights or an average; set trainer.average_last=0 or "
                         "test_on=last")


def check_config(cfg: DictConfig) -> None:
    """Everything about a config that can be wrong before any data is read or process started: checked in
    the launching process, so that N worker processes do not each fail on it."""
    from bench.optim_factory import distributed_refusal, is_hessian_optimizer

    lr = cfg.optimizer.get("lr")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0):
        raise UsageError(f"optimizer.lr={lr}: must be a positive number; e.g. optimizer.lr=0.1")
    for key, low in (("trainer.epochs", 1), ("trainer.batch_size", 1), ("trainer.eval_batch_size", 1),
                     ("trainer.devices", 1), ("trainer.nodes", 1), ("seed", 0)):
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise UsageError(f"{key}={value}: must be an integer >= {low}; e.g. {key}={max(low, 10)}")
    clip = cfg.trainer.grad_clip
    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or clip < 0:
        raise UsageError(f"trainer.grad_clip={clip}: must be >= 0 (0 disables clipping)")
    for key, allowed in (("trainer.device", ("auto", "cpu", "cuda")), ("trainer.amp", ("none", "bf16", "fp16"))):
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise UsageError(f"{key}={value}: expected one of {'|'.join(allowed)}")
    if cfg.logger.name == "wandb" and cfg.logger.mode not in WANDB_MODES:
        raise UsageError(f"logger.mode={cfg.logger.mode}: expected one of {'|'.join(WANDB_MODES)}")
    world_size = cfg.trainer.devices * cfg.trainer.nodes
    if cfg.trainer.batch_size % world_size:
        raise UsageError(f"trainer.batch_size={cfg.trainer.batch_size}: the global batch must split evenly over "
                         f"the run's {world_size} processes; use a multiple of {world_size}")
    refusal = distributed_refusal(cfg.optimizer) if world_size > 1 else None
    if refusal:
        raise UsageError(f"optimizer={cfg.optimizer.name} on {world_size} processes: {refusal}; run it with "
                         "trainer.devices=1 trainer.nodes=1")
    cuda = cfg.trainer.device == "cuda" or (cfg.trainer.device == "auto" and torch.cuda.is_available())
    if cfg.trainer.amp == "fp16" and not cuda:
        raise UsageError("trainer.amp=fp16 needs CUDA; use trainer.amp=bf16 or none on CPU")
    if cfg.trainer.amp == "fp16" and is_hessian_optimizer(cfg.optimizer):
        raise UsageError(f"trainer.amp=fp16 with optimizer={cfg.optimizer.name}: loss scaling would scale the "
                         "Hessian estimate; use trainer.amp=bf16")
    check_test_on(cfg.trainer)
    if cfg.trainer.sync_bn and world_size > 1 and not cuda:
        raise UsageError("trainer.sync_bn=true needs CUDA (SyncBatchNorm has no CPU kernel); drop it or use "
                         "trainer.device=cuda")
