"""`bench run`: check the overrides up front, then hand them to Hydra (which runs one job or a sweep)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.types import RunMode
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from bench.config import CONF_DIR, GROUPS, check_positive, choices, register_resolvers
from bench.distributed import Distributed, launcher_env
from bench.errors import UsageError
from bench.gpus import gpu_lease, visible_gpus
from bench.preemption import Preempted
from bench.progress import console
from bench.records import RECORD_NAME, read_record, run_id_of
from bench.runner import Runner

CHECKED_GROUPS = tuple(g for g in GROUPS if g != "recipe")


def first_values(overrides: list[str]) -> list[str]:
    """Validate group choices (every value of a sweep) and return one override per key for composition."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise UsageError(f"cannot parse overrides {' '.join(overrides)}: {str(exc).splitlines()[0]}") from None
    single = []
    for override in parsed:
        key = override.key_or_group
        if key.startswith("hydra"):
            continue
        if override.is_sweep_override():
            values = list(override.sweep_string_iterator())
        else:
            values = [override.get_value_element_as_str()]
        if key in CHECKED_GROUPS and not override.is_delete():
            known = choices(key)
            for value in values:
                if value not in known and value != "null":
                    raise UsageError(f"unknown {key} '{value}'; available: {', '.join(known)} (see `bench list`)")
        single.append(f"{override.get_key_element()}={values[0]}" if values else override.input_line)
    return single


def describe_composition_error(exc: Exception, overrides: list[str]) -> str:
    """Turn Hydra's multi-line composition error into one line that lists the valid keys."""
    text = str(exc)
    first = text.splitlines()[0] if text else type(exc).__name__
    if first.startswith("Could not override '"):
        key = first.split("'")[1]
        parent = key.rpartition(".")[0]
        base = compose_config([o for o in overrides if not o.lstrip("+~").startswith(key)])
        section = OmegaConf.select(base, parent) if parent else base
        known = ", ".join(sorted(section.keys())) if isinstance(section, DictConfig) else "?"
        return (f"unknown config key '{key}'; {parent or 'the config'} has: {known}. "
                f"Use +{key}=VALUE to add a key on purpose")
    return first


def compose_config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


def validate(overrides: list[str]) -> None:
    single = first_values(overrides)
    try:
        cfg = compose_config(single)
    except HydraException as exc:
        raise UsageError(describe_composition_error(exc, single)) from None
    check_positive(cfg)


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def hessian_optimizer(cfg: DictConfig) -> bool:
    try:
        return hasattr(get_class(cfg.optimizer._target_), "needs_hessian")
    except Exception:
        return False


def run_here(cfg: DictConfig) -> str:
    """Run in this process, joining the process group of torchrun or submitit if there is one."""
    dist = Distributed.from_env(cfg.trainer.device, hessian_optimizer(cfg))
    expected = cfg.trainer.devices * cfg.trainer.nodes
    if dist.world_size != expected:
        dist.close()
        raise UsageError(f"trainer.devices={cfg.trainer.devices} x trainer.nodes={cfg.trainer.nodes} asks for "
                         f"{expected} processes but this run has {dist.world_size}; use launcher=torchrun "
                         "(one node) or launcher=slurm, or set trainer.devices=1")
    try:
        return Runner(cfg, dist).run()
    finally:
        dist.close()


def spawn(cfg: DictConfig, command: list[str], env: dict[str, str] | None = None) -> str:
    """Run `command` (a worker reading the resolved config) and return the status its record ends with."""
    run_dir = Path(cfg.paths.runs) / cfg.study / run_id_of(cfg)
    config_path = run_dir / "config.yaml"
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.to_container(cfg, resolve=True), config_path)
    proc = subprocess.run([*command, str(config_path)], env={**os.environ, **(env or {})}, check=False)
    if proc.returncode == UsageError.exit_code:
        sys.exit(UsageError.exit_code)
    record = read_record(run_dir / RECORD_NAME) or {}
    if proc.returncode != 0:
        raise RuntimeError(f"worker exited with code {proc.returncode}; see {run_dir}")
    return record.get("status", "failed")


def dispatch(cfg: DictConfig) -> str:
    launcher = cfg.launcher.name
    if launcher == "torchrun" and cfg.trainer.devices > 1 and launcher_env() is None:
        return spawn(cfg, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={cfg.trainer.devices}", "-m", "bench.worker"])
    if launcher == "gpus" and visible_gpus():
        with gpu_lease() as gpu:
            return spawn(cfg, [sys.executable, "-m", "bench.worker"], {"CUDA_VISIBLE_DEVICES": gpu})
    return run_here(cfg)


def run_guarded(cfg: DictConfig, in_sweep: bool, worker: bool = False) -> str | None:
    """Dispatch (or, in a worker process that a launcher started, run in place). A user mistake exits 2 and a
    preempted run exits 128+signal; in a sweep a crashed run is recorded and the sweep goes on."""
    try:
        return run_here(cfg) if worker else dispatch(cfg)
    except UsageError as exc:
        console.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(UsageError.exit_code)
    except Preempted as exc:
        console.print(f"preempted: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(143)
    except Exception as exc:
        if not in_sweep:
            raise
        console.print(f"error: run failed ({type(exc).__name__}: {exc}); the sweep goes on", highlight=False,
                      markup=False, soft_wrap=True)
        return "failed"


def job(cfg: DictConfig) -> str | None:
    """One Hydra job (run by whichever Hydra launcher the config picked)."""
    register_resolvers()
    return run_guarded(cfg, in_sweep=is_multirun())


hydra_job = hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(job)


def run_command(args: list[str]) -> int:
    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    try:
        validate(overrides)
    except UsageError as exc:
        console.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        return UsageError.exit_code
    sys.argv = ["bench run", *args]
    hydra_job()
    return 0
