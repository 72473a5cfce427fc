"""fairseq-style token buckets: sentences sorted by length, batches of at most `max_tokens` (padded), nothing
dropped; the order of the batches, not their content, is shuffled per (seed, epoch), so resume is exact."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tasks.nmt.dictionary import Dictionary


@dataclass
class Batch:
    """Right-padded source, decoder input (`</s>` + target[:-1], as fairseq's prev_output_tokens) and target."""

    src: torch.Tensor
    prev: torch.Tensor
    target: torch.Tensor
    ids: torch.Tensor  # sentence indices in the split, for putting hypotheses back in order
    ntokens: int  # non-padding target tokens, counted on the host so no step waits for the device
    src_lens: torch.Tensor  # per-row source and target lengths, on the host (for sub-batches without a sync)
    tgt_lens: torch.Tensor


def head(batch: Batch, fraction: float) -> Batch:
    """Every (1/fraction)-th sentence (at least one), padding trimmed to their longest and target tokens recounted:
    the curvature sub-batch (`trainer.hessian_batch_fraction`) of a token bucket. Strided, because a bucket's
    rows run from short to long; sizes come from the host-side lengths, so no device sync."""
    n = len(batch.ids)
    k = max(1, int(n * fraction))
    rows = torch.linspace(0, n - 1, k).round().long() if k > 1 else torch.zeros(1, dtype=torch.long)
    src_lens, tgt_lens = batch.src_lens[rows], batch.tgt_lens[rows]
    s_len, t_len = int(src_lens.max()), int(tgt_lens.max())
    on = rows.to(batch.src.device)
    return Batch(batch.src[on, :s_len], batch.prev[on, :t_len], batch.target[on, :t_len], batch.ids[rows],
                 int(tgt_lens.sum()), src_lens, tgt_lens)


def ordered_indices(src_lens: np.ndarray, tgt_lens: np.ndarray, seed: int) -> np.ndarray:
    """fairseq's LanguagePairDataset.ordered_indices: a seeded permutation, then stable sorts by target and by
    source length, so the order is by (source, target) length with seeded ties."""
    order = np.random.default_rng(seed).permutation(len(src_lens))
    order = order[np.argsort(tgt_lens[order], kind="mergesort")]
    return order[np.argsort(src_lens[order], kind="mergesort")]


def batch_by_size(order: np.ndarray, src_lens: np.ndarray, tgt_lens: np.ndarray, max_tokens: int,
                  max_sentences: int = 0) -> list[np.ndarray]:
    """Greedy cut of `order` into batches whose size x longest sentence stays within `max_tokens`
    (fairseq's batch_by_size with required_batch_size_multiple=1). A sentence longer than `max_tokens` is a
    batch of its own (callers skip those first)."""
    batches: list[np.ndarray] = []
    start, longest = 0, 0
    lens = np.maximum(src_lens, tgt_lens)
    for i, idx in enumerate(order):
        n = int(lens[idx])
        size = i - start
        full = size > 0 and ((size + 1) * max(longest, n) > max_tokens or (max_sentences and size >= max_sentences))
        if full:
            batches.append(order[start:i])
            start, longest = i, 0
        longest = max(longest, n)
    if start < len(order):
        batches.append(order[start:])
    return batches


def collate(src: list[np.ndarray], tgt: list[np.ndarray], ids: np.ndarray, device: torch.device) -> Batch:
    """Pad one batch; `prev` is the target shifted right behind `</s>`, as fairseq feeds the decoder."""
    pad, eos = Dictionary.pad, Dictionary.eos
    b = len(ids)
    s_len = max(len(src[i]) for i in ids)
    t_len = max(len(tgt[i]) for i in ids)
    s = np.full((b, s_len), pad, dtype=np.int64)
    t = np.full((b, t_len), pad, dtype=np.int64)
    p = np.full((b, t_len), pad, dtype=np.int64)
    for row, i in enumerate(ids):
        s[row, :len(src[i])] = src[i]
        t[row, :len(tgt[i])] = tgt[i]
        p[row, 0] = eos
        p[row, 1:len(tgt[i])] = tgt[i][:-1]
    as_tensor = lambda a: torch.from_numpy(a).to(device, non_blocking=True)  # noqa: E731
    src_lens = torch.tensor([len(src[i]) for i in ids], dtype=torch.long)
    tgt_lens = torch.tensor([len(tgt[i]) for i in ids], dtype=torch.long)
    return Batch(as_tensor(s), as_tensor(p), as_tensor(t), torch.from_numpy(np.asarray(ids, dtype=np.int64)),
                 int(tgt_lens.sum()), src_lens, tgt_lens)


class TokenBatches:
    """The batches of one split, built once; `epoch_order` shuffles their order per (seed, epoch)."""

    def __init__(self, src: list[np.ndarray], tgt: list[np.ndarray], keep: np.ndarray, max_tokens: int, seed: int,
                 max_sentences: int = 0) -> None:
        self.src, self.tgt = src, tgt
        src_lens = np.asarray([len(a) for a in src], dtype=np.int64)
        tgt_lens = np.asarray([len(a) for a in tgt], dtype=np.int64)
        order = ordered_indices(src_lens, tgt_lens, seed)
        order = order[keep[order]]
        self.batches = batch_by_size(order, src_lens, tgt_lens, max_tokens, max_sentences)

    def __len__(self) -> int:
        return len(self.batches)

    def epoch_order(self, generator: torch.Generator) -> list[int]:
        return torch.randperm(len(self.batches), generator=generator, device="cpu").tolist()

    def get(self, i: int, device: torch.device) -> Batch:
        return collate(self.src, self.tgt, self.batches[i], device)
