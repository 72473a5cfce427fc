"""`bench data prepare multi30k RAW_DIR OUT_DIR`: the Multi30k task-1 release (German-English image captions) into
the text layout the translation task reads, by the steps of our IWSLT14 preparation that apply.

Input: train, val and test_2016_flickr .{de,en}, gzipped or plain, line-aligned (github.com/multi30k/dataset,
data/task1/raw). Steps: Moses-tokenize (sacremoses, escaping as tokenizer.perl), lower-case, joint BPE (subword-nmt,
learned on train.de + train.en) applied to every split. Unlike prepare-iwslt14.sh there is no clean-corpus-n pass
(Multi30k's captions are short and curated; the study uses all 29,000 training pairs) and no valid split carved out
of train (the release has its own). Output: OUT_DIR/{train,valid,test}.{de,en} + code, written atomically.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

from rich.progress import Progress

from tasks.base import DataError
from tasks.nmt.prepare import moses_tokenize, write_bpe_layout
from tasks.nmt.staging import Tick, text_lines
from tasks.nmt.text import SPLITS

LANGS = ("de", "en")
RAW_NAMES = {"train": "train", "valid": "val", "test": "test_2016_flickr"}
DEFAULT_MERGES = 10_000
LAYOUT = ("expected the Multi30k task-1 release: RAW_DIR/{train,val,test_2016_flickr}.{de,en}[.gz] "
          "(github.com/multi30k/dataset, data/task1/raw)")


def raw_path(raw: Path, name: str) -> Path:
    """NAME.gz or plain NAME in RAW_DIR; DataError naming the expected layout when neither is there."""
    for path in (raw / f"{name}.gz", raw / name):
        if path.is_file():
            return path
    raise DataError(f"{raw}: no {name}[.gz]; {LAYOUT}")


def read_raw(path: Path) -> list[str]:
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: not a readable gzip file ({exc}); {LAYOUT}") from None
    return text_lines(data.decode("utf-8", errors="replace"))


def read_release(raw: Path) -> dict[str, dict[str, list[str]]]:
    """split -> lang -> raw lines, every split checked line-aligned."""
    if not raw.is_dir():
        raise DataError(f"{raw}: not a folder; {LAYOUT}")
    paths = {split: {lang: raw_path(raw, f"{name}.{lang}") for lang in LANGS} for split, name in RAW_NAMES.items()}
    release = {split: {lang: read_raw(path) for lang, path in by_lang.items()} for split, by_lang in paths.items()}
    for split, by_lang in release.items():
        sizes = {lang: len(lines) for lang, lines in by_lang.items()}
        if len(set(sizes.values())) != 1 or not by_lang["de"]:
            raise DataError(f"{raw}: {RAW_NAMES[split]}.{{de,en}} have {sizes['de']} and {sizes['en']} lines; they "
                            "must be non-empty and line-aligned")
    return release


def prepare_multi30k(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench data prepare multi30k", description=__doc__.splitlines()[0])
    parser.add_argument("raw_dir", type=Path, help="the folder with train/val/test_2016_flickr.{de,en}[.gz]")
    parser.add_argument("out_dir", type=Path, help="where {train,valid,test}.{de,en} and code are written")
    parser.add_argument("--merges", type=int, default=DEFAULT_MERGES,
                        help=f"joint BPE merges (default {DEFAULT_MERGES}, prepare-iwslt14.sh's value)")
    args = parser.parse_args(argv)
    if args.merges < 1:
        raise DataError(f"--merges={args.merges}: must be >= 1 (e.g. {DEFAULT_MERGES})")
    release = read_release(args.raw_dir.expanduser())
    total = 4 * sum(len(release[split]["de"]) for split in SPLITS)  # tokenize + write, both sides
    with Progress(transient=True) as progress:
        bar = progress.add_task("prepare multi30k", total=total)
        tick: Tick = lambda n: progress.advance(bar, n)  # noqa: E731
        splits = {split: tuple([s.lower() for s in moses_tokenize(release[split][lang], lang, tick)]
                               for lang in LANGS) for split in SPLITS}
        progress.update(bar, description=f"learn BPE ({args.merges} merges)")
        write_bpe_layout(splits, args.out_dir.expanduser(), *LANGS, args.merges, tick)
    sizes = ", ".join(f"{split} {len(splits[split][0])}" for split in SPLITS)
    print(f"prepared {args.out_dir}: {sizes} sentence pairs; train with task.data_dir={args.out_dir}")
    return 0
