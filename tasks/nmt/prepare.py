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
import io
import re
import shutil
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path

from rich.progress import Progress
from sacremoses import MosesTokenizer
from subword_nmt.apply_bpe import BPE
from subword_nmt.learn_bpe import learn_bpe

from tasks.base import DataError
from tasks.nmt.text import SPLITS

PAIR = "de-en"
TRAIN_FILE = "train.tags.de-en.{lang}"
TEST_SETS = ("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010", "IWSLT14.TED.tst2011",
             "IWSLT14.TED.tst2012")
DROP_TAGS = ("<url>", "<talkid>", "<keywords>")
STRIP_TAGS = re.compile(r"</?title>|</?description>")
SEG_OPEN = re.compile(r'<seg id="[0-9]*">\s*')
SEG_CLOSE = re.compile(r"\s*</seg>\s*")
VALID_EVERY = 23
LAYOUT = (f"expected the IWSLT14 release: RAW_DIR/{PAIR}/ (or RAW_DIR itself, or de-en.tgz) with "
          f"{TRAIN_FILE.format(lang='{de,en}')} and {', '.join(TEST_SETS)}.de-en.{{de,en}}.xml "
          "(https://wit3.fbk.eu/archive/2014-01/texts/de/en/de-en.tgz, as prepare-iwslt14.sh downloads it)")

Tick = Callable[[int], None]


def moses_tokenize(lines: Iterable[str], lang: str, tick: Tick) -> list[str]:
    """tokenizer.perl -l LANG (escaping on, no aggressive hyphen splitting)."""
    tokenizer = MosesTokenizer(lang=lang)
    out = []
    for line in lines:
        out.append(tokenizer.tokenize(line.strip(), escape=True, return_str=True))
        tick(1)
    return out


def normalise_space(line: str, strip_bars: bool) -> str:
    if strip_bars:
        line = line.replace("|", "")
    return re.sub(r"\s+", " ", line).strip(" ")


def clean_corpus(src: list[str], tgt: list[str], ratio: float = 1.5, min_len: int = 1, max_len: int = 175,
                 max_word_length: int = 1000) -> tuple[list[str], list[str]]:
    """clean-corpus-n.perl -ratio RATIO corpus src tgt out MIN MAX: whitespace collapsed, `|` removed unless
    the first line is factored, empty, too short/long, too unequal or over-long-word pairs dropped."""
    factored = bool(src) and ("|" in src[0] or "|" in tgt[0])
    long_word = re.compile(r"[^\s|]{" + str(max_word_length + 1) + "}")
    kept_src, kept_tgt = [], []
    for s, t in zip(src, tgt, strict=True):
        s, t = normalise_space(s, not factored), normalise_space(t, not factored)
        if not s or not t:
            continue
        ns, nt = len(s.split(" ")), len(t.split(" "))
        if not (min_len <= ns <= max_len and min_len <= nt <= max_len) or ns / nt > ratio or nt / ns > ratio:
            continue
        if long_word.search(s) or long_word.search(t):
            continue
        kept_src.append(s)
        kept_tgt.append(t)
    return kept_src, kept_tgt


def train_lines(text: str) -> list[str]:
    lines = [line for line in text.splitlines() if not any(tag in line for tag in DROP_TAGS)]
    return [STRIP_TAGS.sub("", line) for line in lines]


def xml_segments(text: str) -> list[str]:
    lines = [line for line in text.splitlines() if "<seg id" in line]
    return [SEG_CLOSE.sub("", SEG_OPEN.sub("", line)).replace("\u2019", "'") for line in lines]


def learn_joint_bpe(train_src: list[str], train_tgt: list[str], merges: int) -> str:
    """learn_bpe.py -s MERGES on train.SRC followed by train.TGT; returns the codes file's text."""
    codes = io.StringIO()
    learn_bpe(io.StringIO("".join(f"{line}\n" for line in [*train_src, *train_tgt])), codes, merges)
    return codes.getvalue()


def apply_bpe(codes: str, lines: list[str], tick: Tick) -> list[str]:
    bpe = BPE(io.StringIO(codes))
    out = []
    for line in lines:
        out.append(bpe.process_line(line))
        tick(1)
    return out


def write_bpe_layout(splits: dict[str, tuple[list[str], list[str]]], out_dir: Path, src: str, tgt: str,
                     merges: int, tick: Tick = lambda n: None) -> None:
    """Joint BPE over tokenized splits into the text layout {train,valid,test}.{src,tgt} plus `code`, atomically."""
    codes = learn_joint_bpe(*splits["train"], merges)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "code").write_text(codes, encoding="utf-8")
    for split in SPLITS:
        for lang, lines in zip((src, tgt), splits[split], strict=True):
            text = "".join(f"{line}\n" for line in apply_bpe(codes, lines, tick))
            (tmp / f"{split}.{lang}").write_text(text, encoding="utf-8")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)


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
