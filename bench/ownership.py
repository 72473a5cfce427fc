"""One owner per run: an exclusive lock in the run folder, plus a lease that other hosts can see.

`fcntl.flock` is released by the OS when its process dies, so a SIGKILL leaves no stale lock. On shared file
systems where flock does not reach across hosts (some NFS setups), the lease `owner.json` (host, pid, heartbeat,
step) still tells a second launch that the run is alive: a lease whose heartbeat is older than `lease_ttl_s`, or
whose pid is gone on this host, has expired.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench.atomic import StorageError, write_json_atomic

LOCK_NAME = "lock"
OWNER_NAME = "owner.json"


class RunBusy(Exception):
    """Another live process owns this run."""


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    heartbeat: float  # unix time of the last heartbeat
    step: int
    started: float

    def describe(self) -> str:
        return f"host {self.host} pid {self.pid}, step {self.step}, last heartbeat {age(self.heartbeat)} ago"


def age(timestamp: float) -> str:
    seconds = max(0.0, time.time() - timestamp)
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def read_owner(run_dir: Path) -> Owner | None:
    try:
        data = json.loads((run_dir / OWNER_NAME).read_text())
        return Owner(str(data["host"]), int(data["pid"]), float(data["heartbeat"]), int(data["step"]),
                     float(data["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lease_alive(owner: Owner, ttl_s: float) -> bool:
    """Whether a lease still holds: a fresh heartbeat, and on this host also a live pid."""
    fresh = time.time() - owner.heartbeat < ttl_s
    return fresh and (owner.host != socket.gethostname() or pid_alive(owner.pid))


class RunLock:
    """Hold the run folder for this process: `acquire()` or RunBusy; a heartbeat thread renews the lease."""

    def __init__(self, run_dir: Path, heartbeat_s: float, lease_ttl_s: float) -> None:
        self.run_dir = run_dir
        self.heartbeat_s = heartbeat_s
        self.lease_ttl_s = lease_ttl_s
        self.step = 0
        self.started = time.time()
        self._handle: IO[str] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            handle = (self.run_dir / LOCK_NAME).open("a")
        except OSError as exc:
            raise StorageError.of(exc, self.run_dir / LOCK_NAME) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            owner = read_owner(self.run_dir)
            raise RunBusy(owner.describe() if owner else "another process on this host") from None
        # Holding the flock proves that no process on this host owns the run; a lease from another host may
        # still be live where the file system does not share flocks between hosts.
        owner = read_owner(self.run_dir)
        if owner is not None and owner.host != socket.gethostname() and lease_alive(owner, self.lease_ttl_s):
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
            raise RunBusy(owner.describe() + " (its lease is live)")
        self._handle = handle
        self.beat()
        self._thread = threading.Thread(target=self._beat_forever, name="bench-heartbeat", daemon=True)
        self._thread.start()

    def beat(self) -> None:
        lease: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time(),
                                 "step": self.step, "started": self.started}
        write_json_atomic(self.run_dir / OWNER_NAME, lease)

    def _beat_forever(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.beat()
            except StorageError:
                continue  # a full disk must not kill training; the lease just ages

    def release(self) -> None:
        """Drop the lease, then the lock (in that order, so a waiting launch never sees our stale lease)."""
        if self._handle is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        (self.run_dir / OWNER_NAME).unlink(missing_ok=True)
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
