"""One run per GPU: a sweep's jobs lease a free GPU through node-local file locks and pin it with
CUDA_VISIBLE_DEVICES, fixing Hydra's launchers putting every job on one GPU (hydra issue 2757)."""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

LOCK_DIR = Path(tempfile.gettempdir()) / f"bench-gpu-locks-{os.getuid()}"


def visible_gpus() -> list[str]:
    """The GPU ids this process may use: CUDA_VISIBLE_DEVICES if set, else every device torch sees."""
    pinned = os.environ.get("CUDA_VISIBLE_DEVICES")
    if pinned is not None:
        return [g.strip() for g in pinned.split(",") if g.strip() and g.strip() != "-1"]
    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def parallel_jobs() -> int:
    """How many jobs of a sweep run at once: one per GPU, or one (in sequence) on a machine without."""
    return max(1, len(visible_gpus()))


@contextmanager
def gpu_lease(poll_s: float = 1.0) -> Iterator[str]:
    """Hold an exclusive lock on one free GPU for the duration of a run."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    while True:
        for gpu in visible_gpus():
            handle = (LOCK_DIR / f"gpu{gpu}.lock").open("w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield gpu
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        time.sleep(poll_s)
