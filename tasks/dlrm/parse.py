"""Vectorised parsing of Criteo Kaggle `train.txt`: label, I1..I13 counts, C1..C26 hex ids, tab-separated.

The file is read in byte blocks cut at line ends and parsed with numpy on the raw bytes: delimiter positions,
right-aligned digit gathers and one Horner sum per column, never a Python loop per line or field. Working on
bytes (rather than pandas/pyarrow CSV readers) keeps the exact line number of every bad line, which the
error message names, and handles CRLF line ends and a last line without a newline for free.

Per line: the label must be 0 or 1; a count is an optional '-' and decimal digits, empty = missing; an id is
1..15 hex digits, empty = missing. Transform as the reference (facebookresearch/dlrm data_utils.py:
`X_int[X_int < 0] = 0`, `np.log(X_int.astype(np.float32) + 1)`): missing -> 0, negatives -> 0, log(x + 1).
Ids stay int64 (Kaggle's 8-digit ids reach 2^32, beyond int32); a missing id is -1, a category of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.base import DataError

N_DENSE = 13
N_SPARSE = 26
N_FIELDS = 1 + N_DENSE + N_SPARSE
FIELD_NAMES = ["label", *(f"I{i}" for i in range(1, N_DENSE + 1)), *(f"C{i}" for i in range(1, N_SPARSE + 1))]
MISSING_ID = -1
MAX_COUNT_DIGITS = 18  # fits int64
MAX_ID_DIGITS = 15  # 16**15 fits int64
PAD = 32  # zero bytes before a block, so a field's fixed-width window never starts before the buffer
BLOCK_BYTES = 64 << 20
TAB, LF, CR, MINUS = 9, 10, 13, 45
LAYOUT = ("expected Criteo Kaggle train.txt lines: label (0/1), 13 integer counts I1..I13 and 26 hex ids C1..C26, "
          "tab-separated, empty fields for missing values")
SKIP_HINT = "fix or delete that line, or set task.skip_bad_lines=true to skip such lines (they are counted)"


def _digit_table(alphabet: str) -> np.ndarray:
    table = np.full(256, -1, dtype=np.int8)
    for value, char in enumerate(alphabet):
        table[ord(char)] = value
        table[ord(char.upper())] = value
    return table


DECIMAL = _digit_table("0123456789")
HEX = _digit_table("0123456789abcdef")


@dataclass
class Block:
    """Parsed rows of one block: labels (n,) float32, dense (n, 13) float32 transformed, ids (n, 26) int64."""

    labels: np.ndarray
    dense: np.ndarray
    ids: np.ndarray
    skipped: int
    lines: int


@dataclass(frozen=True)
class ByteRange:
    """Whole lines of the file: `length` bytes from `offset`, the first being line number `first_line`."""

    offset: int
    length: int
    first_line: int
    lines: int


def byte_ranges(path: Path, block_bytes: int = BLOCK_BYTES) -> list[ByteRange]:
    """Cut the file into blocks of whole lines (one streaming pass); a last line without newline counts."""
    ranges: list[ByteRange] = []
    offset, line, carry = 0, 1, 0
    with path.open("rb") as f:
        while data := f.read(block_bytes):
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                carry += len(data)
                continue
            lines = data.count(b"\n", 0, cut)
            ranges.append(ByteRange(offset, carry + cut, line, lines))
            offset += carry + cut
            line += lines
            carry = len(data) - cut
    if carry:
        ranges.append(ByteRange(offset, carry, line, 1))
    return ranges


def read_range(path: Path, part: ByteRange) -> np.ndarray:
    """The bytes of a range, ending with LF (one is added to a last line that lacks it)."""
    with path.open("rb") as f:
        f.seek(part.offset)
        data = f.read(part.length)
    if not data.endswith(b"\n"):
        data += b"\n"
    return np.frombuffer(data, dtype=np.uint8)


def _line_error(path: Path, line: int, what: str) -> DataError:
    return DataError(f"{path}:{line}: {what}; {LAYOUT}; {SKIP_HINT}")


def _keep_lines(buf: np.ndarray, line_ends: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The bytes of the kept lines only (each line is its bytes up to and including its LF)."""
    lengths = np.diff(line_ends, prepend=-1)
    return buf[np.repeat(keep, lengths)]


def _numbers(padded: np.ndarray, ends: np.ndarray, lengths: np.ndarray, table: np.ndarray, base: int,
             ) -> tuple[np.ndarray, np.ndarray]:
    """Values of one column of digit strings ending at `ends` (exclusive, in `padded`), and a bad-row mask.

    Each field's last `width` bytes are gathered as one row of a sliding-window view, digits left of the field's
    start are zeroed, and the place values are summed with a float64 matrix product, exact below 2**53
    (wider fields take an int64 Horner loop). Fields longer than PAD bytes are bad.
    """
    too_long = lengths > PAD
    lengths = np.minimum(lengths, PAD)
    width = max(int(lengths.max(initial=0)), 1)
    windows = np.lib.stride_tricks.sliding_window_view(padded, width)
    digits = table[windows[ends - width]]
    digits[np.arange(width) < (width - lengths)[:, None]] = 0
    bad = (digits < 0).any(axis=1) | too_long
    if base ** width < 2**53:
        powers = float(base) ** np.arange(width - 1, -1, -1)
        return (digits.astype(np.float64) @ powers).astype(np.int64), bad
    value = np.zeros(len(ends), dtype=np.int64)
    for k in range(width):
        value = value * base + np.maximum(digits[:, k], 0)
    return value, bad


def _delimiters(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of every tab and LF, of the LFs (line ends), and each line's field count: one scan."""
    delims = np.flatnonzero((buf == TAB) | (buf == LF))
    lf_index = np.flatnonzero(buf[delims] == LF)
    return delims, delims[lf_index], np.diff(lf_index, prepend=-1)


def parse_block(buf: np.ndarray, first_line: int, path: Path, skip_bad_lines: bool) -> Block:
    """Parse whole lines; a bad line raises a DataError naming it, or is dropped when `skip_bad_lines`."""
    delims, line_ends, fields = _delimiters(buf)
    n_lines = len(line_ends)
    line_numbers = first_line + np.arange(n_lines)
    good = fields == N_FIELDS
    if not good.all():
        if not skip_bad_lines:
            first = int(np.flatnonzero(~good)[0])
            raise _line_error(path, int(line_numbers[first]),
                              f"{fields[first]} tab-separated fields, expected {N_FIELDS}")
        buf = _keep_lines(buf, line_ends, good)
        line_numbers = line_numbers[good]
        delims, line_ends, _ = _delimiters(buf)
    n = len(line_ends)
    if n == 0:
        return Block(np.zeros(0, np.float32), np.zeros((0, N_DENSE), np.float32), np.zeros((0, N_SPARSE), np.int64),
                     n_lines, n_lines)
    # Field-major (26 + 14 contiguous rows of n), so each column's arithmetic runs on contiguous memory.
    ends = np.ascontiguousarray(delims.reshape(n, N_FIELDS).T)
    starts = np.empty_like(ends)
    starts[0, 0] = 0
    starts[0, 1:] = line_ends[:-1] + 1
    starts[1:] = ends[:-1] + 1
    crlf = (ends[-1] > starts[-1]) & (buf[np.maximum(ends[-1] - 1, 0)] == CR)
    ends[-1] -= crlf
    lengths = ends - starts
    padded = np.concatenate((np.zeros(PAD, dtype=np.uint8), buf))
    ends_padded = ends + PAD

    bad_rows = np.zeros(n, dtype=bool)
    reasons: list[tuple[np.ndarray, str]] = []

    label_len = lengths[0]
    label_char = buf[starts[0]]
    bad = (label_len != 1) | ((label_char != ord("0")) & (label_char != ord("1")))
    reasons.append((bad, "label must be 0 or 1"))
    labels = (label_char == ord("1")).astype(np.float32)

    dense = np.zeros((N_DENSE, n), dtype=np.float32)
    for j in range(N_DENSE):
        col = 1 + j
        negative = (lengths[col] > 0) & (buf[starts[col]] == MINUS)
        digits = lengths[col] - negative
        values, bad = _numbers(padded, ends_padded[col], digits, DECIMAL, 10)
        bad |= (negative & (digits == 0)) | (digits > MAX_COUNT_DIGITS)
        reasons.append((bad, f"{FIELD_NAMES[col]} must be an integer count (or empty)"))
        values[negative] = 0
        dense[j] = values
    dense = np.log(dense.T + np.float32(1))

    ids = np.empty((N_SPARSE, n), dtype=np.int64)
    for j in range(N_SPARSE):
        col = 1 + N_DENSE + j
        values, bad = _numbers(padded, ends_padded[col], lengths[col], HEX, 16)
        bad |= lengths[col] > MAX_ID_DIGITS
        reasons.append((bad, f"{FIELD_NAMES[col]} must be a hex id of at most {MAX_ID_DIGITS} digits (or empty)"))
        values[lengths[col] == 0] = MISSING_ID
        ids[j] = values
    ids = ids.T

    for bad, _ in reasons:
        bad_rows |= bad
    if bad_rows.any() and not skip_bad_lines:
        row = int(np.flatnonzero(bad_rows)[0])
        reason = next(r for bad, r in reasons if bad[row])
        raise _line_error(path, int(line_numbers[row]), reason)
    keep = ~bad_rows
    skipped = n_lines - n + int(bad_rows.sum())
    return Block(labels[keep], dense[keep], ids[keep], skipped, n_lines)


def parse_range(path: Path, part: ByteRange, skip_bad_lines: bool) -> Block:
    """Read and parse one range (the unit of work of a prepare's worker processes)."""
    return parse_block(read_range(path, part), part.first_line, path, skip_bad_lines)


def parse_file(path: Path, skip_bad_lines: bool = False, block_bytes: int = BLOCK_BYTES) -> Iterator[Block]:
    """Stream a whole train.txt as parsed blocks, in one process."""
    for part in byte_ranges(path, block_bytes):
        yield parse_range(path, part, skip_bad_lines)
