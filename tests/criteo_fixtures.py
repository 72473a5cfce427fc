"""Criteo Kaggle `train.txt` fixtures in the published format, and the real 100-row sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SAMPLE = "criteo/sample_train.txt"


def shared_data() -> Path:
    """The checkout's sibling ../shared/data, else /work/shared/data."""
    sibling = Path(__file__).resolve().parents[2] / "shared" / "data"
    return sibling if sibling.exists() else Path("/work/shared/data")


def real_sample() -> Path:
    path = shared_data() / SAMPLE
    if not path.is_file():
        pytest.skip(f"real Criteo sample absent: {path}")
    return path


def kaggle_line(label: int, dense: list[str], ids: list[str]) -> str:
    assert len(dense) == 13 and len(ids) == 26
    return "\t".join([str(label), *dense, *ids])


def learnable_rows(n: int, seed: int = 0) -> list[str]:
    """Rows whose click follows I1 (and C1, which tracks it), so a model can lower the loss; ids are 8 hex digits,
    some >= 2**31, some fields empty."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n):
        i1 = int(rng.integers(0, 20))
        c1 = int(rng.integers(0, 2)) + 2 * (i1 >= 10)
        label = int(rng.random() < (0.9 if i1 < 10 else 0.1))
        dense = [str(i1)] + [("" if rng.random() < 0.2 else str(int(rng.integers(-2, 50)))) for _ in range(12)]
        ids = [f"{0x80000000 + c1:08x}"] + [("" if rng.random() < 0.1 else f"{int(rng.integers(0, 6)) * 0x1234567:08x}")
                                            for _ in range(25)]
        lines.append(kaggle_line(label, dense, ids))
    return lines


def write_train(folder: Path, lines: list[str], ending: str = "\n", final_newline: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = ending.join(lines) + (ending if final_newline else "")
    (folder / "train.txt").write_bytes(text.encode())
    return folder
