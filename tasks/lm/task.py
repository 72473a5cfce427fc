"""Word-level language modelling (the paper's Table 4): PTB, WikiText-2, WikiText-103; metric perplexity."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tasks.base import DataError, Metric, Task
from tasks.lm.batching import batchify, heldout_windows, perplexity, train_windows, windows_per_epoch
from tasks.lm.corpus import EOS, Corpus, load_corpus
from tasks.lm.model import TransformerLM

CORPORA = {"ptb": "ptb", "wikitext2": "wikitext", "wikitext103": "wikitext"}  # name -> on-disk format
# Vocabulary sizes as the PTB and WikiText papers give them: only the logits' width for synthetic timing.
STANDARD_VOCAB = {"ptb": 10_000, "wikitext2": 33_278, "wikitext103": 267_735}
MODEL_KEYS = ("layers", "dim", "ffn_dim", "heads", "dropout", "vocab_size")


def random_corpus(sequences: int, bptt: int, vocab: int, seed: int = 0) -> Corpus:
    """Random ids of the real vocabulary width: `sequences` bptt-long train windows, a tenth as many held out."""
    rng = np.random.default_rng(seed)
    held_out = max(1, sequences // 10) * bptt
    words = [f"w{i}" for i in range(vocab - 1)] + [EOS]
    return Corpus(words, *(rng.integers(0, vocab, n, dtype=np.int32) for n in (sequences * bptt, held_out, held_out)))


class LanguageModelTask(Task):
    """Next-word prediction on a contiguous token stream; evaluation is perplexity over a whole split.

    `synthetic > 0` ignores `data_dir` and trains on that many random bptt-long sequences of the corpus's
    standard vocabulary width: for `bench perf` timings only, never for perplexity.
    """

    metric = Metric("ppl", "min")
    throughput_unit = "tokens"

    def __init__(self, corpus: str, data_dir: str, bptt: int, model: dict[str, Any], synthetic: int = 0,
                 train_tokens: int = 0, cache_dir: str | None = None, label_smoothing: float = 0.0,
                 **runtime: Any) -> None:
        super().__init__(**runtime)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"task.label_smoothing={label_smoothing}: expected a number in [0, 1), e.g. 0.1")
        self.label_smoothing = label_smoothing
        if corpus not in CORPORA:
            raise ValueError(f"task.corpus={corpus}: expected one of {', '.join(CORPORA)}")
        if set(model) != set(MODEL_KEYS):
            raise ValueError(f"task.model: expected exactly the keys {', '.join(MODEL_KEYS)}, got {', '.join(model)}")
        if bptt < 1 or train_tokens < 0 or synthetic < 0:
            raise ValueError(f"task.bptt={bptt}, task.train_tokens={train_tokens}, task.synthetic={synthetic}: "
                             "bptt must be >= 1, the others >= 0")
        if self.batch_size % self.world_size:
            raise ValueError(f"trainer.batch_size={self.batch_size} must be divisible by the {self.world_size} "
                             "processes of the run")
        self.bptt = bptt
        self.model_cfg = model
        if synthetic > 0:
            data = random_corpus(synthetic, bptt, model["vocab_size"] or STANDARD_VOCAB[corpus])
        else:
            data = load_corpus(CORPORA[corpus], data_dir, cache_dir)
        vocab = len(data.words)
        self.vocab_size = model["vocab_size"] or vocab
        if self.vocab_size < vocab:
            raise DataError(f"task.model.vocab_size={self.vocab_size}: the train split of {data_dir} has {vocab:,} "
                            f"words (with <eos>), more than the embedding holds; set task.model.vocab_size=null "
                            f"(size it to the vocabulary) or >= {vocab}")
        if bptt > len(data.valid):
            raise DataError(f"task.bptt={bptt}: longer than the {len(data.valid)}-token valid split of "
                            f"{data_dir}; use task.bptt <= {len(data.valid)}")
        self.eos = data.words.index(EOS) if synthetic == 0 else vocab - 1
        train = data.train[:train_tokens] if train_tokens else data.train
        self.train_tokens = len(train)
        local = self.batch_size // self.world_size
        rows = batchify(self.to_device(train), self.batch_size)
        self.rows = rows[self.rank * local:(self.rank + 1) * local]
        self.valid = self.to_device(data.valid)
        self.test_stream = self.to_device(data.test)
        self.summary = {**data.summary(), "train_tokens_used": self.train_tokens,
                        "tokens_per_epoch": self.rows.numel() * self.world_size}

    def to_device(self, ids: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(ids, dtype=np.int64)).to(self.device)

    def build_model(self) -> nn.Module:
        m = self.model_cfg
        return TransformerLM(self.vocab_size, self.bptt, m["layers"], m["dim"], m["ffn_dim"], m["heads"],
                             m["dropout"])

    def steps_per_epoch(self) -> int:
        return windows_per_epoch(self.rows.shape[1], self.bptt)

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The same pass every epoch (see tasks.lm.batching); `start` skips windows without building them."""
        return train_windows(self.rows, self.bptt, start)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Training loss: cross-entropy with `label_smoothing` ((1-eps)·nll + eps·mean over the vocabulary of
        -log p, fairseq's eps/V form; the paper smooths by 0.1 in all LM runs). Perplexity never smooths."""
        x, y = batch
        logits = model(x)
        return F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), label_smoothing=self.label_smoothing), \
            y.numel()

    def score(self, model: nn.Module, stream: torch.Tensor) -> dict[str, float]:
        """Perplexity over every token of `stream`, the mean NLL it comes from, and the token count."""
        nll, tokens = torch.zeros((), dtype=torch.float64, device=self.device), 0
        for x, y in heldout_windows(stream, self.bptt, self.eos, self.eval_batch_size):
            logits = model(x).float()
            nll += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").double()
            tokens += y.numel()
        total = nll.item()
        return {"ppl": perplexity(total, tokens), "loss": total / tokens, "tokens": float(tokens)}

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return self.score(model, self.valid)

    @torch.no_grad()
    def test(self, model: nn.Module) -> dict[str, float]:
        return self.score(model, self.test_stream)

    def data_summary(self) -> dict[str, Any]:
        return self.summary
