"""Contiguous-stream batching, as pytorch/examples' word_language_model `batchify` and `get_batch`.

Training: the train stream is trimmed to a multiple of `batch_size` and cut into `batch_size` contiguous
rows; step k takes columns [k*bptt, (k+1)*bptt) of every row as input and the same shifted by one as target
(the last window of an epoch is shorter). The window order is fixed, as in pytorch/examples and
Transformer-XL's ordered iterator: the model keeps no state between windows, so shuffling would be
possible, but the standard setup does not, and a fixed order makes every epoch the same pass.

Evaluation covers the whole held-out stream: `<eos>` (the end of the line before the split's first line)
is put in front, so every token of the split is predicted exactly once, in bptt-long windows that each start
with a fresh context; the token count is the split's length.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch


def batchify(stream: torch.Tensor, rows: int) -> torch.Tensor:
    """(rows, L): the stream's first rows*L tokens, row r holding the r-th contiguous stretch."""
    length = len(stream) // rows
    return stream[: rows * length].view(rows, length)


def windows_per_epoch(row_length: int, bptt: int) -> int:
    """How many (input, target) windows one pass over rows of `row_length` tokens gives."""
    return max(0, math.ceil((row_length - 1) / bptt))


def train_windows(rows: torch.Tensor, bptt: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Windows `start, start+1, ...` of one pass: inputs rows[:, i:i+n], targets rows[:, i+1:i+1+n]."""
    length = rows.shape[1]
    for i in range(start * bptt, length - 1, bptt):
        n = min(bptt, length - 1 - i)
        yield rows[:, i:i + n], rows[:, i + 1:i + 1 + n]


def heldout_windows(stream: torch.Tensor, bptt: int, eos: int,
                    windows_per_batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of up to `windows_per_batch` windows predicting every token of `stream` once; the ragged
    last window comes alone."""
    context = torch.cat([stream.new_tensor([eos]), stream[:-1]])
    full = len(stream) // bptt
    inputs = context[: full * bptt].view(full, bptt)
    targets = stream[: full * bptt].view(full, bptt)
    for i in range(0, full, windows_per_batch):
        yield inputs[i:i + windows_per_batch], targets[i:i + windows_per_batch]
    if len(stream) % bptt:
        yield context[full * bptt:][None], stream[full * bptt:][None]


def perplexity(nll_sum: float, tokens: int) -> float:
    """exp(mean token negative log-likelihood, in nats); inf where that overflows a float."""
    mean = nll_sum / tokens
    return math.exp(mean) if mean < 700 else math.inf
