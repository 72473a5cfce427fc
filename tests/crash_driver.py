"""`python -m tests.crash_driver KIND N OVERRIDE...`: run one training run and SIGKILL it at the N-th event of
KIND, the way a node failure or an OOM killer would stop it (no finally block, no flush):

- `write`: in the middle of the N-th atomic file write (half the bytes are in the temp file);
- `replace`: just before the N-th rename that publishes a file;
- `replaced`: just after it;
- `append`: in the middle of the N-th metrics.jsonl line;
- `checkpointed`: just after the N-th checkpoint save returned.

If the run ends before the N-th event, the driver exits 3 so the test knows the point was not reached.
"""

from __future__ import annotations

import io
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import bench.atomic
import bench.checkpoint
import bench.loggers
import bench.runner
import bench.snapshots
from tests.runs import run

KINDS = ("write", "replace", "replaced", "append", "checkpointed")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def counting(n: int) -> Callable[[], bool]:
    seen = [0]

    def reached() -> bool:
        seen[0] += 1
        return seen[0] == n

    return reached


def arm(kind: str, n: int) -> None:
    reached = counting(n)
    if kind == "write":
        original_write_atomic = bench.atomic.write_atomic

        def write_atomic(path: Any, write: Callable[[Any], None]) -> None:
            if not reached():
                return original_write_atomic(path, write)
            buffer = io.BytesIO()
            write(buffer)

            def half(f: Any) -> None:
                f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                f.flush()
                die()

            return original_write_atomic(path, half)

        for module in (bench.atomic, bench.checkpoint, bench.loggers, bench.snapshots):
            module.write_atomic = write_atomic
    elif kind in ("replace", "replaced"):
        original_replace = os.replace

        def replace(src: Any, dst: Any) -> None:
            hit = reached()
            if hit and kind == "replace":
                die()
            original_replace(src, dst)
            if hit:
                die()

        os.replace = replace
    elif kind == "append":
        original_log = bench.loggers.MetricsLog.log

        def log(self: Any, row: dict[str, Any]) -> None:
            if not reached():
                return original_log(self, row)
            with self.path.open("a") as f:
                f.write('{"step": ' + str(row["step"]))
                f.flush()
            die()

        bench.loggers.MetricsLog.log = log
    elif kind == "checkpointed":
        original_save = bench.runner.save_checkpoint

        def save(run_dir: Any, payload: dict[str, Any]) -> None:
            original_save(run_dir, payload)
            if reached():
                die()

        bench.runner.save_checkpoint = save
    else:
        raise SystemExit(f"unknown kind {kind}; one of {', '.join(KINDS)}")


def main(argv: list[str]) -> int:
    kind, n, *overrides = argv
    arm(kind, int(n))
    runs = next(o.split("=", 1)[1] for o in overrides if o.startswith("paths.runs="))
    run(runs, *(o for o in overrides if not o.startswith("paths.runs=")))
    return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
