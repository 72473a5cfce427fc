"""The text layout of fairseq's `prepare-iwslt14.sh` / `prepare-wmt14en2de.sh`: `{train,valid,test}.{src,tgt}`,
one Moses-tokenized, BPE-joined (`@@ `) sentence per line, source and target line-aligned."""

from __future__ import annotations

from pathlib import Path

from tasks.base import DataError

SPLITS = ("train", "valid", "test")


def text_layout(src: str, tgt: str) -> str:
    return (f"expected {', '.join(f'{s}.{src}/{s}.{tgt}' for s in SPLITS)} (the output folder of fairseq's "
            "prepare-iwslt14.sh or prepare-wmt14en2de.sh, e.g. iwslt14.tokenized.de-en/, or "
            "`bench data prepare iwslt14|wmt14|multi30k RAW OUT`)")


def is_text_layout(folder: Path, src: str, tgt: str) -> bool:
    return (folder / f"train.{src}").is_file() or (folder / f"train.{tgt}").is_file()


def read_lines(path: Path, layout: str) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: file missing; {layout}")
    with path.open(encoding="utf-8", newline="\n") as f:
        return [line.rstrip("\n") for line in f]


def read_split(folder: Path, split: str, src: str, tgt: str) -> tuple[list[str], list[str]]:
    """One split's aligned (source, target) lines; a count mismatch names both files."""
    layout = text_layout(src, tgt)
    src_lines = read_lines(folder / f"{split}.{src}", layout)
    tgt_lines = read_lines(folder / f"{split}.{tgt}", layout)
    if len(src_lines) != len(tgt_lines):
        raise DataError(f"{folder / f'{split}.{src}'} has {len(src_lines)} lines but {folder / f'{split}.{tgt}'} has "
                        f"{len(tgt_lines)}; source and target must be line-aligned (re-run the preparation)")
    return src_lines, tgt_lines
