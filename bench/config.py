"""Where the config tree lives, its resolvers, and checks that turn config mistakes into one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bench.errors import UsageError

CONF_DIR = Path(os.environ.get("BENCH_CONF_DIR", Path(__file__).resolve().parents[1] / "conf"))
GROUPS = ("task", "optimizer", "experiment", "trainer", "logger", "launcher", "recipe")


def register_resolvers() -> None:
    """`${div:a,b}` lets a recipe keep lr * weight_decay fixed when lr is overridden; `${bench_gpus:}` is the
    number of GPUs this node shows (at least 1), the parallelism of `launcher=gpus`."""
    from bench.gpus import parallel_jobs

    if not OmegaConf.has_resolver("div"):
        OmegaConf.register_new_resolver("div", lambda a, b: float(a) / float(b))
    if not OmegaConf.has_resolver("bench_gpus"):
        OmegaConf.register_new_resolver("bench_gpus", parallel_jobs)


def choices(group: str) -> list[str]:
    """The options of a config group, e.g. every task name."""
    folder = CONF_DIR / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def check_positive(cfg: DictConfig) -> None:
    """The budget and step size must be positive; say which key and how to fix it."""
    checks = {
        "optimizer.lr": cfg.optimizer.get("lr"),
        "trainer.epochs": cfg.trainer.epochs,
        "trainer.batch_size": cfg.trainer.batch_size,
        "trainer.eval_batch_size": cfg.trainer.eval_batch_size,
    }
    for key, value in checks.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise UsageError(f"{key}={value}: must be a positive number; e.g. {key}="
                             f"{'0.1' if key.endswith('lr') else '10'}")
    for key, low in (("trainer.epochs", 1), ("trainer.batch_size", 1), ("trainer.eval_batch_size", 1),
                     ("trainer.devices", 1), ("seed", 0)):
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise UsageError(f"{key}={value}: must be an integer >= {low}")
    for key, allowed in (("trainer.device", ("auto", "cpu", "cuda")), ("trainer.amp", ("none", "bf16", "fp16"))):
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise UsageError(f"{key}={value}: expected one of {'|'.join(allowed)}")
