"""The run record (schema 1): one JSON document per run, the unit every report and check reads."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from bench.atomic import write_json_atomic
from bench.fingerprint import digest, semantic

SCHEMA = 1
RECORD_NAME = "record.json"
STATUSES = ("running", "completed", "diverged", "failed")
REPO_ROOT = Path(__file__).resolve().parents[1]


def semantic_config(cfg: DictConfig) -> dict[str, Any]:
    """The part of the config that defines the experiment: task, optimizer, budget, seed."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    return semantic(resolved)


def run_id_of(cfg: DictConfig) -> str:
    """A stable 12-hex id: the same experiment gets the same id, whatever the paths or loggers."""
    return digest(semantic_config(cfg))


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_state() -> tuple[str | None, bool | None]:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return sha, bool(dirty)
    except (OSError, subprocess.SubprocessError):
        return None, None


def environment(device: torch.device, world_size: int) -> dict[str, Any]:
    sha, dirty = git_state()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "world_size": world_size,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "git_sha": sha,
        "dirty": dirty,
        "host": socket.gethostname(),
        "argv": sys.argv[1:],
    }


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_record(run_dir: Path, record: dict[str, Any]) -> None:
    assert record["status"] in STATUSES, record["status"]
    write_json_atomic(run_dir / RECORD_NAME, record)
