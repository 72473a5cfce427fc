"""fairseq's Dictionary: the `dict.*.txt` vocabulary files of `fairseq-preprocess`, token for token.

Specials first (`<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3), then words by descending count with ties in
alphabetical order (fairseq's `finalize`), padded with `madeupword0000`... to a multiple of 8.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tasks.base import DataError

BOS, PAD, EOS, UNK = "<s>", "<pad>", "</s>", "<unk>"
SPECIALS = (BOS, PAD, EOS, UNK)
PADDING_FACTOR = 8  # fairseq-preprocess's default


class Dictionary:
    """Symbols <-> ids; `encode` appends `</s>` as fairseq's `encode_line` does."""

    bos, pad, eos, unk = 0, 1, 2, 3

    def __init__(self) -> None:
        self.symbols: list[str] = list(SPECIALS)
        self.counts: list[int] = [1] * len(SPECIALS)
        self.index: dict[str, int] = {s: i for i, s in enumerate(SPECIALS)}

    def __len__(self) -> int:
        return len(self.symbols)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dictionary) and self.symbols == other.symbols

    def add(self, word: str, count: int) -> None:
        if word in self.index:
            self.counts[self.index[word]] += count
            return
        self.index[word] = len(self.symbols)
        self.symbols.append(word)
        self.counts.append(count)

    @classmethod
    def build(cls, lines: Iterable[str], padding_factor: int = PADDING_FACTOR) -> Dictionary:
        """Count whitespace tokens over `lines` and order them as fairseq-preprocess does."""
        counter: Counter[str] = Counter()
        for line in lines:
            counter.update(line.split())
        d = cls()
        for special in SPECIALS:
            counter.pop(special, None)
        for word, count in sorted(counter.items(), key=lambda wc: (-wc[1], wc[0])):
            d.add(word, count)
        i = 0
        while len(d) % padding_factor:
            d.add(f"madeupword{i:04d}", 0)
            i += 1
        return d

    @classmethod
    def load(cls, path: Path) -> Dictionary:
        """Read a fairseq `dict.txt`: one `word count` line per symbol after the four specials."""
        d = cls()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise DataError(f"{path}: cannot read the dictionary ({exc.strerror}); expected fairseq's dict.LANG.txt "
                            "with one 'word count' line per symbol") from None
        for number, line in enumerate(lines, 1):
            word, _, rest = line.rstrip().rpartition(" ")
            flag = ""
            if rest == "#fairseq:overwrite":
                flag = rest
                word, _, rest = word.rpartition(" ")
            if not word or not rest.lstrip("-").isdigit():
                raise DataError(f"{path}:{number}: expected 'word count', got {line[:60]!r}; this is not a fairseq "
                                "dict.txt")
            if word in d.index and not flag:
                raise DataError(f"{path}:{number}: duplicate word {word!r} (fairseq marks intended duplicates with "
                                "#fairseq:overwrite)")
            d.add(word, int(rest))
        return d

    def save(self, path: Path) -> None:
        lines = [f"{w} {c}\n" for w, c in zip(self.symbols[len(SPECIALS):], self.counts[len(SPECIALS):], strict=True)]
        path.write_text("".join(lines), encoding="utf-8")

    def encode(self, line: str) -> list[int]:
        return [self.index.get(w, self.unk) for w in line.split()] + [self.eos]

    def decode(self, ids: Iterable[int], unk_string: str = UNK) -> str:
        """Token ids to text, stopping at `</s>` and dropping padding and `<s>` (fairseq's `string`); fairseq-generate
        writes references with `unk_string="<<unk>>"` (escape_unk) so that no hypothesis `<unk>` matches them."""
        words = []
        for i in ids:
            if i == self.eos:
                break
            if i not in (self.pad, self.bos):
                words.append(unk_string if i == self.unk else self.symbols[i])
        return " ".join(words)
