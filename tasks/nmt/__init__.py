"""Translation (IWSLT14 de-en, WMT14 en-de): fairseq's data formats, transformer, loss, decoding and BLEU,
rebuilt on torch, sacremoses, subword-nmt and sacrebleu (fairseq itself is not usable here; see docs/translation.md)."""
