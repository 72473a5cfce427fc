"""`python -m bench.worker CONFIG.yaml SHA256`: one process of a run, started by torchrun or a GPU-pinned job.

The launcher writes the resolved config into the run folder and passes its SHA-256 here. The folder may be on
a shared file system and a config names classes that get imported and called (`_target_`), so a worker runs
only the bytes the launcher wrote: a file changed in between is refused in one line and nothing runs."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bench.config import register_resolvers
from bench.errors import UsageError, print_error
from bench.launch import run_guarded


def read_config(path: Path, digest: str) -> DictConfig:
    """The config at `path` if its bytes hash to `digest`, else a UsageError naming the file."""
    blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != digest:
        raise UsageError(f"{path}: not the config the launcher wrote (SHA-256 mismatch; changed since), so it is "
                         "not run; rerun the same command")
    cfg = OmegaConf.create(blob.decode())
    assert isinstance(cfg, DictConfig)
    return cfg


def main(argv: list[str]) -> int:
    register_resolvers()
    try:
        cfg = read_config(Path(argv[0]), argv[1])
    except UsageError as exc:
        print_error(str(exc))
        return UsageError.exit_code
    run_guarded(cfg, in_sweep=False, worker=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
