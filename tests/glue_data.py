"""Where the real GLUE copies for tests live (the checkout's sibling ../shared, else /work/shared)."""

from __future__ import annotations

from pathlib import Path

import pytest


def glue_dir() -> Path:
    for root in (Path(__file__).resolve().parents[2] / "shared" / "data", Path("/work/shared/data")):
        if (root / "glue_data").is_dir():
            return root / "glue_data"
    pytest.skip("real GLUE data absent: expected ../shared/data/glue_data (RTE, MRPC, STS-B, CoLA, SST-2)")


def real_task_dir(folder: str) -> Path:
    root = glue_dir()
    if not (root / folder / "train.tsv").is_file():
        pytest.skip(f"real GLUE {folder} absent: no {root / folder / 'train.tsv'}")
    return root


