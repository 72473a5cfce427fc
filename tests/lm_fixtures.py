"""Tiny corpora in the published on-disk formats of PTB (`ptb.*.txt`) and WikiText (`wiki.*.tokens`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# A small closed world: sentences follow a fixed word chain, so a model can learn them in a few steps.
WORDS = [f"w{i}" for i in range(40)]


def sentences(n: int, seed: int, unk_rate: float = 0.0) -> list[list[str]]:
    """`n` sentences of 4-12 words; each word is the next in a cycle through WORDS from a random start."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        start, length = rng.integers(len(WORDS)), rng.integers(4, 13)
        words = [WORDS[(start + i) % len(WORDS)] for i in range(length)]
        out.append(["<unk>" if rng.random() < unk_rate else w for w in words])
    return out


def write_ptb(root: Path, n_train: int = 300, n_heldout: int = 40) -> Path:
    """root/ptb.{train,valid,test}.txt as Mikolov's release has them: ' word word ... \\n' per sentence."""
    root.mkdir(parents=True, exist_ok=True)
    for seed, (split, n) in enumerate((("train", n_train), ("valid", n_heldout), ("test", n_heldout))):
        lines = [" " + " ".join(s) + " \n" for s in sentences(n, seed, unk_rate=0.05 if split == "train" else 0.0)]
        (root / f"ptb.{split}.txt").write_text("".join(lines))
    return root


def write_wikitext(root: Path, n_train: int = 300, n_heldout: int = 40, unseen_in_valid: bool = True) -> Path:
    """root/wiki.{train,valid,test}.tokens as the tokenised WikiText release has them: a blank line, then
    ' = Title = ', ' = = Section = = ' headings between blank lines, and paragraphs of ' word word ... ' with
    `<unk>` and `@-@`; `unseen_in_valid` puts a word in valid that train never has."""
    root.mkdir(parents=True, exist_ok=True)
    for seed, (split, n) in enumerate((("train", n_train), ("valid", n_heldout), ("test", n_heldout))):
        lines = [" \n", f" = Article {split} = \n", " \n"]
        for i, s in enumerate(sentences(n, seed, unk_rate=0.05)):
            if i % 10 == 0:
                lines += [" \n", f" = = Section {i // 10} = = \n", " \n"]
            words = [*s[:2], "@-@", *s[2:]] if i % 7 == 0 else s
            lines.append(" " + " ".join(words) + " \n")
        if split == "valid" and unseen_in_valid:
            lines.append(" w1 neverseen w2 \n")
        (root / f"wiki.{split}.tokens").write_text("".join(lines), encoding="utf-8")
    return root
