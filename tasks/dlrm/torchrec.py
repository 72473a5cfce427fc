"""torchrec's preprocessed Criteo layout, read in place through memory maps.

torchrec (torchrec/datasets/criteo.py, `BinaryCriteoUtils.tsv_to_npys`; scripts/npy_preproc_criteo.py) writes
per file `<name>_dense.npy` (float32, log(x + 3) of the counts, missing -> 0, negatives not clamped),
`<name>_sparse.npy` (int32 raw hex ids, missing -> 0) or `<name>_sparse_contig_freq.npy` (contiguous codes)
and `<name>_labels.npy` (int32, shape (N, 1)), with names `day_0` .. `day_N` or `train`. The dense transform
differs from the reference's log(x + 1) with negatives clamped, so numbers from this layout are not the
reference's. Raw ids are hashed into tables with `task.max_ind_range` (required for them), as torchrec does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.base import DataError
from tasks.dlrm.parse import N_DENSE, N_SPARSE
from tasks.dlrm.prepare import split_ranges, split_sizes, split_summary

if TYPE_CHECKING:
    from tasks.dlrm.task import CriteoArrays

DAY = re.compile(r"^(day_(\d+)|train)_dense\.npy$")
CONTIG = "_sparse_contig_freq.npy"


class ConcatRows:
    """Rows of several memory-mapped arrays as one, with a per-gather conversion; slices or sorted indices."""

    def __init__(self, parts: list[np.ndarray], convert: Callable[[np.ndarray], np.ndarray]) -> None:
        self.parts = parts
        self.convert = convert
        self.bounds = np.cumsum([0, *(len(p) for p in parts)])

    def __len__(self) -> int:
        return int(self.bounds[-1])

    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray:
        if isinstance(rows, slice):
            rows = np.arange(*rows.indices(len(self)))
        which = np.searchsorted(self.bounds, rows, side="right") - 1
        out = []
        for k in np.unique(which):
            out.append(self.parts[k][rows[which == k] - self.bounds[k]])
        if not out:
            return self.convert(self.parts[0][:0])
        return self.convert(np.concatenate(out))


def find_torchrec(data_dir: str | Path) -> list[str] | None:
    """The file stems (`day_0`, ... in day order, or `train`) when data_dir holds torchrec's layout."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        return None
    found = [(m.group(2), m.group(1)) for f in root.iterdir() if (m := DAY.match(f.name))]
    if not found:
        return None
    return [stem for _, stem in sorted(found, key=lambda x: int(x[0]) if x[0] is not None else -1)]


def _load(path: Path, columns: int | None) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: missing; torchrec's layout needs <name>_dense.npy, <name>_sparse.npy (or "
                        f"{CONTIG[1:]}) and <name>_labels.npy for every day")
    array = np.load(path, mmap_mode="r")
    if columns is not None and (array.ndim != 2 or array.shape[1] != columns):
        raise DataError(f"{path}: shape {array.shape}, expected (rows, {columns})")
    return array


def load_torchrec(data_dir: str | Path, max_ind_range: int, test_split: str = "paper_day7") -> CriteoArrays:
    from tasks.dlrm.task import CriteoArrays

    root = Path(data_dir).expanduser()
    stems = find_torchrec(root)
    assert stems is not None
    contiguous = all((root / f"{s}{CONTIG}").is_file() for s in stems)
    if not contiguous and max_ind_range <= 0:
        raise DataError(f"task.data_dir={root}: torchrec's raw *_sparse.npy ids need hashing; set "
                        "task.max_ind_range=N (e.g. 10000000), or provide *_sparse_contig_freq.npy files")
    dense = [_load(root / f"{s}_dense.npy", N_DENSE) for s in stems]
    sparse = [_load(root / (f"{s}{CONTIG}" if contiguous else f"{s}_sparse.npy"), N_SPARSE) for s in stems]
    labels = [_load(root / f"{s}_labels.npy", None) for s in stems]
    for d, s, y in zip(dense, sparse, labels, strict=True):
        if not len(d) == len(s) == len(y):
            raise DataError(f"task.data_dir={root}: dense, sparse and labels files of one day differ in rows")
    if max_ind_range > 0:
        sizes = [max_ind_range] * N_SPARSE
        def to_codes(x: np.ndarray) -> np.ndarray:
            return np.mod(x.astype(np.int64), max_ind_range)
    else:
        sizes = [int(max(int(part[:, j].max(initial=0)) for part in sparse)) + 1 for j in range(N_SPARSE)]
        def to_codes(x: np.ndarray) -> np.ndarray:
            return x.astype(np.int64)
    sparse_rows = ConcatRows(sparse, to_codes)
    rows = len(sparse_rows)
    ranges = split_ranges(split_sizes(rows), test_split)
    summary: dict[str, Any] = {"layout": "torchrec", "source": str(root), "files": stems, "rows": rows,
                               **split_summary(ranges, test_split), "table_sizes": sizes,
                               "sparse": "contiguous" if contiguous else f"raw ids mod {max_ind_range}",
                               "skipped_lines": 0}
    return CriteoArrays(ConcatRows(labels, lambda y: y.reshape(-1).astype(np.float32)),
                        ConcatRows(dense, lambda x: np.asarray(x, dtype=np.float32)), sparse_rows, sizes,
                        ranges, summary)
