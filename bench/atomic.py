"""Atomic file writes: a reader sees the old file or the new one, never half of one.

A write that the storage refuses (disk full, read-only or unwritable folder) raises StorageError, one line that
names the folder; the previous file is left untouched."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

STORAGE_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                  errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                  errno.EPERM: "permission denied"}


class StorageError(Exception):
    """The run folder cannot be written: say which folder, why, and that the earlier files are intact."""

    exit_code = 1

    @classmethod
    def of(cls, exc: OSError, path: Path) -> StorageError:
        reason = STORAGE_ERRNOS.get(exc.errno or 0, exc.strerror or str(exc))
        return cls(f"cannot write {path.name} in {path.parent}: {reason}; the previous record and checkpoint "
                   "there are intact. Free space or fix the folder, then rerun the same command to resume")


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write through a temp file in the same folder, fsync it, then rename it over `path`."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if exc.errno in STORAGE_ERRNOS:
            raise StorageError.of(exc, path) from None
        raise
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    data = (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode()
    write_atomic(path, lambda f: f.write(data))


def remove_leftovers(folder: Path) -> None:
    """Delete temp files that a killed writer left behind (only their owner may call this)."""
    for leftover in folder.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)
