"""fairseq's mmap indexed dataset (`MMapIndexedDataset`): the `.bin`/`.idx` pairs of a data-bin folder.

`.idx` layout, little-endian, exactly as fairseq writes it:
  magic b"MMIDIDX\\x00\\x00" | version u64 (=1) | dtype code u8 | N u64 | D u64
  | sizes int32[N] | pointers int64[N] (byte offsets into .bin) | doc_idx int64[D]
`.bin` is the items' token ids back to back in that dtype (uint16 when the vocabulary has < 65500 symbols).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from tasks.base import DataError

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
DTYPES: dict[int, type] = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64,
                           7: np.double, 8: np.uint16, 9: np.uint32, 10: np.uint64}
CODES = {np.dtype(t): c for c, t in reversed(DTYPES.items())}


def best_dtype(vocab_size: int) -> type:
    """fairseq-preprocess's choice: uint16 below 65500 symbols, else int32."""
    return np.uint16 if vocab_size < 65500 else np.int32


def write_indexed(prefix: Path, items: Iterable[Sequence[int]], dtype: type) -> None:
    """Write `prefix.bin` and `prefix.idx` as fairseq's `MMapIndexedDatasetBuilder` does (doc_idx = [0])."""
    sizes: list[int] = []
    with open(f"{prefix}.bin", "wb") as out:
        for item in items:
            array = np.asarray(item, dtype=dtype)
            out.write(array.tobytes(order="C"))
            sizes.append(len(array))
    size_array = np.asarray(sizes, dtype=np.int32)
    pointers = np.zeros(len(sizes), dtype=np.int64)
    if len(sizes) > 1:
        pointers[1:] = np.cumsum(size_array[:-1], dtype=np.int64) * np.dtype(dtype).itemsize
    doc_idx = np.asarray([0], dtype=np.int64)
    with open(f"{prefix}.idx", "wb") as out:
        out.write(MAGIC)
        out.write(struct.pack("<Q", VERSION))
        out.write(struct.pack("<B", CODES[np.dtype(dtype)]))
        out.write(struct.pack("<Q", len(sizes)))
        out.write(struct.pack("<Q", len(doc_idx)))
        out.write(size_array.tobytes(order="C"))
        out.write(pointers.tobytes(order="C"))
        out.write(doc_idx.tobytes(order="C"))


def read_indexed(prefix: Path) -> list[np.ndarray]:
    """All items of `prefix.{idx,bin}` as int64 arrays; a file that is not this format is a DataError."""
    idx_path, bin_path = Path(f"{prefix}.idx"), Path(f"{prefix}.bin")
    for path in (idx_path, bin_path):
        if not path.is_file():
            raise DataError(f"{path}: file missing; a fairseq data-bin has {{split}}.SRC-TGT.LANG.bin/.idx for "
                            "train, valid and test (fairseq-preprocess --dataset-impl mmap)")
    raw = idx_path.read_bytes()
    header = len(MAGIC) + 8 + 1 + 8 + 8
    if raw[:len(MAGIC)] != MAGIC or len(raw) < header:
        raise DataError(f"{idx_path}: not a fairseq mmap index (magic {raw[:len(MAGIC)]!r}, expected {MAGIC!r}); "
                        "re-run fairseq-preprocess with --dataset-impl mmap (the default)")
    version, = struct.unpack_from("<Q", raw, len(MAGIC))
    code, = struct.unpack_from("<B", raw, len(MAGIC) + 8)
    n, n_doc = struct.unpack_from("<QQ", raw, len(MAGIC) + 9)
    if version != VERSION or code not in DTYPES:
        raise DataError(f"{idx_path}: index version {version}, dtype code {code}; expected version 1 and a code "
                        f"in {sorted(DTYPES)}")
    if len(raw) != header + 4 * n + 8 * n + 8 * n_doc:
        raise DataError(f"{idx_path}: {len(raw)} bytes, but its header announces {n} items; the file is truncated")
    sizes = np.frombuffer(raw, dtype=np.int32, count=n, offset=header)
    pointers = np.frombuffer(raw, dtype=np.int64, count=n, offset=header + 4 * n)
    dtype = np.dtype(DTYPES[code])
    data = np.fromfile(bin_path, dtype=dtype)
    if n and (pointers[-1] // dtype.itemsize + sizes[-1] > len(data)):
        raise DataError(f"{bin_path}: {len(data)} tokens, but {idx_path.name} points past them; .bin and .idx "
                        "do not belong together")
    starts = pointers // dtype.itemsize
    return [data[s:s + k].astype(np.int64) for s, k in zip(starts, sizes, strict=True)]
