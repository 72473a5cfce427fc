"""Find ImageNet on disk in the layouts users have, and index its files once into a fingerprinted cache.

Two layouts are read in place:

- class folders (pytorch/examples, torchvision ImageFolder): `DATA_DIR/train/<wnid>/*.JPEG` and
  `DATA_DIR/val/<wnid>/*.JPEG`;
- Kaggle's ILSVRC download: `DATA_DIR/ILSVRC/Data/CLS-LOC/train/<wnid>/`, a flat `.../CLS-LOC/val/` and
  `DATA_DIR/LOC_val_solution.csv` (`ImageId,PredictionString`; the label is the first token of the string).

Classes are the sorted train wnids and files are listed in ImageFolder's order, so label i means what it means to
torchvision. Listing 1.28 M files takes minutes on a network disk, so the index is written once (atomically) beside
the data, or in `cache_dir`, and reused while the fingerprint of the folders (every class folder's mtime, the
counts, the CSV's mtime and size) is unchanged: adding, removing or renaming a file changes its folder's mtime.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tasks.base import DataError

KAGGLE_BASE = Path("ILSVRC", "Data", "CLS-LOC")
VAL_SOLUTION = "LOC_val_solution.csv"
CACHE_NAME = ".adahessian-bench-imagenet-index.json.gz"
CACHE_VERSION = 1
# torchvision.datasets.folder.IMG_EXTENSIONS: what ImageFolder lists.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
LAYOUTS = ("expected DATA_DIR/train/<wnid>/*.JPEG and DATA_DIR/val/<wnid>/*.JPEG (class folders, as pytorch/examples "
           f"uses), or Kaggle's DATA_DIR/{KAGGLE_BASE}/train/<wnid>/ with a flat DATA_DIR/{KAGGLE_BASE}/val/ and "
           f"DATA_DIR/{VAL_SOLUTION}")


@dataclass(frozen=True)
class ImageIndex:
    """Every train and val image as (path relative to `base`, label); labels index `classes` (sorted wnids)."""

    layout: str
    base: Path
    classes: list[str]
    train: list[tuple[str, int]]
    val: list[tuple[str, int]]
    cache_path: Path | None = None

    def path(self, relative: str) -> Path:
        return self.base / relative


@dataclass(frozen=True)
class Location:
    """Where the split folders of one data_dir are, and how val is labelled (class folders or the CSV)."""

    layout: str
    base: Path
    val_csv: Path | None


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def class_folders(folder: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir(follow_symlinks=True))


def locate(data_dir: str | Path) -> Location:
    """Recognise the layout under `data_dir`, or say what was expected there."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"task.data_dir={root}: no such folder; {LAYOUTS}")
    if (root / KAGGLE_BASE).is_dir():
        layout, base = "kaggle", root / KAGGLE_BASE
    elif (root / "train").is_dir():
        layout, base = "class-folders", root
    else:
        raise DataError(f"task.data_dir={root}: no train/ or {KAGGLE_BASE}/ folder there; {LAYOUTS}")
    for split in ("train", "val"):
        if not (base / split).is_dir():
            raise DataError(f"{base / split}: folder missing; {LAYOUTS}")
    if class_folders(base / "val"):
        return Location(layout, base, None)
    # A flat val/ (Kaggle's, or the raw ILSVRC2012 val tar): labelled by LOC_val_solution.csv.
    candidates = [root / VAL_SOLUTION, base / VAL_SOLUTION, *([base.parents[2] / VAL_SOLUTION] * (layout == "kaggle"))]
    csv_path = next((p for p in candidates if p.is_file()), None)
    if csv_path is None:
        raise DataError(f"{base / 'val'}: a flat val folder needs {VAL_SOLUTION} (looked in "
                        f"{', '.join(str(p.parent) for p in dict.fromkeys(candidates))}); get it with the Kaggle "
                        "ImageNet download, or sort val/ into class folders (pytorch/examples' valprep.sh)")
    return Location(layout, base, csv_path)


def fingerprint(loc: Location) -> str:
    """Cheap to compute (one stat per class folder), and changed by any file added, removed or renamed."""
    parts: list[str] = [loc.layout, str(loc.base.resolve())]
    for split in ("train", "val"):
        folder = loc.base / split
        names = class_folders(folder)
        parts.append(f"{split}:{len(names)}:{folder.stat().st_mtime_ns}")
        parts += [f"{name}:{(folder / name).stat().st_mtime_ns}" for name in names]
    if loc.val_csv is not None:
        stat = loc.val_csv.stat()
        parts.append(f"{loc.val_csv.resolve()}:{stat.st_mtime_ns}:{stat.st_size}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def list_class_folders(split_dir: Path, classes: list[str]) -> list[tuple[str, int]]:
    """ImageFolder's make_dataset: classes in sorted order, each folder walked in sorted order."""
    items: list[tuple[str, int]] = []
    for label, wnid in enumerate(classes):
        found = []
        for folder, _, files in sorted(os.walk(split_dir / wnid, followlinks=True)):
            rel = Path(folder).relative_to(split_dir.parent)
            found += [(str(rel / name), label) for name in sorted(files) if is_image(name)]
        if not found:
            raise DataError(f"{split_dir / wnid}: class folder has no images ({', '.join(IMAGE_EXTENSIONS)}); "
                            "remove the folder or restore its files")
        items += found
    return items


def read_val_solution(csv_path: Path, val_dir: Path, classes: list[str]) -> list[tuple[str, int]]:
    """Kaggle's LOC_val_solution.csv: one row per val image; the label is PredictionString's first token."""
    label_of = {wnid: i for i, wnid in enumerate(classes)}
    rows: dict[str, int] = {}
    with csv_path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
            raise DataError(f"{csv_path}: expected the header ImageId,PredictionString (Kaggle's {VAL_SOLUTION})")
        for line, row in enumerate(reader, start=2):
            tokens = row[1].split() if len(row) >= 2 else []
            if not tokens:
                raise DataError(f"{csv_path}:{line}: expected ImageId,PredictionString with a wnid first")
            if tokens[0] not in label_of:
                raise DataError(f"{csv_path}:{line}: class {tokens[0]} has no folder in {val_dir.parent / 'train'}; "
                                "the train and val class sets must be the same")
            rows[row[0].strip()] = label_of[tokens[0]]
    files = {Path(name).stem: name for name in os.listdir(val_dir) if is_image(name)}
    missing = sorted(set(rows) - set(files))
    if missing:
        raise DataError(f"{val_dir / missing[0]}.JPEG: listed in {csv_path} but missing ({len(missing)} such); "
                        "restore the val images or use the CSV that came with them")
    unlabelled = sorted(set(files) - set(rows))
    if unlabelled:
        raise DataError(f"{val_dir / files[unlabelled[0]]}: no row in {csv_path} ({len(unlabelled)} such); "
                        "an unlabelled val image cannot be scored: remove it or use the matching CSV")
    unseen = sorted(set(classes) - {classes[label] for label in rows.values()})
    if unseen:
        raise DataError(f"{csv_path}: no val image of class {unseen[0]} ({len(unseen)} such) though train has it; "
                        "the train and val class sets must be the same")
    return [(str(Path("val") / files[stem]), rows[stem]) for stem in sorted(rows)]


def build_index(loc: Location) -> ImageIndex:
    classes = class_folders(loc.base / "train")
    if not classes:
        raise DataError(f"{loc.base / 'train'}: no class folders; {LAYOUTS}")
    if loc.val_csv is None:
        val_classes = class_folders(loc.base / "val")
        if val_classes != classes:
            only_train = sorted(set(classes) - set(val_classes))
            only_val = sorted(set(val_classes) - set(classes))
            raise DataError(f"{loc.base}: train/ and val/ have different class folders (only in train: "
                            f"{', '.join(only_train[:3]) or '-'}; only in val: {', '.join(only_val[:3]) or '-'}); "
                            "both splits need the same wnid folders")
        val = list_class_folders(loc.base / "val", classes)
    else:
        val = read_val_solution(loc.val_csv, loc.base / "val", classes)
    return ImageIndex(loc.layout, loc.base, classes, list_class_folders(loc.base / "train", classes), val)


def cache_path_for(loc: Location, cache_dir: str | None) -> list[Path]:
    """Where the index may live, in order: `cache_dir`, else beside the data, else the user's cache folder."""
    key = hashlib.sha256(str(loc.base.resolve()).encode()).hexdigest()[:16]
    named = f"imagenet-index-{key}.json.gz"
    if cache_dir:
        return [Path(cache_dir).expanduser() / named]
    user_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "adahessian-bench"
    return [loc.base / CACHE_NAME, user_cache / named]


def write_atomic(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_cache(path: Path, key: str) -> ImageIndex | None:
    try:
        doc = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, ValueError, EOFError):
        return None
    if doc.get("version") != CACHE_VERSION or doc.get("fingerprint") != key:
        return None
    return ImageIndex(doc["layout"], Path(doc["base"]), doc["classes"], [tuple(x) for x in doc["train"]],
                      [tuple(x) for x in doc["val"]], path)


def load_index(data_dir: str | Path, cache_dir: str | None = None, quiet: bool = False) -> ImageIndex:
    """The index of `data_dir`, from the cache when the folders have not changed since it was written."""
    loc = locate(data_dir)
    key = fingerprint(loc)
    candidates = cache_path_for(loc, cache_dir)
    for path in candidates:
        if path.is_file() and (index := read_cache(path, key)) is not None:
            return index
    if not quiet:
        print(f"indexing ImageNet files under {loc.base} (once; cached)", file=sys.stderr)
    index = build_index(loc)
    doc = {"version": CACHE_VERSION, "fingerprint": key, "layout": index.layout, "base": str(index.base),
           "classes": index.classes, "train": index.train, "val": index.val}
    payload = gzip.compress(json.dumps(doc).encode(), compresslevel=1)
    for path in candidates:
        try:
            write_atomic(path, payload)
        except OSError:
            continue  # a read-only data folder: try the next place
        return ImageIndex(index.layout, index.base, index.classes, index.train, index.val, path)
    return index


def prepare(argv: list[str]) -> int:
    """`bench data prepare imagenet DATA_DIR [--cache-dir DIR]`: build (or check) the file index ahead of a run."""
    parser = argparse.ArgumentParser(prog="bench data prepare imagenet", description=prepare.__doc__)
    parser.add_argument("data_dir", help="the folder holding train/ + val/, or Kaggle's ILSVRC/ + LOC_val_solution.csv")
    parser.add_argument("--cache-dir", help="where to keep the index (default: beside the data)")
    args = parser.parse_args(argv)
    index = load_index(args.data_dir, args.cache_dir)
    print(f"{index.layout} layout: {len(index.classes)} classes, {len(index.train)} train and {len(index.val)} val "
          f"images; index {index.cache_path or 'not cached (no writable place)'}")
    return 0
