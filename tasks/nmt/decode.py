"""Greedy and beam search with fairseq SequenceGenerator's rules: start from `</s>`, never emit `<pad>`, no `</s>`
before min_len=1, `</s>` forced at max_len = min(a * src_len + b, max_positions - 1); a beam hypothesis ending
in `</s>` among the top `beam` candidates is finished with score sum(log p) / len**lenpen (len counts `</s>`),
and a sentence is done once it has `beam` finished hypotheses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tasks.nmt.dictionary import Dictionary
from tasks.nmt.model import Transformer


def max_length(model: Transformer, src: torch.Tensor, max_len_a: float, max_len_b: int) -> int:
    return min(int(max_len_a * src.shape[1] + max_len_b), model.max_positions - 1)


def step_lprobs(logits: torch.Tensor, step: int, max_len: int) -> torch.Tensor:
    lprobs = F.log_softmax(logits.float(), dim=-1)
    lprobs[:, Dictionary.pad] = -torch.inf
    if step < 1:  # min_len = 1
        lprobs[:, Dictionary.eos] = -torch.inf
    if step >= max_len:
        eos = lprobs[:, Dictionary.eos].clone()
        lprobs.fill_(-torch.inf)
        lprobs[:, Dictionary.eos] = eos
    return lprobs


@torch.no_grad()
def greedy(model: Transformer, src: torch.Tensor, max_len_a: float = 0.0, max_len_b: int = 200) -> list[list[int]]:
    """Arg-max decoding of a batch; each hypothesis without its `</s>`."""
    memory, mask = model.encode(src)
    max_len = max_length(model, src, max_len_a, max_len_b)
    tokens = torch.full((src.shape[0], 1), Dictionary.eos, dtype=torch.long, device=src.device)
    finished = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    states: list[dict[str, torch.Tensor]] = [{} for _ in model.decoder]
    for step in range(max_len + 1):
        logits = model.decode_step(tokens[:, -1], step, memory, mask, states)
        nxt = step_lprobs(logits, step, max_len).argmax(-1)
        nxt = torch.where(finished, torch.full_like(nxt, Dictionary.pad), nxt)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        finished |= nxt.eq(Dictionary.eos)
        if bool(finished.all()):
            break
    return [[t for t in row[1:] if t not in (Dictionary.eos, Dictionary.pad)] for row in tokens.tolist()]


@torch.no_grad()
def beam_search(model: Transformer, src: torch.Tensor, beam: int = 5, lenpen: float = 1.0, max_len_a: float = 0.0,
                max_len_b: int = 200) -> list[list[int]]:
    """The best finished hypothesis per sentence (without `</s>`), as fairseq-generate prints it."""
    bsz = src.shape[0]
    memory, mask = model.encode(src)
    memory, mask = memory.repeat_interleave(beam, 0), mask.repeat_interleave(beam, 0)
    max_len = max_length(model, src, max_len_a, max_len_b)
    tokens = torch.full((bsz * beam, 1), Dictionary.eos, dtype=torch.long, device=src.device)
    scores = torch.zeros(bsz * beam, device=src.device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(bsz)]
    states: list[dict[str, torch.Tensor]] = [{} for _ in model.decoder]
    for step in range(max_len + 1):
        lprobs = step_lprobs(model.decode_step(tokens[:, -1], step, memory, mask, states), step, max_len)
        vocab = lprobs.shape[1]
        cand = (scores[:, None] + lprobs).view(bsz, beam, vocab)
        if step == 0:  # all beams are the same `</s>` prefix: expand the first only
            cand = cand[:, :1]
        top, idx = cand.reshape(bsz, -1).topk(min(2 * beam, cand.shape[1] * vocab), dim=1)
        top_l, idx_l, history = top.tolist(), idx.tolist(), tokens[:, 1:].tolist()
        keep_rows, keep_tokens, keep_scores = [], [], []
        for b in range(bsz):
            active = []
            for rank, (score, flat) in enumerate(zip(top_l[b], idx_l[b], strict=True)):
                if len(finished[b]) >= beam or score == -torch.inf:
                    break
                row, tok = b * beam + flat // vocab, flat % vocab
                if tok == Dictionary.eos:
                    if rank < beam:
                        finished[b].append((score / (step + 1) ** lenpen, history[row]))
                elif len(active) < beam:
                    active.append((row, tok, score))
            while len(active) < beam:  # a done sentence keeps dummy beams until the batch ends
                active.append((b * beam, Dictionary.pad, -torch.inf))
            for row, tok, score in active:
                keep_rows.append(row)
                keep_tokens.append(tok)
                keep_scores.append(score)
        if all(len(f) >= beam for f in finished):
            break
        rows = torch.tensor(keep_rows, device=src.device)
        for state in states:  # beams move within their sentence, so the encoder projections stay in place
            state["k"], state["v"] = state["k"][rows], state["v"][rows]
        tokens = torch.cat([tokens[rows], torch.tensor(keep_tokens, device=src.device)[:, None]], dim=1)
        scores = torch.tensor(keep_scores, device=src.device)
    return [max(f, key=lambda h: h[0])[1] if f else [] for f in finished]
