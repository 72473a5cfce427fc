"""`python -m bench.worker CONFIG.yaml`: one process of a run, started by torchrun or a GPU-pinned job."""

from __future__ import annotations

import sys

from omegaconf import OmegaConf

from bench.config import register_resolvers
from bench.launch import run_guarded


def main(argv: list[str]) -> int:
    register_resolvers()
    cfg = OmegaConf.load(argv[0])
    run_guarded(cfg, in_sweep=False, worker=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
