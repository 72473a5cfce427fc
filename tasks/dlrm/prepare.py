"""Criteo Kaggle `train.txt` -> memory-mapped arrays, once, in a fingerprinted cache beside the data.

Two streaming passes, never holding the file: the first counts lines (to size the arrays), the second parses
blocks (tasks.dlrm.parse), maps each column's ids to dense codes and writes rows. Codes follow the reference
(facebookresearch/dlrm data_utils.py, getCriteoAdData: `convertDicts[j][x] = i` over the dict's insertion
order): one dictionary per column over the whole file, in first-seen order, no frequency cut
(`--max-ind-range=-1`); `max_ind_range=N` first hashes ids modulo N (`int(x, 16) % max_ind_range`). Unlike
the reference, which reads an empty id as "0" (the same as id 00000000), a missing id is its own category.

The cache is written into a temporary folder and renamed into place, with `manifest.json` (source size and
content fingerprint, skipped lines, dictionary sizes, split) last: a killed prepare leaves nothing trusted,
and a changed `train.txt` (size or fingerprint) is prepared again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.base import DataError
from tasks.dlrm.parse import BLOCK_BYTES, N_DENSE, N_SPARSE, Block, ByteRange, byte_ranges, parse_range

CACHE_VERSION = 1
SOURCE_NAME = "train.txt"
MANIFEST = "manifest.json"
DAYS = 7  # the reference cuts Kaggle's single file into 7 "days"
FINGERPRINT_SAMPLES = 16
FINGERPRINT_BYTES = 1 << 20
GET_IT = ("get train.txt from the Criteo Display Advertising Challenge (Kaggle) dac.tar.gz, "
          "https://ailab.criteo.com/ressources/")


def find_source(data_dir: str | Path) -> Path:
    """DATA_DIR/train.txt (or the file itself); a missing or empty file is a DataError."""
    root = Path(data_dir).expanduser()
    path = root if root.is_file() else root / SOURCE_NAME
    if not path.is_file():
        what = "does not exist" if not root.exists() else f"holds no {SOURCE_NAME}"
        raise DataError(f"task.data_dir={root}: {what}; expected DATA_DIR/{SOURCE_NAME} (Criteo Kaggle format); "
                        f"{GET_IT}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file; expected Criteo Kaggle lines; {GET_IT}")
    return path


def fingerprint(path: Path) -> dict[str, Any]:
    """Size and a BLAKE2b hash of 16 evenly spaced 1 MiB samples (the whole file when small): cheap enough to
    check at every run start, and any change of size or of a sampled byte shows."""
    size = path.stat().st_size
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        if size <= FINGERPRINT_SAMPLES * FINGERPRINT_BYTES:
            digest.update(f.read())
        else:
            step = (size - FINGERPRINT_BYTES) // (FINGERPRINT_SAMPLES - 1)
            for i in range(FINGERPRINT_SAMPLES):
                f.seek(i * step)
                digest.update(f.read(FINGERPRINT_BYTES))
    return {"size": size, "blake2b_sampled": digest.hexdigest()}


def split_sizes(rows: int) -> dict[str, int]:
    """The reference's Kaggle split (data_utils.py getCriteoAdData and transformCriteoAdData): 7 consecutive
    chunks, the first `rows % 7` one row longer; chunks 1-6 train; the 7th `np.array_split` in two, the first
    half (one longer when odd) test, the second validation. Rows are consecutive: train, test, validation."""
    per_day, extra = divmod(rows, DAYS)
    days = [per_day + (i < extra) for i in range(DAYS)]
    last = days[-1]
    return {"train": sum(days[:-1]), "test": last - last // 2, "val": last // 2}


# Where the test rows come from. paper_day7: "the first 6 days as the training set and the last day as the test
# set" (AdaHessian, arXiv 2006.00719v2, Sec. IV-A(e)). dlrm_half_day7: facebookresearch/dlrm's Kaggle split
# (data_utils.py), day 7's first half test, its second half validation.
TEST_SPLITS = ("paper_day7", "dlrm_half_day7")


def split_ranges(split: dict[str, int], test_split: str) -> dict[str, tuple[int, int]]:
    """Rows [start, stop) of train, test and val from :func:`split_sizes`'s consecutive layout.

    paper_day7 tests on all of day 7 and has no held-out validation rows: ``val`` is day 7 too, so the per-epoch
    evaluation is the paper's test curve (its Fig. 6) and must not be used to select a model.
    """
    if test_split not in TEST_SPLITS:
        raise ValueError(f"task.test_split={test_split}: expected one of {', '.join(TEST_SPLITS)}")
    train, test = split["train"], split["test"]
    rows = train + test + split["val"]
    if test_split == "paper_day7":
        return {"train": (0, train), "test": (train, rows), "val": (train, rows)}
    return {"train": (0, train), "test": (train, train + test), "val": (train + test, rows)}


def split_summary(ranges: dict[str, tuple[int, int]], test_split: str) -> dict[str, Any]:
    """The record's view of the split: its name and the rows of each part."""
    return {"test_split": test_split, "split": {k: hi - lo for k, (lo, hi) in ranges.items()}}


class FirstSeenCodes:
    """One column's dictionary: id -> code in first-seen order, growing block by block.

    Known ids are found by binary search in a few sorted runs (merged like a binary counter, so the cost is
    O(n log n) over the file); new ids get the next codes in the order of their first appearance.
    """

    def __init__(self) -> None:
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []
        self.size = 0

    def encode(self, ids: np.ndarray) -> np.ndarray:
        uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        codes = np.full(len(uniq), -1, dtype=np.int64)
        for keys, values in self.runs:
            pos = np.minimum(np.searchsorted(keys, uniq), len(keys) - 1)
            hit = keys[pos] == uniq
            codes[hit] = values[pos[hit]]
        new = np.flatnonzero(codes < 0)
        codes[new[np.argsort(first[new], kind="stable")]] = self.size + np.arange(len(new))
        self.size += len(new)
        if len(new):
            self.runs.append((uniq[new], codes[new]))
            while len(self.runs) > 1 and len(self.runs[-2][0]) <= 2 * len(self.runs[-1][0]):
                (k1, v1), (k2, v2) = self.runs.pop(), self.runs.pop()
                keys = np.concatenate((k2, k1))
                order = np.argsort(keys, kind="stable")
                self.runs.append((keys[order], np.concatenate((v2, v1))[order]))
        return codes[inverse.reshape(-1)].astype(np.int32)


class Progress:
    """rows, rows/s and ETA on stderr: redrawn in place on a terminal, every 10 % otherwise."""

    def __init__(self, label: str, total: int, quiet: bool = False) -> None:
        self.label, self.total, self.quiet = label, max(total, 1), quiet
        self.start = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.shown = -1

    def update(self, done: int) -> None:
        if self.quiet:
            return
        elapsed = time.perf_counter() - self.start
        rate = done / max(elapsed, 1e-9)
        eta = (self.total - done) / max(rate, 1e-9)
        line = (f"{self.label}: {done:,}/{self.total:,} rows ({100 * done / self.total:.0f}%), "
                f"{rate:,.0f} rows/s, ETA {eta:.0f}s")
        tenth = 10 * done // self.total
        if self.tty:
            print("\r" + line, end="", file=sys.stderr, flush=True)
        elif tenth > self.shown:
            print(line, file=sys.stderr, flush=True)
        self.shown = tenth

    def close(self) -> None:
        if self.tty and not self.quiet:
            print(file=sys.stderr)


def parsed_blocks(source: Path, parts: list[ByteRange], skip_bad_lines: bool, workers: int) -> Iterator[Block]:
    """Blocks in file order; with `workers > 1` parsed in that many processes, a bounded window ahead."""
    if workers <= 1:
        for part in parts:
            yield parse_range(source, part, skip_bad_lines)
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending: deque[Future[Block]] = deque()
        for part in parts:
            pending.append(pool.submit(parse_range, source, part, skip_bad_lines))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 1) - 1))


def cache_name(max_ind_range: int) -> str:
    return f"criteo_kaggle_v{CACHE_VERSION}_" + ("full" if max_ind_range <= 0 else f"mod{max_ind_range}")


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(cache_dir: Path) -> None:
    """Folders left by killed prepares (their pid is gone) are deleted; live ones are left alone."""
    for tmp in cache_dir.glob(".tmp-*"):
        pid = tmp.name.split("-")[1]
        if not pid.isdigit() or not _pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class Prepared:
    """A trusted cache folder and its manifest."""

    folder: Path
    manifest: dict[str, Any]


def build_cache(source: Path, folder: Path, max_ind_range: int, skip_bad_lines: bool, quiet: bool = False,
                block_bytes: int = BLOCK_BYTES, workers: int = 0) -> dict[str, Any]:
    """Parse `source` into `folder` (which must be new) and return the manifest (written last)."""
    start = time.perf_counter()
    workers = workers or default_workers()
    parts = byte_ranges(source, block_bytes)
    lines = sum(part.lines for part in parts)
    labels = np.lib.format.open_memmap(folder / "labels.npy", "w+", np.float32, (lines,))
    dense = np.lib.format.open_memmap(folder / "dense.npy", "w+", np.float32, (lines, N_DENSE))
    sparse = np.lib.format.open_memmap(folder / "sparse.npy", "w+", np.int32, (lines, N_SPARSE))
    dictionaries = [FirstSeenCodes() for _ in range(N_SPARSE)]
    progress = Progress(f"prepare {source}", lines, quiet)
    rows = skipped = seen = 0  # rows kept, lines skipped, lines read
    for block in parsed_blocks(source, parts, skip_bad_lines, workers):
        n = len(block.labels)
        ids = block.ids if max_ind_range <= 0 else np.where(block.ids >= 0, block.ids % max_ind_range, block.ids)
        labels[rows:rows + n] = block.labels
        dense[rows:rows + n] = block.dense
        for j, dictionary in enumerate(dictionaries):
            sparse[rows:rows + n, j] = dictionary.encode(ids[:, j])
        rows += n
        skipped += block.skipped
        seen += block.lines
        progress.update(seen)
    progress.close()
    for array in (labels, dense, sparse):
        array.flush()
    del labels, dense, sparse
    if rows == 0:
        raise DataError(f"{source}: no valid line among {lines:,} ({skipped:,} skipped as bad)")
    seconds = time.perf_counter() - start
    manifest = {
        "version": CACHE_VERSION, "layout": "kaggle",
        "source": {"path": str(source), **fingerprint(source)},
        "lines": lines, "rows": rows, "skipped_lines": skipped, "max_ind_range": max_ind_range,
        "table_sizes": [d.size for d in dictionaries], "split": split_sizes(rows),
        "seconds": round(seconds, 3), "lines_per_s": round(lines / max(seconds, 1e-9)), "workers": workers,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def is_current(manifest: dict[str, Any] | None, source: Path, max_ind_range: int) -> bool:
    return (manifest is not None and manifest.get("version") == CACHE_VERSION
            and manifest.get("max_ind_range") == max_ind_range
            and {k: manifest["source"].get(k) for k in ("size", "blake2b_sampled")} == fingerprint(source))


def ensure_prepared(data_dir: str | Path, cache_dir: str | Path | None = None, max_ind_range: int = -1,
                    skip_bad_lines: bool = False, quiet: bool = False, block_bytes: int = BLOCK_BYTES,
                    workers: int = 0) -> Prepared:
    """The cache for this source and `max_ind_range`: reused when current, else (re)built atomically."""
    source = find_source(data_dir)
    root = Path(cache_dir).expanduser() if cache_dir else source.parent / ".bench-cache"
    folder = root / cache_name(max_ind_range)
    manifest = read_manifest(folder)
    if is_current(manifest, source, max_ind_range):
        assert manifest is not None
        if manifest["skipped_lines"] and not skip_bad_lines:
            raise DataError(f"{source}: {manifest['skipped_lines']:,} bad lines were skipped when this cache "
                            f"({folder}) was built with task.skip_bad_lines=true; set it again to use the cache, "
                            "or fix the file")
        return Prepared(folder, manifest)
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(root)
    tmp = root / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        if not quiet and manifest is not None:
            print(f"{source} changed since {folder} was built; preparing it again", file=sys.stderr)
        manifest = build_cache(source, tmp, max_ind_range, skip_bad_lines, quiet, block_bytes, workers)
        theirs = read_manifest(folder)
        if is_current(theirs, source, max_ind_range):  # another run of a sweep finished first: use its cache
            assert theirs is not None
            return Prepared(folder, theirs)
        if folder.exists():
            old = root / f".tmp-{os.getpid()}-old-{uuid.uuid4().hex[:8]}"
            folder.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not quiet:
        print(f"prepared {manifest['rows']:,} rows ({manifest['skipped_lines']:,} bad lines skipped) from {source} "
              f"in {manifest['seconds']:.1f}s, {manifest['lines_per_s']:,} lines/s -> {folder}", file=sys.stderr)
    return Prepared(folder, manifest)


def prepare_criteo(argv: list[str]) -> int:
    """`bench data prepare criteo_dlrm DATA_DIR [--cache-dir DIR] [--max-ind-range N] [--skip-bad-lines]`."""
    parser = argparse.ArgumentParser(prog="bench data prepare criteo_dlrm",
                                     description="Preprocess Criteo Kaggle train.txt into the DLRM cache.")
    parser.add_argument("data_dir", help="the folder holding train.txt (Kaggle format)")
    parser.add_argument("--cache-dir", default=None, help="default: DATA_DIR/.bench-cache")
    parser.add_argument("--max-ind-range", type=int, default=-1, help="hash ids modulo N first (-1: off)")
    parser.add_argument("--skip-bad-lines", action="store_true", help="skip and count malformed lines")
    parser.add_argument("--workers", type=int, default=0, help="parsing processes (0: cores - 1, at most 8)")
    args = parser.parse_args(argv)
    prepared = ensure_prepared(args.data_dir, args.cache_dir, args.max_ind_range, args.skip_bad_lines,
                               workers=args.workers)
    m = prepared.manifest
    print(json.dumps({"cache": str(prepared.folder), "rows": m["rows"], "skipped_lines": m["skipped_lines"],
                      "split": m["split"], "table_sizes": m["table_sizes"], "seconds": m["seconds"],
                      "lines_per_s": m["lines_per_s"]}))
    return 0

