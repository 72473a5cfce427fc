"""The Moses scripts fairseq's prepare-iwslt14.sh and prepare-wmt14en2de.sh pipe text through, as Python:
normalize-punctuation.perl, remove-non-printing-char.perl, tokenizer.perl, clean-corpus-n.perl, and the
`grep '<seg id' | sed` that pulls sentences out of the test sets' XML/SGML. Checked against the scripts of
moses-smt/mosesdecoder (master, 2025), whose behaviour on whole lines this keeps where sacremoses differs."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import regex
from sacremoses import MosesPunctNormalizer, MosesTokenizer

SEG_OPEN = re.compile(r'<seg id="[0-9]*">\s*')
SEG_CLOSE = re.compile(r"\s*</seg>\s*")
NON_PRINTING = regex.compile(r"\p{C}")
FINAL_DOT = re.compile(r"([^.\s])\.$")


@dataclass(unsafe_hash=True)
class MosesPipeline:
    """One language's `[normalize-punctuation.perl L | remove-non-printing-char.perl |] tokenizer.perl [-a] -l L`
    as a picklable, hashable line -> line callable (the sacremoses objects are built on first use, in the process
    that runs it)."""

    lang: str
    normalize: bool = False
    aggressive: bool = False
    _tools: tuple[MosesPunctNormalizer, MosesTokenizer] | None = field(default=None, init=False, repr=False,
                                                                      compare=False)

    def __call__(self, line: str) -> str:
        if self._tools is None:
            self._tools = (MosesPunctNormalizer(lang=self.lang, perl_parity=True), MosesTokenizer(lang=self.lang))
        normalizer, tokenizer = self._tools
        if self.normalize:
            # The Perl script sees the line with its "\n": `s/(\.+)\"(\s*[^<])/` then moves a final `."` to `".`
            line = remove_non_printing(normalizer.normalize(line + "\n"))
        if not line.strip():
            return line  # tokenizer.perl prints blank lines as they are
        tokens = tokenizer.tokenize(line, aggressive_dash_splits=self.aggressive, escape=True, return_str=True)
        # tokenizer.perl since 2018 ("split final dots unconditionally"); sacremoses keeps e.g. a final "S." whole
        return FINAL_DOT.sub(r"\1 .", tokens)

    def __getstate__(self) -> dict:
        return {"lang": self.lang, "normalize": self.normalize, "aggressive": self.aggressive, "_tools": None}


def remove_non_printing(line: str) -> str:
    """remove-non-printing-char.perl: every Unicode "other" character (\\p{C}) becomes a space."""
    return NON_PRINTING.sub(" ", line)


def segments(lines: Iterable[str]) -> Iterator[str]:
    """`grep '<seg id' | sed 's/<seg id="[0-9]*">\\s*//g' | sed 's/\\s*<\\/seg>\\s*//g' | sed "s/’/'/g"`."""
    for line in lines:
        if "<seg id" in line:
            yield SEG_CLOSE.sub("", SEG_OPEN.sub("", line)).replace("\u2019", "'")


def normalise_space(line: str, strip_bars: bool) -> str:
    if strip_bars:
        line = line.replace("|", "")
    return re.sub(r"\s+", " ", line).strip(" ")


def clean_pairs(pairs: Iterable[tuple[str, str]], ratio: float = 1.5, min_len: int = 1, max_len: int = 175,
                max_word_length: int = 1000) -> Iterator[tuple[str, str]]:
    """clean-corpus-n.perl -ratio RATIO corpus src tgt out MIN MAX: whitespace collapsed, `|` removed unless the
    first pair is factored, empty, too short/long, too unequal or over-long-word pairs dropped."""
    long_word = re.compile(r"[^\s|]{" + str(max_word_length + 1) + "}")
    factored = None
    for s, t in pairs:
        if factored is None:
            factored = "|" in s or "|" in t
        s, t = normalise_space(s, not factored), normalise_space(t, not factored)
        if not s or not t:
            continue
        ns, nt = len(s.split(" ")), len(t.split(" "))
        if not (min_len <= ns <= max_len and min_len <= nt <= max_len) or ns / nt > ratio or nt / ns > ratio:
            continue
        if long_word.search(s) or long_word.search(t):
            continue
        yield s, t


def clean_corpus(src: list[str], tgt: list[str], ratio: float = 1.5, min_len: int = 1, max_len: int = 175,
                 max_word_length: int = 1000) -> tuple[list[str], list[str]]:
    """clean_pairs on two aligned lists."""
    kept = list(clean_pairs(zip(src, tgt, strict=True), ratio, min_len, max_len, max_word_length))
    return [s for s, _ in kept], [t for _, t in kept]
