"""The translation task: token-bucketed batches from a fairseq data-bin or prepared text, the pre-norm
transformer, label-smoothed cross-entropy, greedy valid BLEU each epoch and beam-search test BLEU at the end."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tasks.base import DataError, Metric, Task
from tasks.nmt.batching import Batch, TokenBatches, head
from tasks.nmt.bleu import corpus_bleu, remove_bpe
from tasks.nmt.corpus import Corpus, load_corpus
from tasks.nmt.decode import beam_search, greedy
from tasks.nmt.dictionary import Dictionary
from tasks.nmt.loss import label_smoothed_nll_loss
from tasks.nmt.model import Transformer

REDUCTIONS = ("sum", "mean")
MODEL_DEFAULTS: dict[str, Any] = {"layers": 6, "dim": 512, "ffn_dim": 1024, "heads": 4, "dropout": 0.3,
                                  "attention_dropout": 0.1, "relu_dropout": 0.1, "max_positions": 1024,
                                  "share_embeddings": True}
SYNTHETIC_VOCAB = 10_000


def synthetic_corpus(n: int, seed: int = 0) -> Corpus:
    """Random sentence pairs of IWSLT-like lengths over a 10k joined vocabulary, for `bench perf` only."""
    rng = np.random.default_rng(seed)
    d = Dictionary.build([" ".join(f"w{i}" for i in range(SYNTHETIC_VOCAB - 4))])

    def sentences(k: int) -> list[np.ndarray]:
        return [np.append(rng.integers(4, len(d), int(rng.integers(5, 40))), d.eos) for _ in range(k)]

    k = max(1, n // 10)
    return Corpus(d, d, {"train": (sentences(n), sentences(n)), "valid": (sentences(k), sentences(k)),
                         "test": (sentences(k), sentences(k))}, layout="synthetic")


class TranslationTask(Task):
    """IWSLT14 de-en / WMT14 en-de as the authors ran them in fairseq; `trainer.batch_size` does not apply,
    batches hold at most `max_tokens` tokens."""

    metric = Metric("bleu", "max")
    throughput_unit = "tokens"

    def __init__(self, data_dir: str, source_lang: str, target_lang: str, max_tokens: int = 4096,
                 model: dict[str, Any] | None = None, label_smoothing: float = 0.1, loss_reduction: str = "mean",
                 beam: int = 5, lenpen: float = 1.0, max_len_a: float = 0.0, max_len_b: int = 200,
                 compound_split: bool = False, eval_max_sentences: int = 128,
                 synthetic: int = 0, **runtime: Any) -> None:
        super().__init__(**runtime)
        if loss_reduction not in REDUCTIONS:
            raise ValueError(f"task.loss_reduction={loss_reduction}: expected one of {'|'.join(REDUCTIONS)}")
        if max_tokens < 1:
            raise ValueError(f"task.max_tokens={max_tokens}: must be >= 1, e.g. 4096")
        unknown = set(model or {}) - set(MODEL_DEFAULTS)
        if unknown:
            raise ValueError(f"task.model.{sorted(unknown)[0]}: unknown; the keys are {', '.join(MODEL_DEFAULTS)}")
        self.model_cfg = {**MODEL_DEFAULTS, **(model or {})}
        self.loss_reduction = loss_reduction
        self.label_smoothing = label_smoothing
        self.max_tokens = max_tokens
        self.decoding = {"beam": beam, "lenpen": lenpen, "max_len_a": max_len_a, "max_len_b": max_len_b}
        self.compound_split = compound_split
        self.eval_max_sentences = eval_max_sentences
        if synthetic > 0:
            self.corpus = synthetic_corpus(synthetic, self.seed)
        else:
            self.corpus = load_corpus(data_dir, source_lang, target_lang, self.model_cfg["share_embeddings"])
        self.data_dir = str(Path(data_dir).expanduser()) if synthetic <= 0 else None
        self.skipped: dict[str, int] = {}
        self.splits: dict[str, TokenBatches] = {}
        for split, (src, tgt) in self.corpus.splits.items():
            keep = self.fits(src, tgt)
            self.skipped[split] = int((~keep).sum())
            if not keep.any():
                raise DataError(f"{data_dir}: every {split} sentence is longer than task.model.max_positions="
                                f"{self.model_cfg['max_positions']} or task.max_tokens={max_tokens}")
            training = split == "train"
            self.splits[split] = TokenBatches(src, tgt, keep, max_tokens, self.seed if training else 0,
                                              0 if training else eval_max_sentences)

    def fits(self, src: list[np.ndarray], tgt: list[np.ndarray]) -> np.ndarray:
        """fairseq's --skip-invalid-size-inputs-valid-test: both sides within max_positions and max_tokens."""
        limit = min(self.model_cfg["max_positions"], self.max_tokens)
        return np.asarray([len(s) <= limit and len(t) <= limit for s, t in zip(src, tgt, strict=True)], dtype=bool)

    def build_model(self) -> nn.Module:
        return Transformer(len(self.corpus.src_dict), len(self.corpus.tgt_dict), **self.model_cfg)

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.splits["train"]) / self.world_size)

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """This rank's batches: step s takes batch s*world_size + rank of the epoch's order (wrapping around on
        the last step when the count does not divide, so no sentence is dropped)."""
        train = self.splits["train"]
        order = train.epoch_order(torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        for step in range(start, self.steps_per_epoch()):
            yield train.get(order[(step * self.world_size + self.rank) % len(order)], self.device)

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
        loss, _ = label_smoothed_nll_loss(model(batch.src, batch.prev), batch.target, self.label_smoothing,
                                          Dictionary.pad)
        n = batch.ntokens
        return (loss if self.loss_reduction == "sum" else loss / n), n

    def sub_batch(self, batch: Batch, fraction: float) -> Batch:
        return head(batch, fraction)

    def batches(self, split: str) -> Iterator[Batch]:
        data = self.splits[split]
        for i in range(len(data)):
            yield data.get(i, self.device)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Valid loss and nll per target token (nats) and BLEU of greedy decoding (beam search only at the end,
        in `test`, to keep epochs cheap)."""
        total, nll, tokens = 0.0, 0.0, 0
        for batch in self.batches("valid"):
            loss, nll_sum = label_smoothed_nll_loss(model(batch.src, batch.prev), batch.target,
                                                    self.label_smoothing, Dictionary.pad)
            total, nll, tokens = total + loss.item(), nll + nll_sum.item(), tokens + batch.ntokens
        metrics = {"loss": total / tokens, "nll_loss": nll / tokens, "ppl": math.exp(min(nll / tokens, 50.0))}
        metrics["bleu"] = self.bleu(model, "valid", beam=1)
        return metrics

    @torch.no_grad()
    def test(self, model: nn.Module) -> dict[str, float]:
        """Beam-search BLEU on the test split, BPE removed, as fairseq-generate --remove-bpe scores it."""
        return {"bleu": self.bleu(model, "test", beam=self.decoding["beam"]),
                "sentences": float(len(self.corpus.splits["test"][0]) - self.skipped["test"]),
                "skipped": float(self.skipped["test"])}

    def translate(self, model: nn.Module, split: str, beam: int) -> tuple[list[str], list[str]]:
        """Hypotheses and references (BPE removed, references with fairseq's `<<unk>>`) in sentence order."""
        d = self.corpus.tgt_dict
        hyps: dict[int, str] = {}
        for batch in self.batches(split):
            if beam == 1:
                out = greedy(model, batch.src, self.decoding["max_len_a"], self.decoding["max_len_b"])
            else:
                out = beam_search(model, batch.src, beam, self.decoding["lenpen"], self.decoding["max_len_a"],
                                  self.decoding["max_len_b"])
            for i, tokens in zip(batch.ids.tolist(), out, strict=True):
                hyps[i] = remove_bpe(d.decode(tokens))
        targets = self.corpus.splits[split][1]
        order = sorted(hyps)
        return [hyps[i] for i in order], [remove_bpe(d.decode(targets[i].tolist(), "<<unk>>")) for i in order]

    def bleu(self, model: nn.Module, split: str, beam: int) -> float:
        hyps, refs = self.translate(model, split, beam)
        return corpus_bleu(hyps, refs, self.compound_split)

    def data_summary(self) -> dict[str, Any]:
        return {"layout": self.corpus.layout, "data_dir": self.data_dir,
                "vocab": {"source": len(self.corpus.src_dict), "target": len(self.corpus.tgt_dict)},
                "sentences": {s: len(src) for s, (src, _) in self.corpus.splits.items()},
                "target_tokens": {s: int(sum(len(t) for t in tgt)) for s, (_, tgt) in self.corpus.splits.items()},
                "skipped_too_long": dict(self.skipped),
                "train_batches": len(self.splits["train"])}
