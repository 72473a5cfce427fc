"""Label-smoothed cross-entropy as in the authors' fairseq 0.8.0 (`label_smoothed_nll_loss`):
loss = (1 - eps) * nll + (eps / V) * sum_v -log p_v, summed over non-padding target tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def label_smoothed_nll_loss(logits: torch.Tensor, target: torch.Tensor, epsilon: float,
                            ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(smoothed loss, nll loss), both summed over the tokens whose target is not `ignore_index`."""
    lprobs = F.log_softmax(logits.float(), dim=-1).view(-1, logits.shape[-1])
    target = target.reshape(-1, 1)
    keep = target.ne(ignore_index)
    nll = -lprobs.gather(dim=-1, index=target)[keep]
    smooth = -lprobs.sum(dim=-1, keepdim=True)[keep]
    nll_sum, smooth_sum = nll.sum(), smooth.sum()
    eps_i = epsilon / lprobs.shape[-1]
    return (1.0 - epsilon) * nll_sum + eps_i * smooth_sum, nll_sum
