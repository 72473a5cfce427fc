"""A pre-norm encoder-decoder transformer laid out as fairseq's `transformer_iwslt_de_en_v2` /
`transformer_wmt_en_de_v2` (the authors' fork of fairseq 0.8.0): scaled embeddings plus fairseq's sinusoidal
positions, LayerNorm before each block and after the last, ReLU FFN, shared embeddings, and fairseq's
initialisation. Attention goes through F.scaled_dot_product_attention, so the runner's switch to the math kernel
on Hessian steps applies (the fused kernels have no double backward)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tasks.nmt.dictionary import Dictionary


def sinusoidal_table(num: int, dim: int, padding_idx: int) -> torch.Tensor:
    """fairseq's SinusoidalPositionalEmbedding.get_embedding: [sin | cos] halves, 10000^(i/(half-1)),
    the padding row zero."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float) * -(math.log(10000) / (half - 1)))
    angles = torch.arange(num, dtype=torch.float)[:, None] * freq[None, :]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2:
        table = torch.cat([table, torch.zeros(num, 1)], dim=1)
    table[padding_idx] = 0
    return table


def make_positions(tokens: torch.Tensor, pad: int) -> torch.Tensor:
    """fairseq's make_positions: non-pad tokens count from pad+1, pads keep the pad index."""
    mask = tokens.ne(pad).long()
    return torch.cumsum(mask, dim=1) * mask + pad


class Attention(nn.Module):
    """Multi-head attention with fairseq's init (MultiheadAttention.reset_parameters): q, k, v weights xavier with
    gain 1/sqrt 2 and their biases left at nn.Linear's default U(+-1/sqrt(dim)); output weight xavier, bias 0."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"task.model.dim={dim} must be divisible by task.model.heads={heads}")
        self.heads, self.dropout = heads, dropout
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))
        for proj in (self.q, self.k, self.v):
            nn.init.xavier_uniform_(proj.weight, gain=1 / math.sqrt(2))
        nn.init.xavier_uniform_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def project(self, x: torch.Tensor, proj: nn.Linear) -> torch.Tensor:
        """(B, T, dim) -> (B, heads, T, dim / heads)."""
        b, t, d = x.shape
        return proj(x).view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """`mask` is boolean, True where a query may attend, broadcastable to (B, heads, T, S)."""
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        b, _, t, _ = out.shape
        return self.out(out.transpose(1, 2).reshape(b, t, -1))

    def forward(self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.attend(self.project(x, self.q), self.project(memory, self.k), self.project(memory, self.v), mask)


def linear(n_in: int, n_out: int) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class FeedForward(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, relu_dropout: float) -> None:
        super().__init__()
        self.fc1, self.fc2 = linear(dim, ffn_dim), linear(ffn_dim, dim)
        self.relu_dropout = relu_dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.dropout(F.relu(self.fc1(x)), self.relu_dropout, self.training))


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, heads: int, dropout: float, attention_dropout: float,
                 relu_dropout: float) -> None:
        super().__init__()
        self.attn_norm, self.ffn_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, attention_dropout)
        self.ffn = FeedForward(dim, ffn_dim, relu_dropout)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.attn_norm(x)
        x = x + F.dropout(self.attn(h, h, mask), self.dropout, self.training)
        return x + F.dropout(self.ffn(self.ffn_norm(x)), self.dropout, self.training)


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, heads: int, dropout: float, attention_dropout: float,
                 relu_dropout: float) -> None:
        super().__init__()
        self.self_norm, self.cross_norm, self.ffn_norm = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads, attention_dropout)
        self.cross_attn = Attention(dim, heads, attention_dropout)
        self.ffn = FeedForward(dim, ffn_dim, relu_dropout)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, memory: torch.Tensor, self_mask: torch.Tensor,
                memory_mask: torch.Tensor) -> torch.Tensor:
        h = self.self_norm(x)
        x = x + F.dropout(self.self_attn(h, h, self_mask), self.dropout, self.training)
        x = x + F.dropout(self.cross_attn(self.cross_norm(x), memory, memory_mask), self.dropout, self.training)
        return x + F.dropout(self.ffn(self.ffn_norm(x)), self.dropout, self.training)

    def step(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor,
             state: dict[str, torch.Tensor]) -> torch.Tensor:
        """One decoding position (inference): appends its keys and values to `state` (fairseq's incremental
        state) and reuses the projected encoder states kept there."""
        h = self.self_norm(x)
        attn = self.self_attn
        for name, proj in (("k", attn.k), ("v", attn.v)):
            new = attn.project(h, proj)
            state[name] = new if name not in state else torch.cat([state[name], new], dim=2)
        x = x + attn.attend(attn.project(h, attn.q), state["k"], state["v"], None)
        cross = self.cross_attn
        if "memory_k" not in state:
            state["memory_k"], state["memory_v"] = cross.project(memory, cross.k), cross.project(memory, cross.v)
        x = x + cross.attend(cross.project(self.cross_norm(x), cross.q), state["memory_k"], state["memory_v"],
                             memory_mask)
        return x + self.ffn(self.ffn_norm(x))


def embedding(vocab: int, dim: int, pad: int) -> nn.Embedding:
    emb = nn.Embedding(vocab, dim, padding_idx=pad)
    nn.init.normal_(emb.weight, mean=0.0, std=dim ** -0.5)
    nn.init.zeros_(emb.weight[pad])
    return emb


class Transformer(nn.Module):
    """Encoder-decoder; `forward(src, prev)` gives logits (B, T, V). `share_embeddings` ties the encoder and
    decoder embeddings and the output projection (fairseq's --share-all-embeddings, one joined vocabulary)."""

    def __init__(self, src_vocab: int, tgt_vocab: int, *, layers: int = 6, dim: int = 512, ffn_dim: int = 1024,
                 heads: int = 4, dropout: float = 0.3, attention_dropout: float = 0.1, relu_dropout: float = 0.1,
                 max_positions: int = 1024, share_embeddings: bool = True) -> None:
        super().__init__()
        pad = Dictionary.pad
        if share_embeddings and src_vocab != tgt_vocab:
            raise ValueError(f"task.model.share_embeddings=true needs one vocabulary; got {src_vocab} source and "
                             f"{tgt_vocab} target symbols")
        self.pad, self.scale, self.max_positions = pad, math.sqrt(dim), max_positions
        self.src_embed = embedding(src_vocab, dim, pad)
        self.tgt_embed = self.src_embed if share_embeddings else embedding(tgt_vocab, dim, pad)
        self.out_proj = None if share_embeddings else nn.Parameter(embedding(tgt_vocab, dim, pad).weight.detach())
        self.register_buffer("positions", sinusoidal_table(max_positions + pad + 1, dim, pad), persistent=False)
        sizes = (dim, ffn_dim, heads, dropout, attention_dropout, relu_dropout)
        self.encoder = nn.ModuleList(EncoderLayer(*sizes) for _ in range(layers))
        self.decoder = nn.ModuleList(DecoderLayer(*sizes) for _ in range(layers))
        self.encoder_norm, self.decoder_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout = dropout

    def embed(self, tokens: torch.Tensor, table: nn.Embedding) -> torch.Tensor:
        x = self.scale * table(tokens) + self.positions[make_positions(tokens, self.pad)]
        return F.dropout(x, self.dropout, self.training)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states and the key mask (B, 1, 1, S) that attention over them uses."""
        mask = src.ne(self.pad)[:, None, None, :]
        x = self.embed(src, self.src_embed)
        for layer in self.encoder:
            x = layer(x, mask)
        return self.encoder_norm(x), mask

    def decode(self, prev: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        t = prev.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=prev.device).tril()
        x = self.embed(prev, self.tgt_embed)
        for layer in self.decoder:
            x = layer(x, memory, causal, memory_mask)
        weight = self.tgt_embed.weight if self.out_proj is None else self.out_proj
        return F.linear(self.decoder_norm(x), weight)

    def decode_step(self, tokens: torch.Tensor, step: int, memory: torch.Tensor, memory_mask: torch.Tensor,
                    states: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """Logits (B, V) for decoder position `step` given its input tokens (B,), the earlier positions being in
        `states` (one dict per layer; reorder their "k"/"v" rows when beams are reordered)."""
        position = self.positions[self.pad + 1 + step]
        x = F.dropout(self.scale * self.tgt_embed(tokens[:, None]) + position, self.dropout, self.training)
        for layer, state in zip(self.decoder, states, strict=True):
            x = layer.step(x, memory, memory_mask, state)
        weight = self.tgt_embed.weight if self.out_proj is None else self.out_proj
        return F.linear(self.decoder_norm(x[:, 0]), weight)

    def forward(self, src: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        memory, mask = self.encode(src)
        return self.decode(prev, memory, mask)
