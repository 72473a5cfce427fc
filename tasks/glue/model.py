"""HF transformers SqueezeBERT for GLUE: from a local pretrained folder, or randomly initialised with a
WordPiece vocabulary built from the task's training split (tests, from-scratch studies)."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoConfig,
    BertTokenizerFast,
    PreTrainedTokenizerBase,
    SqueezeBertConfig,
    SqueezeBertForSequenceClassification,
)

from tasks.base import DataError

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")
FOLDER_LAYOUT = ("a local folder in HF layout: config.json (model_type squeezebert), model.safetensors or "
                 "pytorch_model.bin, and the tokenizer files (vocab.txt or tokenizer.json)")


def check_pretrained_folder(pretrained: str) -> Path:
    """`task.pretrained` must be a complete local HF folder; a hub name cannot be fetched offline."""
    folder = Path(pretrained).expanduser()
    if not folder.is_dir():
        raise DataError(f"task.pretrained={pretrained}: no such local folder; only local folders work offline (hub "
                        "names are not fetched): on a machine with hub access run `hf download "
                        "squeezebert/squeezebert-uncased --local-dir DIR`, copy DIR here, set task.pretrained=DIR")
    if not (folder / "config.json").is_file():
        raise DataError(f"{folder}: no config.json; task.pretrained must be {FOLDER_LAYOUT}")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise DataError(f"{folder}: no model weights ({' or '.join(WEIGHT_FILES[:2])}); task.pretrained must be "
                        f"{FOLDER_LAYOUT}")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise DataError(f"{folder}: no tokenizer (vocab.txt or tokenizer.json); save it beside the model with "
                        "tokenizer.save_pretrained(folder), or copy the checkpoint's tokenizer files there")
    return folder


def load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    """The checkpoint's own tokenizer."""
    return BertTokenizerFast.from_pretrained(folder, local_files_only=True)


def load_model(folder: Path, num_labels: int, overrides: dict[str, Any]) -> SqueezeBertForSequenceClassification:
    """The checkpoint's model, with a fresh head of `num_labels` when its own head differs (the MNLI checkpoint's
    3 classes for RTE's 2); `overrides` are SqueezeBertConfig fields (e.g. dropout)."""
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    if config.model_type != "squeezebert":
        raise DataError(f"{folder}/config.json: model_type {config.model_type!r}, expected 'squeezebert'")
    return SqueezeBertForSequenceClassification.from_pretrained(
        folder, num_labels=num_labels, ignore_mismatched_sizes=True, local_files_only=True, **overrides)


def train_wordpiece(texts: Iterable[str], vocab_size: int) -> BertTokenizerFast:
    """An uncased BERT WordPiece tokenizer trained on `texts`, as a real BertTokenizerFast (save_pretrained
    writes vocab.txt and tokenizer.json, and `task.pretrained` loads it back)."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS)))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return BertTokenizerFast(tokenizer_object=tok, do_lower_case=True, unk_token="[UNK]", sep_token="[SEP]",
                             pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")


def random_config(model_config: dict[str, Any], num_labels: int, vocab_size: int | None) -> SqueezeBertConfig:
    """A SqueezeBertConfig from `task.model_config` (any of its fields); unknown fields are an error."""
    known = set(inspect.signature(SqueezeBertConfig.__init__).parameters) | set(SqueezeBertConfig().to_dict())
    unknown = sorted(set(model_config) - known)
    if unknown:
        raise DataError(f"task.model_config.{unknown[0]}: not a SqueezeBertConfig field; see "
                        "transformers.SqueezeBertConfig (e.g. num_hidden_layers, hidden_size, intermediate_size)")
    fields = dict(model_config)
    fields.setdefault("embedding_size", fields.get("hidden_size", SqueezeBertConfig().hidden_size))
    if vocab_size is not None:
        fields["vocab_size"] = vocab_size
    return SqueezeBertConfig(**fields, num_labels=num_labels)
