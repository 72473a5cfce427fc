"""Where the real GLUE copies for tests live (the checkout's sibling ../shared, else /work/shared)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch


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


@contextmanager
def one_intraop_thread() -> Iterator[None]:
    """One intra-op thread while tests train: on a shared 2-core machine two spinning threads were 15x slower for
    these tiny models. Restored afterwards, so other tests keep torch's default."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
