"""`bench data prepare wmt14 RAW_DIR OUT_DIR`: fairseq's examples/translation/prepare-wmt14en2de.sh in Python
(read from facebookresearch/fairseq at commit cecdd97f, the script's default and `--icml17` paths).

The same steps, in the same order, streamed line by line (WMT14 is 4.5 M sentence pairs):
1. train: europarl-v7, commoncrawl and news-commentary-v12 (`--icml17`: v9) .de-en, concatenated per language,
   each line through normalize-punctuation.perl L | remove-non-printing-char.perl | tokenizer.perl -a -l L
   (aggressive hyphen splitting, escaping on);
2. test: the `<seg>` text of test-full/newstest2014-deen-{src.en,ref.de}.sgm, ’ -> ', tokenizer.perl -a only;
3. valid = every 100th tokenized training line (awk NR%100 == 0), train = the rest;
4. joint BPE: learn_bpe.py -s 40000 on train.en followed by train.de, applied to train, valid and test;
5. clean-corpus-n.perl -ratio 1.5 with lengths 1..250 on the BPE'd train and valid (BPE pieces counted); the
   test set is not cleaned. Nothing is lower-cased.
RAW_DIR is the script's orig/ folder: the downloaded .tgz files, unpacked or not. Output: OUT_DIR/{train,valid,
test}.{en,de} and OUT_DIR/code, written as OUT_DIR.partial and renamed when complete. `--workers` processes run
the per-line steps in order-keeping chunks, as tokenizer.perl -threads does.
"""

from __future__ import annotations

import argparse
import io
import shutil
import tarfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from rich.progress import Progress

from tasks.base import DataError
from tasks.nmt.moses import MosesPipeline, clean_pairs, segments
from tasks.nmt.staging import (
    ApplyBpe,
    LinePool,
    Tick,
    atomic_folder,
    default_workers,
    learn_joint_bpe,
    lines_of,
    read_text_lines,
    write_lines,
)

SRC, TGT = "en", "de"
MERGES = 40_000  # BPE_TOKENS=40000
VALID_EVERY = 100
CLEAN = {"ratio": 1.5, "min_len": 1, "max_len": 250}


@dataclass(frozen=True)
class Release:
    """One file the script reads from orig/: its path there (= its name in the archive) and where it comes from."""

    member: str
    archive: str
    url: str


def train_corpora(icml17: bool) -> list[tuple[str, str, str]]:
    """CORPORA, FILES and URLS of the script: (orig/ prefix, archive, url) per training corpus."""
    news = (("training/news-commentary-v9.de-en", "training-parallel-nc-v9.tgz",
             "http://statmt.org/wmt14/training-parallel-nc-v9.tgz") if icml17 else
            ("training/news-commentary-v12.de-en", "training-parallel-nc-v12.tgz",
             "http://data.statmt.org/wmt17/translation-task/training-parallel-nc-v12.tgz"))
    return [("training/europarl-v7.de-en", "training-parallel-europarl-v7.tgz",
             "http://statmt.org/wmt13/training-parallel-europarl-v7.tgz"),
            ("commoncrawl.de-en", "training-parallel-commoncrawl.tgz",
             "http://statmt.org/wmt13/training-parallel-commoncrawl.tgz"),
            news]


def train_files(icml17: bool, lang: str) -> list[Release]:
    return [Release(f"{prefix}.{lang}", archive, url) for prefix, archive, url in train_corpora(icml17)]


def test_file(lang: str) -> Release:
    side = "src" if lang == SRC else "ref"
    return Release(f"test-full/newstest2014-deen-{side}.{lang}.sgm", "test-full.tgz",
                   "http://statmt.org/wmt14/test-full.tgz")


@contextmanager
def open_release(raw: Path, release: Release) -> Iterator[Iterator[str]]:
    """The file's lines from the unpacked orig/ folder, or streamed out of its .tgz when not unpacked."""
    path = raw / release.member
    if path.is_file():
        with path.open(encoding="utf-8", errors="replace", newline="\n") as f:
            yield lines_of(f)
        return
    archive = raw / release.archive
    if not archive.is_file():
        raise DataError(f"{path}: missing, and no {archive} to read it from; download {release.url} into {raw} "
                        "(RAW_DIR is prepare-wmt14en2de.sh's orig/ folder: the release .tgz files, unpacked or not)")
    with tarfile.open(archive) as tar:
        info = next((m for m in tar if m.isfile() and m.name.removeprefix("./") == release.member), None)
        if info is None:
            raise DataError(f"{archive}: no {release.member} in the archive; download {release.url} again "
                            "(a partial or different download)")
        with io.TextIOWrapper(tar.extractfile(info), encoding="utf-8", errors="replace", newline="\n") as f:
            yield lines_of(f)


def release_lines(raw: Path, releases: Iterable[Release]) -> Iterator[str]:
    """`cat orig/A orig/B ...`, line by line."""
    for release in releases:
        with open_release(raw, release) as lines:
            yield from lines


def count_aligned(raw: Path, icml17: bool) -> tuple[int, int]:
    """Training and test sentence counts, after checking every file is there and line-aligned with its pair."""
    n_train = 0
    for en, de in zip(train_files(icml17, SRC), train_files(icml17, TGT), strict=True):
        counts = [sum(1 for _ in release_lines(raw, [release])) for release in (en, de)]
        if counts[0] != counts[1]:
            raise DataError(f"{raw / en.member} has {counts[0]} lines but {raw / de.member} has {counts[1]}; the "
                            f"two sides must be line-aligned (download {en.url} again)")
        n_train += counts[0]
    tests = [sum(1 for _ in segments(release_lines(raw, [test_file(lang)]))) for lang in (SRC, TGT)]
    if tests[0] != tests[1]:
        raise DataError(f"{raw / test_file(SRC).member} has {tests[0]} <seg> lines but {raw / test_file(TGT).member} "
                        f"has {tests[1]}; they must be aligned (download {test_file(SRC).url} again)")
    return n_train, tests[0]


def split_every(lines: Iterable[str], every: int, train: Path, valid: Path, tick: Tick) -> None:
    """awk '{if (NR%EVERY == 0) print $0;}' > valid and '{if (NR%EVERY != 0) ...}' > train, in one pass."""
    with train.open("w", encoding="utf-8", newline="\n") as t, valid.open("w", encoding="utf-8", newline="\n") as v:
        for n, line in enumerate(lines, 1):
            (v if n % every == 0 else t).write(line + "\n")
            tick(1)


def write_clean(src: Path, tgt: Path, out_src: Path, out_tgt: Path, tick: Tick) -> int:
    """clean-corpus-n.perl -ratio 1.5 SRC-TGT-prefix en de OUT-prefix 1 250."""
    def pairs() -> Iterator[tuple[str, str]]:
        for pair in zip(read_text_lines(src), read_text_lines(tgt), strict=True):
            tick(1)
            yield pair

    kept = 0
    with out_src.open("w", encoding="utf-8", newline="\n") as s, out_tgt.open("w", encoding="utf-8", newline="\n") as t:
        for a, b in clean_pairs(pairs(), **CLEAN):
            s.write(a + "\n")
            t.write(b + "\n")
            kept += 1
    return kept


def run_script(raw: Path, folder: Path, icml17: bool, merges: int, pool: LinePool,
               stage: Callable[[str], Tick]) -> dict[str, int]:
    """The script's steps from "pre-processing train data..." on, its $tmp being folder/tmp; the split sizes."""
    tmp = folder / "tmp"
    tmp.mkdir()
    for lang in (SRC, TGT):
        tokenized = pool.map(MosesPipeline(lang, normalize=True, aggressive=True),
                             release_lines(raw, train_files(icml17, lang)))
        split_every(tokenized, VALID_EVERY, tmp / f"train.{lang}", tmp / f"valid.{lang}", stage(f"tokenize {lang}"))
        test = pool.map(MosesPipeline(lang, aggressive=True), segments(release_lines(raw, [test_file(lang)])))
        write_lines(tmp / f"test.{lang}", test, stage(f"tokenize test.{lang}"))
    stage(f"learn BPE ({merges} merges)")
    codes = learn_joint_bpe(chain(*(read_text_lines(tmp / f"train.{lang}") for lang in (SRC, TGT))), merges)
    (folder / "code").write_text(codes, encoding="utf-8")
    for lang in (SRC, TGT):
        for split in ("train", "valid", "test"):
            bpe = pool.map(ApplyBpe(folder / "code"), read_text_lines(tmp / f"{split}.{lang}"))
            write_lines(tmp / f"bpe.{split}.{lang}", bpe, stage(f"apply BPE to {split}.{lang}"))
    sizes = {split: write_clean(*(tmp / f"bpe.{split}.{lang}" for lang in (SRC, TGT)),
                                *(folder / f"{split}.{lang}" for lang in (SRC, TGT)), stage(f"clean {split}"))
             for split in ("train", "valid")}
    for lang in (SRC, TGT):
        (tmp / f"bpe.test.{lang}").rename(folder / f"test.{lang}")
    sizes["test"] = sum(1 for _ in read_text_lines(folder / f"test.{SRC}"))
    shutil.rmtree(tmp)
    return sizes


def prepare_wmt14(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench data prepare wmt14", description=__doc__.splitlines()[0])
    parser.add_argument("raw_dir", type=Path, help="prepare-wmt14en2de.sh's orig/: the release .tgz files or their "
                        "unpacked contents (training/, commoncrawl.de-en.*, test-full/)")
    parser.add_argument("out_dir", type=Path, help="where {train,valid,test}.{en,de} and code are written")
    parser.add_argument("--merges", type=int, default=MERGES, help="BPE merges (prepare-wmt14en2de.sh: 40000)")
    parser.add_argument("--icml17", action="store_true",
                        help="news-commentary-v9 instead of v12, as the script's --icml17 (ConvS2S's data)")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="processes for tokenization and BPE (default: CPUs, at most 8)")
    args = parser.parse_args(argv)
    if args.merges < 1:
        raise DataError(f"--merges={args.merges}: must be >= 1 (prepare-wmt14en2de.sh uses 40000)")
    if args.workers < 1:
        raise DataError(f"--workers={args.workers}: must be >= 1")
    raw, out = args.raw_dir.expanduser(), args.out_dir.expanduser()
    if not raw.is_dir():
        raise DataError(f"{raw}: not a folder; RAW_DIR is prepare-wmt14en2de.sh's orig/ folder with the release "
                        ".tgz files (unpacked or not)")
    n_train, n_test = count_aligned(raw, args.icml17)
    total = 2 * (2 * n_train + 2 * n_test) + n_train  # tokenize, apply BPE, clean
    with atomic_folder(out) as folder, Progress(transient=True) as progress, LinePool(args.workers) as pool:
        bar = progress.add_task("prepare wmt14", total=total)

        def stage(description: str) -> Tick:
            progress.update(bar, description=description)
            return lambda n: progress.advance(bar, n)

        sizes = run_script(raw, folder, args.icml17, args.merges, pool, stage)
    print(f"prepared {out}: " + ", ".join(f"{split} {n}" for split, n in sizes.items())
          + f" sentence pairs; train with task=wmt14_transformer task.data_dir={out}")
    return 0
