"""Tokenized BLEU as fairseq-generate reports it (BLEU4 on the Moses-tokenized, BPE-removed text): sacrebleu with
tokenize='none' and no smoothing; WMT14 en-de with the compound-splitting regex of the authors'
scripts/compound_split_bleu.sh applied to both sides."""

from __future__ import annotations

import re

import sacrebleu

BPE_JOINER = "@@ "
COMPOUND = re.compile(r"(\S)-(\S)")


def remove_bpe(line: str) -> str:
    """fairseq's --remove-bpe: drop the subword-nmt joiners (`@@ `, and a trailing `@@`)."""
    return (line + " ").replace(BPE_JOINER, "").rstrip()


def split_compounds(line: str) -> str:
    """perl -ple 's{(\\S)-(\\S)}{$1 ##AT##-##AT## $2}g', the same non-overlapping matches."""
    return COMPOUND.sub(r"\1 ##AT##-##AT## \2", line)


def corpus_bleu(hypotheses: list[str], references: list[str], compound_split: bool = False) -> float:
    if compound_split:
        hypotheses = [split_compounds(h) for h in hypotheses]
        references = [split_compounds(r) for r in references]
    return float(sacrebleu.corpus_bleu(hypotheses, [references], tokenize="none", smooth_method="none",
                                       force=True).score)
