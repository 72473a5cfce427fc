"""`bench data prepare iwslt14 RAW_DIR OUT_DIR`: fairseq's examples/translation/prepare-iwslt14.sh in Python.

The same steps, in the same order, on the IWSLT14 release (`de-en/` from de-en.tgz): drop the `<url>`,
`<talkid>`, `<keywords>` lines and the title/description tags of train.tags.de-en.*, Moses-tokenize (sacremoses,
escaping as tokenizer.perl does), clean-corpus-n.perl -ratio 1.5 with lengths 1..175, lower-case; the
`<seg>` text of IWSLT14.TED*.xml likewise (’ becomes '); valid = every 23rd training line, test = dev2010 +
TEDX.dev2012 + tst2010..2012; joint BPE (subword-nmt, 10,000 merges by default) learned on train.de + train.en
and applied to every split. Output: OUT_DIR/{train,valid,test}.{de,en} and OUT_DIR/code, written to a
temporary folder first and renamed, so an interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import re
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path

from rich.progress import Progress

from tasks.base import DataError
from tasks.nmt.moses import MosesPipeline, clean_corpus, segments
from tasks.nmt.staging import ApplyBpe, Tick, atomic_folder, learn_joint_bpe, no_tick, text_lines, write_lines
from tasks.nmt.text import SPLITS

PAIR = "de-en"
TRAIN_FILE = "train.tags.de-en.{lang}"
TEST_SETS = ("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010", "IWSLT14.TED.tst2011",
             "IWSLT14.TED.tst2012")
DROP_TAGS = ("<url>", "<talkid>", "<keywords>")
STRIP_TAGS = re.compile(r"</?title>|</?description>")
VALID_EVERY = 23
LAYOUT = (f"expected the IWSLT14 release: RAW_DIR/{PAIR}/ (or RAW_DIR itself, or de-en.tgz) with "
          f"{TRAIN_FILE.format(lang='{de,en}')} and {', '.join(TEST_SETS)}.de-en.{{de,en}}.xml "
          "(https://wit3.fbk.eu/archive/2014-01/texts/de/en/de-en.tgz, as prepare-iwslt14.sh downloads it)")


def moses_tokenize(lines: Iterable[str], lang: str, tick: Tick) -> list[str]:
    """tokenizer.perl -l LANG (escaping on, no aggressive hyphen splitting)."""
    tokenize = MosesPipeline(lang)
    out = [tokenize(line) for line in lines]
    tick(len(out))
    return out


def train_lines(text: str) -> list[str]:
    lines = [line for line in text_lines(text) if not any(tag in line for tag in DROP_TAGS)]
    return [STRIP_TAGS.sub("", line) for line in lines]


def xml_segments(text: str) -> list[str]:
    return list(segments(text_lines(text)))


def write_bpe_layout(splits: dict[str, tuple[list[str], list[str]]], out_dir: Path, src: str, tgt: str,
                     merges: int, tick: Tick = no_tick) -> None:
    """Joint BPE over tokenized splits into the text layout {train,valid,test}.{src,tgt} plus `code`, atomically."""
    codes = learn_joint_bpe([*splits["train"][0], *splits["train"][1]], merges)
    with atomic_folder(out_dir) as tmp:
        (tmp / "code").write_text(codes, encoding="utf-8")
        bpe = ApplyBpe(tmp / "code")
        for split in SPLITS:
            for lang, lines in zip((src, tgt), splits[split], strict=True):
                write_lines(tmp / f"{split}.{lang}", map(bpe, lines), tick)


def raw_reader(raw: Path) -> Callable[[str], str]:
    """The release's files by name, from the unpacked folder or straight from de-en.tgz."""
    if raw.is_file() and tarfile.is_tarfile(raw):
        wanted = {TRAIN_FILE.format(lang=lang) for lang in PAIR.split("-")}
        wanted |= {f"{name}.{PAIR}.{lang}.xml" for name in TEST_SETS for lang in PAIR.split("-")}
        with tarfile.open(raw) as archive:
            texts = {Path(m.name).name: archive.extractfile(m).read().decode("utf-8")
                     for m in archive.getmembers() if m.isfile() and Path(m.name).name in wanted}

        def read_member(name: str) -> str:
            if name not in texts:
                raise DataError(f"{raw}: no {name} in the archive; {LAYOUT}")
            return texts[name]
        return read_member
    folder = raw / PAIR if (raw / PAIR).is_dir() else raw
    if not folder.is_dir():
        raise DataError(f"{raw}: not a folder or .tgz; {LAYOUT}")

    def read_file(name: str) -> str:
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path}: file missing; {LAYOUT}")
        return path.read_text(encoding="utf-8")
    return read_file


def prepare_iwslt14(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench data prepare iwslt14", description=__doc__.splitlines()[0])
    parser.add_argument("raw_dir", type=Path, help="the unpacked IWSLT14 de-en release, or de-en.tgz")
    parser.add_argument("out_dir", type=Path, help="where {train,valid,test}.{de,en} and code are written")
    parser.add_argument("--merges", type=int, default=10_000, help="BPE merges (prepare-iwslt14.sh: 10000)")
    args = parser.parse_args(argv)
    if args.merges < 1:
        raise DataError(f"--merges={args.merges}: must be >= 1 (prepare-iwslt14.sh uses 10000)")
    read = raw_reader(args.raw_dir.expanduser())
    src, tgt = PAIR.split("-")
    raw_train = {lang: train_lines(read(TRAIN_FILE.format(lang=lang))) for lang in (src, tgt)}
    if len(raw_train[src]) != len(raw_train[tgt]):
        raise DataError(f"{args.raw_dir}: {TRAIN_FILE.format(lang=src)} has {len(raw_train[src])} text lines but "
                        f"{TRAIN_FILE.format(lang=tgt)} has {len(raw_train[tgt])}; the release must be line-aligned")
    raw_test = {lang: [seg for name in TEST_SETS for seg in xml_segments(read(f"{name}.{PAIR}.{lang}.xml"))]
                for lang in (src, tgt)}
    if len(raw_test[src]) != len(raw_test[tgt]):
        raise DataError(f"{args.raw_dir}: the test sets have {len(raw_test[src])} {src} but {len(raw_test[tgt])} "
                        f"{tgt} segments; the .xml files must be aligned")
    total = 4 * (len(raw_train[src]) + len(raw_test[src]))
    with Progress(transient=True) as progress:
        bar = progress.add_task("prepare iwslt14", total=total)
        tick: Tick = lambda n: progress.advance(bar, n)  # noqa: E731
        tok = {lang: moses_tokenize(raw_train[lang], lang, tick) for lang in (src, tgt)}
        clean_src, clean_tgt = clean_corpus(tok[src], tok[tgt])
        train = {src: [s.lower() for s in clean_src], tgt: [t.lower() for t in clean_tgt]}
        test = {lang: [s.lower() for s in moses_tokenize(raw_test[lang], lang, tick)] for lang in (src, tgt)}
        pick = lambda lines, valid: [x for n, x in enumerate(lines, 1) if (n % VALID_EVERY == 0) == valid]  # noqa: E731
        splits = {"train": (pick(train[src], False), pick(train[tgt], False)),
                  "valid": (pick(train[src], True), pick(train[tgt], True)),
                  "test": (test[src], test[tgt])}
        progress.update(bar, description=f"learn BPE ({args.merges} merges)")
        write_bpe_layout(splits, args.out_dir.expanduser(), src, tgt, args.merges, tick)
    sizes = ", ".join(f"{split} {len(splits[split][0])}" for split in SPLITS)
    print(f"prepared {args.out_dir}: {sizes} sentence pairs; train with task.data_dir={args.out_dir}")
    return 0
