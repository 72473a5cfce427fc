"""A `task.data_dir` as dictionaries and token-id arrays, from either published layout (detected):

- a fairseq data-bin (`dict.SRC.txt`, `dict.TGT.txt`, `{split}.SRC-TGT.{SRC,TGT}.{bin,idx}`), read as is;
- the prepare-iwslt14.sh text layout, binarized here exactly as `fairseq-preprocess` would (same dictionary,
  same ids), so the two give identical batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tasks.base import DataError
from tasks.nmt.dictionary import Dictionary
from tasks.nmt.indexed import best_dtype, read_indexed, write_indexed
from tasks.nmt.text import SPLITS, is_text_layout, read_split, text_layout


@dataclass
class Corpus:
    """Both dictionaries and, per split, the source and target id arrays (each ending in `</s>`)."""

    src_dict: Dictionary
    tgt_dict: Dictionary
    splits: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = field(default_factory=dict)
    layout: str = ""


def data_bin_prefix(folder: Path, split: str, src: str, tgt: str, lang: str) -> Path:
    return folder / f"{split}.{src}-{tgt}.{lang}"


def is_data_bin(folder: Path, src: str) -> bool:
    return (folder / f"dict.{src}.txt").is_file()


def load_corpus(data_dir: str | Path, src: str, tgt: str, joined: bool) -> Corpus:
    folder = Path(data_dir).expanduser()
    if is_data_bin(folder, src):
        corpus = load_data_bin(folder, src, tgt)
    elif is_text_layout(folder, src, tgt):
        corpus = load_text(folder, src, tgt, joined)
    else:
        raise DataError(f"task.data_dir={folder}: neither a fairseq data-bin (dict.{src}.txt, "
                        f"train.{src}-{tgt}.{src}.bin/.idx, ...) nor prepared text; {text_layout(src, tgt)}")
    if joined and corpus.src_dict != corpus.tgt_dict:
        raise DataError(f"{folder}: dict.{src}.txt and dict.{tgt}.txt differ, but task.model.share_embeddings=true "
                        "needs one joined vocabulary; binarize with fairseq-preprocess --joined-dictionary or set "
                        "task.model.share_embeddings=false")
    return corpus


def load_text(folder: Path, src: str, tgt: str, joined: bool) -> Corpus:
    """Binarize the text layout as `fairseq-preprocess [--joined-dictionary]` does: dictionaries from train."""
    lines = {split: read_split(folder, split, src, tgt) for split in SPLITS}
    train_src, train_tgt = lines["train"]
    if joined:
        src_dict = tgt_dict = Dictionary.build(train_src + train_tgt)
    else:
        src_dict, tgt_dict = Dictionary.build(train_src), Dictionary.build(train_tgt)
    splits = {split: ([np.asarray(src_dict.encode(s), dtype=np.int64) for s in s_lines],
                      [np.asarray(tgt_dict.encode(t), dtype=np.int64) for t in t_lines])
              for split, (s_lines, t_lines) in lines.items()}
    return Corpus(src_dict, tgt_dict, splits, layout="text")


def load_data_bin(folder: Path, src: str, tgt: str) -> Corpus:
    dicts = {lang: Dictionary.load(folder / f"dict.{lang}.txt") for lang in (src, tgt)}
    splits = {}
    for split in SPLITS:
        arrays = {}
        for lang in (src, tgt):
            prefix = data_bin_prefix(folder, split, src, tgt, lang)
            items = read_indexed(prefix)
            top = max((int(a.max()) for a in items if len(a)), default=-1)
            if top >= len(dicts[lang]):
                raise DataError(f"{prefix}.bin: token id {top} but dict.{lang}.txt has {len(dicts[lang])} symbols; "
                                "the dictionary does not belong to this data-bin (re-run fairseq-preprocess)")
            arrays[lang] = items
        if len(arrays[src]) != len(arrays[tgt]):
            raise DataError(f"{data_bin_prefix(folder, split, src, tgt, src)}.idx has {len(arrays[src])} sentences "
                            f"but the {tgt} side has {len(arrays[tgt])}; they must be aligned")
        splits[split] = (arrays[src], arrays[tgt])
    return Corpus(dicts[src], dicts[tgt], splits, layout="data-bin")


def write_data_bin(corpus: Corpus, out_dir: Path, src: str, tgt: str) -> None:
    """What `fairseq-preprocess --dataset-impl mmap` writes: both dictionaries and every split's .bin/.idx."""
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus.src_dict.save(out_dir / f"dict.{src}.txt")
    corpus.tgt_dict.save(out_dir / f"dict.{tgt}.txt")
    for split, (src_items, tgt_items) in corpus.splits.items():
        write_indexed(data_bin_prefix(out_dir, split, src, tgt, src), src_items, best_dtype(len(corpus.src_dict)))
        write_indexed(data_bin_prefix(out_dir, split, src, tgt, tgt), tgt_items, best_dtype(len(corpus.tgt_dict)))
