"""GLUE's TSV files as its download script leaves them, with their quirks.

Read with quoting off (csv.QUOTE_NONE): QQP, MNLI and others have fields that open a quote and never close
it, which a default CSV reader would merge with the following lines. CoLA's train/dev have no header; MRPC's
header starts with a UTF-8 byte-order mark. A row with the wrong number of columns is never shifted into
place: it is an error naming the file and line, or (skip_bad=True) skipped and counted.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tasks.base import DataError
from tasks.glue.specs import Columns, GlueSpec

LAYOUT = ("expected the glue_data layout made by GLUE's download_glue_data.py: DATA_DIR/<TASK>/train.tsv and "
          "dev.tsv (MNLI: dev_matched.tsv, dev_mismatched.tsv)")
csv.field_size_limit(sys.maxsize)


@dataclass
class Split:
    """One split's examples: text pairs, labels as strings (None for unlabelled test sets), skipped rows."""

    path: Path
    text_a: list[str] = field(default_factory=list)
    text_b: list[str] | None = None
    labels: list[str] | None = None
    skipped_lines: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.text_a)


def _index(columns: Columns, header: list[str] | None, key: str | int | None, path: Path) -> int | None:
    if key is None or isinstance(key, int):
        return key
    assert header is not None
    if key not in header:
        raise DataError(f"{path}: header has no column {key!r} (found {', '.join(header)}); {LAYOUT}")
    return header.index(key)


def read_split(path: Path, columns: Columns, skip_bad: bool = False, labelled: bool = True) -> Split:
    """Every data row of one TSV file; `labelled=False` reads a test set whose label column is absent."""
    if not path.is_file():
        raise DataError(f"{path}: file missing; {LAYOUT}")
    split = Split(path, text_b=[] if columns.text_b is not None else None, labels=[] if labelled else None)
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows, None) if columns.header else None
        if columns.header and not header:
            raise DataError(f"{path}: empty file, expected a header line; {LAYOUT}")
        width = len(header) if header is not None else columns.n_columns
        a = _index(columns, header, columns.text_a, path)
        b = _index(columns, header, columns.text_b, path)
        y = _index(columns, header, columns.label, path) if labelled else None
        for row in rows:
            if not row:
                continue
            if len(row) != width:
                if not skip_bad:
                    raise DataError(f"{path}:{rows.line_num}: {len(row)} tab-separated columns, expected {width}; "
                                    "fix or delete the line, or set task.skip_bad_rows=true to skip such rows")
                split.skipped_lines.append(rows.line_num)
                continue
            split.text_a.append(row[a])
            if b is not None:
                split.text_b.append(row[b])
            if y is not None:
                split.labels.append(row[y])
    return split


def check_labels(split: Split, spec: GlueSpec) -> None:
    """Labels must be in the task's set (classification) or in its score range (STS-B)."""
    assert split.labels is not None
    for i, label in enumerate(split.labels):
        if spec.labels is not None:
            ok = label in spec.labels
        else:
            try:
                ok = spec.score_range[0] <= float(label) <= spec.score_range[1]
            except ValueError:
                ok = False
        if not ok:
            expected = ", ".join(spec.labels) if spec.labels else f"a score in {list(spec.score_range)}"
            raise DataError(f"{split.path}: data row {i + 1} has label {label!r}, expected {expected} for "
                            f"{spec.name}; is this the right task folder?")


def task_folder(data_dir: str | Path, spec: GlueSpec) -> Path:
    """Accept the glue_data folder or the task's own folder."""
    root = Path(data_dir).expanduser()
    for candidate in (root / spec.folder, root):
        if (candidate / spec.train_file).is_file():
            return candidate
    raise DataError(f"task.data_dir={root}: no {spec.folder}/{spec.train_file} there; {LAYOUT}")


def read_task(data_dir: str | Path, spec: GlueSpec, skip_bad: bool = False) -> tuple[Split, dict[str, Split]]:
    """The training split and every scored dev split (MNLI: matched and mismatched), labels checked."""
    folder = task_folder(data_dir, spec)
    train = read_split(folder / spec.train_file, spec.columns, skip_bad)
    devs = {prefix: read_split(folder / name, spec.columns, skip_bad) for prefix, name in spec.dev_files}
    for split in (train, *devs.values()):
        check_labels(split, spec)
    return train, devs
