from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.config import register_resolvers
from tests.fixtures import write_cifar10

REPO = Path(__file__).resolve().parents[1]
register_resolvers()


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CIFAR-10 in the python-pickle layout (200 train, 100 test images)."""
    return write_cifar10(tmp_path_factory.mktemp("cifar"))


def bench(*args: str, cwd: Path | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run the real `bench` CLI in a fresh process, as a user would."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_SILENT": "true"}
    proc = subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=cwd or REPO,
                          env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"bench {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc
