"""Word-level corpora in their published layouts: PTB (Mikolov's `ptb.*.txt`) and WikiText (`wiki.*.tokens`).

Both are read as pytorch/examples' word_language_model reads them: every line, blank ones included, is
`line.split()` plus `<eos>`, and the vocabulary is the train split's words in order of first appearance.
PTB's valid and test use only train words (an unknown word means a wrong file, so it is an error); for
WikiText an unknown word becomes `<unk>`.

WikiText-103's 103 M train tokens take minutes to tokenise, so WikiText is tokenised once into a cache
beside the data (`<data_dir>/lm_cache/`): the vocabulary as text and each split as raw int32 ids, memory-
mapped on later runs. `meta.json` is written last and fingerprints every source file (size, mtime and a
hash of its first MiB); a cache whose fingerprint no longer matches is rebuilt. `bench data prepare
wikitext103 DATA_DIR` builds it ahead of time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.base import DataError

EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "valid", "test")
FORMATS = {"ptb": "ptb.{split}.txt", "wikitext": "wiki.{split}.tokens"}
HOW_TO_GET = {
    "ptb": "Mikolov's PTB (10k vocabulary, <unk>), e.g. simple-examples/data/ from "
           "https://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz",
    "wikitext": "the word-level WikiText release (wikitext-2-v1.zip or wikitext-103-v1.zip, not the -raw one) "
                "from https://s3.amazonaws.com/research.metamind.io/wikitext/",
}
CACHE_DIR = "lm_cache"
CACHE_VERSION = 1
HEAD_BYTES = 1 << 20
ID_DTYPE = np.int32


@dataclass
class Corpus:
    """A vocabulary (id -> word) and the three splits as 1-D int id streams."""

    words: list[str]
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    cache: Path | None = None

    def split(self, name: str) -> np.ndarray:
        return {"train": self.train, "valid": self.valid, "test": self.test}[name]

    def summary(self) -> dict[str, Any]:
        """Token counts (with `<eos>`), vocabulary size, and where the cache is, for the run record."""
        out: dict[str, Any] = {"vocab": len(self.words), **{f"{s}_tokens": len(self.split(s)) for s in SPLITS}}
        if self.cache is not None:
            out["cache"] = str(self.cache)
        return out


def split_paths(data_dir: str | Path, fmt: str) -> dict[str, Path]:
    """The three split files, or a DataError naming the first missing one and the expected layout."""
    if fmt not in FORMATS:
        raise DataError(f"task.format={fmt}: expected one of {', '.join(FORMATS)}")
    root = Path(data_dir).expanduser()
    names = [FORMATS[fmt].format(split=s) for s in SPLITS]
    paths = {s: root / name for s, name in zip(SPLITS, names, strict=True)}
    for path in paths.values():
        if not path.is_file():
            raise DataError(f"{path}: file missing; expected {root} (task.data_dir) to hold {', '.join(names)} "
                            f"({HOW_TO_GET[fmt]})")
        if path.stat().st_size == 0:
            raise DataError(f"{path}: the file is empty; expected one tokenised sentence or paragraph per line "
                            f"({HOW_TO_GET[fmt]})")
    return paths


def read_lines(path: Path) -> Iterator[str]:
    try:
        with path.open(encoding="utf-8") as f:
            yield from f
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); expected the tokenised release") from None


def line_tokens(line: str) -> list[str]:
    return [*line.split(), EOS]


def read_train(path: Path) -> tuple[dict[str, int], np.ndarray]:
    """Tokenise the train split, growing the vocabulary in order of first appearance."""
    vocab: dict[str, int] = {}
    ids: list[int] = []
    for line in read_lines(path):
        ids.extend(vocab.setdefault(w, len(vocab)) for w in line_tokens(line))
    return vocab, np.asarray(ids, dtype=ID_DTYPE)


def read_heldout(path: Path, vocab: dict[str, int], unknown: int | None) -> np.ndarray:
    """Tokenise valid/test with the train vocabulary; `unknown=None` makes an unseen word an error."""
    ids: list[int] = []
    for number, line in enumerate(read_lines(path), 1):
        for w in line_tokens(line):
            i = vocab.get(w, unknown)
            if i is None:
                raise DataError(f"{path}:{number}: word {w!r} is not in the train vocabulary; PTB's valid and test "
                                f"use only train words, so this is not Mikolov's PTB ({HOW_TO_GET['ptb']})")
            ids.append(i)
    return np.asarray(ids, dtype=ID_DTYPE)


def load_ptb(data_dir: str | Path) -> Corpus:
    paths = split_paths(data_dir, "ptb")
    vocab, train = read_train(paths["train"])
    return Corpus(list(vocab), train, read_heldout(paths["valid"], vocab, None),
                  read_heldout(paths["test"], vocab, None))


def fingerprint(path: Path) -> dict[str, Any]:
    """What says a source file is unchanged without reading all of it: size, mtime, hash of the first MiB."""
    stat = path.stat()
    with path.open("rb") as f:
        head = hashlib.sha256(f.read(HEAD_BYTES)).hexdigest()
    return {"name": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "head_sha256": head}


def write_atomic(path: Path, data: bytes | np.ndarray) -> None:
    """Write to a temporary sibling, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        if isinstance(data, np.ndarray):
            data.tofile(f)
        else:
            f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def tokenise_with_progress(path: Path, vocab: dict[str, int], unknown: int | None, progress: Any) -> np.ndarray:
    """Train (`unknown` None: grow `vocab`) or held-out (`unknown`: map unseen words to it), with a byte bar."""
    task = progress.add_task(f"tokenising {path.name}", total=path.stat().st_size)
    chunks: list[np.ndarray] = []
    ids: list[int] = []
    with path.open("rb") as f:
        for raw in f:
            try:
                words = line_tokens(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise DataError(f"{path}: not UTF-8 text (the line ending at byte {f.tell()}); expected the "
                                f"tokenised WikiText release ({HOW_TO_GET['wikitext']})") from None
            if unknown is None:
                ids.extend(vocab.setdefault(w, len(vocab)) for w in words)
            else:
                ids.extend(vocab.get(w, unknown) for w in words)
            if len(ids) >= 1 << 22:
                chunks.append(np.asarray(ids, dtype=ID_DTYPE))
                ids = []
                progress.update(task, completed=f.tell())
    chunks.append(np.asarray(ids, dtype=ID_DTYPE))
    progress.update(task, completed=path.stat().st_size)
    return np.concatenate(chunks)


def build_wikitext_cache(paths: dict[str, Path], cache: Path, sources: list[dict[str, Any]], quiet: bool) -> None:
    """Tokenise the three splits and write vocab.txt, {split}.ids and, last, meta.json."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    cache.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=quiet, transient=True) as progress:
        streams = {"train": tokenise_with_progress(paths["train"], vocab, None, progress)}
        unknown = vocab.setdefault(UNK, len(vocab))
        for split in ("valid", "test"):
            streams[split] = tokenise_with_progress(paths[split], vocab, unknown, progress)
    write_atomic(cache / "vocab.txt", "\n".join(vocab).encode("utf-8") + b"\n")
    for split, ids in streams.items():
        write_atomic(cache / f"{split}.ids", ids)
    meta = {"version": CACHE_VERSION, "sources": sources, "vocab": len(vocab),
            "tokens": {s: len(v) for s, v in streams.items()}}
    write_atomic(cache / "meta.json", json.dumps(meta, indent=1).encode())


def read_cache(cache: Path, sources: list[dict[str, Any]]) -> Corpus | None:
    """The cached corpus if it is complete and was built from these very sources; else None."""
    try:
        meta = json.loads((cache / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("version") != CACHE_VERSION or meta.get("sources") != sources:
        return None
    words = (cache / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    streams = {}
    for split in SPLITS:
        path = cache / f"{split}.ids"
        if not path.is_file() or path.stat().st_size != meta["tokens"][split] * np.dtype(ID_DTYPE).itemsize:
            return None
        streams[split] = np.memmap(path, dtype=ID_DTYPE, mode="r")
    if len(words) != meta["vocab"]:
        return None
    return Corpus(words, streams["train"], streams["valid"], streams["test"], cache=cache)


def load_wikitext(data_dir: str | Path, cache_dir: str | Path | None = None, quiet: bool = False) -> Corpus:
    """WikiText from its cache, building the cache first when it is missing or stale."""
    paths = split_paths(data_dir, "wikitext")
    cache = Path(cache_dir).expanduser() if cache_dir else Path(data_dir).expanduser() / CACHE_DIR
    sources = [fingerprint(paths[s]) for s in SPLITS]
    corpus = read_cache(cache, sources)
    if corpus is None:
        try:
            build_wikitext_cache(paths, cache, sources, quiet)
        except PermissionError:
            raise DataError(f"{cache}: cannot write the token cache there; set task.cache_dir to a writable "
                            "folder") from None
        corpus = read_cache(cache, sources)
        assert corpus is not None, f"{cache}: the cache just written does not read back"
    return corpus


def load_corpus(fmt: str, data_dir: str | Path, cache_dir: str | Path | None = None) -> Corpus:
    if fmt == "ptb":
        return load_ptb(data_dir)
    if fmt == "wikitext":
        return load_wikitext(data_dir, cache_dir)
    raise DataError(f"task.format={fmt}: expected one of {', '.join(FORMATS)}")


def prepare_wikitext(argv: list[str]) -> int:
    """`bench data prepare wikitext103 DATA_DIR [--cache-dir DIR]`: build the token cache ahead of a run."""
    parser = argparse.ArgumentParser(prog="bench data prepare wikitext103",
                                     description="Tokenise WikiText (wiki.{train,valid,test}.tokens) once into "
                                                 "memory-mapped ids that runs then reuse.")
    parser.add_argument("data_dir", help="the folder with wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens")
    parser.add_argument("--cache-dir", help=f"where the cache goes (default: DATA_DIR/{CACHE_DIR})")
    args = parser.parse_args(argv)
    corpus = load_wikitext(args.data_dir, args.cache_dir)
    counts = ", ".join(f"{s} {len(corpus.split(s)):,}" for s in SPLITS)
    print(f"{corpus.cache}: vocabulary {len(corpus.words):,} words; tokens with <eos>: {counts}")
    return 0
