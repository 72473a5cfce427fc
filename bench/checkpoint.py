"""Checkpoints (every epoch, and mid-epoch on preemption): everything a resumed run needs to equal an
uninterrupted one."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.atomic import write_atomic

CHECKPOINT_NAME = "checkpoint.pt"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, payload: dict[str, Any]) -> None:
    write_atomic(run_dir / CHECKPOINT_NAME, lambda f: torch.save(payload, f))


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """Loaded on the CPU: RNG states must stay CPU byte tensors; model and optimizer state follow their
    parameters to the device when loaded into them."""
    path = run_dir / CHECKPOINT_NAME
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)
