"""The reference DLRM (facebookresearch/dlrm dlrm_s_pytorch.py, `DLRM_Net`) in its Kaggle configuration.

`--arch-sparse-feature-size=16 --arch-mlp-bot=13-512-256-64-16 --arch-mlp-top=512-256-1
--arch-interaction-op=dot` (bench/dlrm_s_criteo_kaggle.sh): 26 `nn.EmbeddingBag(n, 16, mode="sum",
sparse=True)` tables, a bottom MLP on the 13 dense features, pairwise dot products of the 27 vectors without
self-pairs (27 * 26 / 2 = 351) concatenated with the bottom MLP's output (367 inputs to the top MLP), ReLU
everywhere except the top MLP's last layer. Initialisation as `create_mlp`/`create_emb`: weights
N(0, sqrt(2 / (fan_in + fan_out))), biases N(0, sqrt(1 / fan_out)), tables U(-sqrt(1 / n), sqrt(1 / n)).
The reference ends with a sigmoid and BCELoss; this model returns the logit and the task uses
BCE-with-logits, the same loss computed stably.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn


def reference_mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers between consecutive `sizes`, ReLU after each but the caller decides the last."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        linear = nn.Linear(fan_in, fan_out)
        with torch.no_grad():
            linear.weight.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)))
            linear.bias.normal_(0.0, math.sqrt(1.0 / fan_out))
        layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers)


class DLRM(nn.Module):
    """Embeddings + bottom MLP -> dot interaction -> top MLP -> one click logit per example."""

    def __init__(self, table_sizes: Sequence[int], bottom_mlp: Sequence[int], top_mlp: Sequence[int],
                 embedding_dim: int = 16) -> None:
        super().__init__()
        if bottom_mlp[-1] != embedding_dim:
            raise ValueError(f"task.model.bottom_mlp={list(bottom_mlp)}: must end with task.model.embedding_dim="
                             f"{embedding_dim} (the dot interaction pairs it with the embeddings)")
        if top_mlp[-1] != 1:
            raise ValueError(f"task.model.top_mlp={list(top_mlp)}: must end with 1 (one click logit)")
        self.embeddings = nn.ModuleList()
        for n in table_sizes:
            table = nn.EmbeddingBag(n, embedding_dim, mode="sum", sparse=True)
            with torch.no_grad():
                table.weight.uniform_(-math.sqrt(1.0 / n), math.sqrt(1.0 / n))
            self.embeddings.append(table)
        self.bottom = reference_mlp(bottom_mlp)
        vectors = len(table_sizes) + 1
        self.top = reference_mlp([embedding_dim + vectors * (vectors - 1) // 2, *top_mlp])[:-1]  # logit: no ReLU
        rows, cols = torch.tril_indices(vectors, vectors, offset=-1)  # the reference's li, lj (j < i)
        self.register_buffer("pair_rows", rows, persistent=False)
        self.register_buffer("pair_cols", cols, persistent=False)

    def mlp_parameters(self) -> list[nn.Parameter]:
        return [*self.bottom.parameters(), *self.top.parameters()]

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        """`dense` (B, 13) float, `sparse` (B, 26) int codes, one index per bag."""
        x = self.bottom(dense)
        embedded = [table(sparse[:, j:j + 1]) for j, table in enumerate(self.embeddings)]
        vectors = torch.stack([x, *embedded], dim=1)  # (B, 27, d)
        products = torch.bmm(vectors, vectors.transpose(1, 2))
        interaction = torch.cat([x, products[:, self.pair_rows, self.pair_cols]], dim=1)
        return self.top(interaction).squeeze(1)
