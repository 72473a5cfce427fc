"""`bench run`: check the overrides up front, then hand them to Hydra (which runs one job or a sweep)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from bench.atomic import StorageError, write_atomic
from bench.config import CONF_DIR, GROUPS, check_config, choices, compose_config, register_resolvers
from bench.distributed import Distributed, launcher_env
from bench.errors import UsageError, print_error
from bench.gpus import gpu_lease, visible_gpus
from bench.optim_factory import is_hessian_optimizer
from bench.preemption import Preempted
from bench.progress import console
from bench.records import RECORD_NAME, read_record, run_id_of
from bench.runner import Runner, build_task

CHECKED_GROUPS = tuple(g for g in GROUPS if g != "recipe")
PREEMPTED_EXIT = 128 + signal.SIGTERM


def sweep_compositions(overrides: list[str]) -> list[list[str]]:
    """Check group choices (every value of a sweep) and return the override lists worth composing: the
    first value of every key, then each further value of each swept key, so no job of a sweep fails on a
    bad value after others ran."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise UsageError(f"cannot parse overrides {' '.join(overrides)}: {str(exc).splitlines()[0]}") from None
    values: dict[str, list[str]] = {}
    for override in parsed:
        key = override.key_or_group
        if key.startswith("hydra") or override.is_delete():
            continue
        options = (list(override.sweep_string_iterator()) if override.is_sweep_override()
                   else [override.get_value_element_as_str()])
        if key in CHECKED_GROUPS:
            known = choices(key)
            for value in options:
                if value not in known and value != "null":
                    raise UsageError(f"unknown {key} '{value}'; available: {', '.join(known)} (see `bench list`)")
        values[override.get_key_element()] = options
    first = {key: options[0] for key, options in values.items()}
    compositions = [[f"{k}={v}" for k, v in first.items()]]
    for key, options in values.items():
        compositions += [[f"{k}={value if k == key else v}" for k, v in first.items()] for value in options[1:]]
    return compositions


def describe_composition_error(exc: Exception, overrides: list[str]) -> str:
    """Turn Hydra's multi-line composition error into one line that lists the valid keys."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if not first.startswith("Could not override '"):
        return first
    key = first.split("'")[1]
    parent = key.rpartition(".")[0]
    try:
        base = compose_config([o for o in overrides if not o.lstrip("+~").startswith(key)])
    except HydraException:
        return f"unknown config key '{key}'. Use +{key}=VALUE to add a key on purpose"
    section = OmegaConf.select(base, parent) if parent else base
    known = ", ".join(sorted(section.keys())) if isinstance(section, DictConfig) else "?"
    return (f"unknown config key '{key}'; {parent or 'the config'} has: {known}. "
            f"Use +{key}=VALUE to add a key on purpose")


def check_writable(folder: Path) -> None:
    """The study folder (or its nearest existing parent) must take new files, else one line and exit 1."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not os.access(existing, os.W_OK):
        reason = "the file system is read-only" if os.statvfs(existing).f_flag & os.ST_RDONLY else "permission denied"
        raise StorageError(f"cannot write in {existing}: {reason}; pick a writable paths.runs or fix the folder")


def validate(overrides: list[str]) -> None:
    batch_size_given = any(o.lstrip("+~").split("=")[0] == "trainer.batch_size" for o in overrides)
    for composition in sweep_compositions(overrides):
        try:
            cfg = compose_config(composition)
            OmegaConf.to_container(cfg, resolve=True)  # a recipe's ${div:...} on a bad value fails here, in one line
        except HydraException as exc:
            raise UsageError(describe_composition_error(exc, composition)) from None
        except InterpolationResolutionError as exc:
            raise UsageError(f"{exc.full_key}: {str(exc).splitlines()[0]}; check the values it is computed from "
                             f"({' '.join(composition) or 'the defaults'})") from None
        check_config(cfg)
        check_writable(Path(cfg.paths.runs) / cfg.study)
        unused = cfg.task.get("batch_size_unused")
        if batch_size_given and unused:
            raise UsageError(f"trainer.batch_size does not apply to task={cfg.task.name}: {unused}")


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_here(cfg: DictConfig) -> str:
    """Run in this process, joining the process group of torchrun or submitit if there is one."""
    dist = Distributed.from_env(cfg.trainer.device, is_hessian_optimizer(cfg.optimizer))
    expected = cfg.trainer.devices * cfg.trainer.nodes
    if dist.world_size != expected:
        dist.close()
        raise UsageError(f"trainer.devices={cfg.trainer.devices} x trainer.nodes={cfg.trainer.nodes} asks for "
                         f"{expected} processes but this run has {dist.world_size}; use launcher=torchrun "
                         "(one node) or launcher=slurm, or set trainer.devices=1")
    try:
        status = Runner(cfg, dist).run()
    except BaseException:
        dist.close()  # no barrier: a failing rank's peers may never reach it
        raise
    dist.close(together=True)
    return status


def spawn(cfg: DictConfig, command: list[str], env: dict[str, str] | None = None) -> str:
    """Run `command` (worker processes reading the resolved config) and return the status of its record.

    The config and the data are checked here first, so a mistake is one line from this process rather than
    one per worker. SIGTERM/SIGINT sent to this process alone are passed on to the workers."""
    check_config(cfg)
    build_task(cfg, torch.device("cpu"), Distributed.single())
    run_dir = Path(cfg.paths.runs) / cfg.study / run_id_of(cfg)
    config_path = run_dir / "config.yaml"
    resolved = OmegaConf.to_yaml(OmegaConf.to_container(cfg, resolve=True)).encode()
    write_atomic(config_path, lambda f: f.write(resolved))  # a concurrent launch may write the same file
    digest = hashlib.sha256(resolved).hexdigest()  # the workers run only this config (bench/worker.py)
    proc = subprocess.Popen([*command, str(config_path), digest], env={**os.environ, **(env or {})})
    forwarded = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            forwarded[sig] = signal.signal(sig, lambda signum, _frame: proc.send_signal(signum))
    try:
        code = proc.wait()
    finally:
        for sig, handler in forwarded.items():
            signal.signal(sig, handler)
    if code == UsageError.exit_code:
        sys.exit(UsageError.exit_code)  # the worker printed the one-line error
    record = read_record(run_dir / RECORD_NAME) or {}
    if record.get("status") == "running" and record.get("interrupted"):
        raise Preempted(record["interrupted"])
    if code != 0:
        raise RuntimeError(f"worker exited with code {code}; see {run_dir}")
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
    preempted run exits 143 (128 + SIGTERM); in a sweep a crashed run is recorded and the sweep goes on."""
    try:
        return run_here(cfg) if worker else dispatch(cfg)
    except UsageError as exc:
        print_error(str(exc))
        sys.exit(UsageError.exit_code)
    except StorageError as exc:  # nothing more can be recorded here, so the sweep stops too
        print_error(str(exc))
        sys.exit(StorageError.exit_code)
    except Preempted as exc:
        console.print(f"preempted: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(PREEMPTED_EXIT)
    except Exception as exc:
        if not in_sweep:
            raise
        print_error(f"run failed ({type(exc).__name__}: {exc}); the sweep goes on")
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
    except (UsageError, StorageError) as exc:
        print_error(str(exc))
        return exc.exit_code
    sys.argv = ["bench run", *args]
    hydra_job()
    return 0
