"""The transformer, loss, decoding and BLEU against fairseq's formulas and hand-worked numbers, and the Hessian
step under the math attention kernel."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bench.step import train_step
from optimizers import AdaHessian
from tasks.nmt.bleu import corpus_bleu, remove_bpe, split_compounds
from tasks.nmt.decode import beam_search, greedy
from tasks.nmt.dictionary import Dictionary
from tasks.nmt.loss import label_smoothed_nll_loss
from tasks.nmt.model import Attention, Transformer, make_positions, sinusoidal_table
from tasks.nmt.task import TranslationTask

PAD = Dictionary.pad


def test_attention_init_is_fairseqs_multihead_attention() -> None:
    """fairseq's MultiheadAttention.reset_parameters (the authors' fork and upstream): q/k/v weights xavier-uniform
    with gain 1/sqrt(2), out_proj xavier-uniform with bias 0; q/k/v biases are not reset, so they keep nn.Linear's
    default U(-1/sqrt(dim), 1/sqrt(dim))."""
    dim = 512
    torch.manual_seed(0)
    attn = Attention(dim, 4, 0.0)
    torch.manual_seed(0)
    default_q = torch.nn.Linear(dim, dim)  # q is built first, so it drew the same bias
    torch.testing.assert_close(attn.q.bias, default_q.bias, rtol=0, atol=0)
    bound = 1 / math.sqrt(dim)
    for proj in (attn.q, attn.k, attn.v):
        b = proj.bias.detach()
        assert b.abs().max() <= bound and b.abs().max() > 0.9 * bound  # spans the default's range
        assert abs(b.std().item() - bound / math.sqrt(3)) < 0.15 * bound / math.sqrt(3)
        xavier = 1 / math.sqrt(2) * math.sqrt(6 / (2 * dim))
        assert proj.weight.abs().max() <= xavier and proj.weight.abs().max() > 0.99 * xavier
    assert not torch.equal(attn.q.bias, attn.k.bias)
    assert torch.count_nonzero(attn.out.bias) == 0
    assert attn.out.weight.abs().max() > 0.99 * math.sqrt(6 / (2 * dim))


def test_sinusoidal_positions_are_fairseqs() -> None:
    table = sinusoidal_table(10, 8, PAD)
    assert torch.all(table[PAD] == 0)
    p, i, half = 5, 2, 4
    freq = math.exp(-i * math.log(10000) / (half - 1))
    assert table[p, i].item() == pytest.approx(math.sin(p * freq), abs=1e-6)
    assert table[p, half + i].item() == pytest.approx(math.cos(p * freq), abs=1e-6)
    tokens = torch.tensor([[7, 8, 2, PAD, PAD], [7, 8, 9, 10, 2]])
    assert make_positions(tokens, PAD).tolist() == [[2, 3, 4, 1, 1], [2, 3, 4, 5, 6]]


def test_label_smoothed_loss_is_the_eps_over_v_formula_without_padding() -> None:
    logits = torch.tensor([[[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 0.4], [1.0, 1.0, 1.0, 1.0]]])
    target = torch.tensor([[0, 3, PAD]])
    loss, nll = label_smoothed_nll_loss(logits, target, 0.1, PAD)
    lp = F.log_softmax(logits[0, :2], dim=-1)
    hand_nll = -(lp[0, 0] + lp[1, 3])
    hand = 0.9 * hand_nll + (0.1 / 4) * -lp.sum()
    assert nll.item() == pytest.approx(hand_nll.item(), rel=1e-6)
    assert loss.item() == pytest.approx(hand.item(), rel=1e-6)


def test_bleu_on_a_hand_worked_example() -> None:
    # 1- to 4-gram precisions 5/6, 3/5, 2/4, 1/3 ("the" clipped to one), equal lengths so BP = 1.
    expected = 100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert corpus_bleu(["the cat sat on the mat"], ["the cat sat on a mat"]) == pytest.approx(expected, abs=1e-9)
    # A shorter hypothesis pays the brevity penalty exp(1 - 6/5).
    short = 100 * math.exp(1 - 6 / 5) * (5 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25
    assert corpus_bleu(["the cat sat on mat"], ["the cat sat on a mat"]) == pytest.approx(short, abs=1e-9)
    assert remove_bpe("th@@ e cat@@ s s@@") == "the cats s"
    assert split_compounds("a well-known co-op - x") == "a well ##AT##-##AT## known co ##AT##-##AT## op - x"


def tiny_model(attention_dropout: float = 0.0) -> Transformer:
    torch.manual_seed(0)
    return Transformer(24, 24, layers=2, dim=16, ffn_dim=32, heads=2, dropout=0.0,
                       attention_dropout=attention_dropout, max_positions=64)


def test_incremental_decoding_equals_the_full_decoder() -> None:
    model = tiny_model().eval()
    src = torch.tensor([[5, 6, 7, 8, 2], [9, 10, 2, PAD, PAD]])
    prev = torch.tensor([[2, 11, 12, 13], [2, 14, 15, 16]])
    memory, mask = model.encode(src)
    full = model.decode(prev, memory, mask)
    states = [{} for _ in model.decoder]
    steps = [model.decode_step(prev[:, t], t, memory, mask, states) for t in range(prev.shape[1])]
    torch.testing.assert_close(torch.stack(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_beam_of_one_is_greedy_and_beams_end_in_eos_rules() -> None:
    model = tiny_model().eval()
    src = torch.tensor([[5, 6, 7, 8, 2], [9, 10, 2, PAD, PAD]])
    g = greedy(model, src, max_len_b=12)
    assert beam_search(model, src, beam=1, max_len_b=12) == g
    beams = beam_search(model, src, beam=4, lenpen=0.6, max_len_b=12)
    assert len(beams) == 2 and all(0 < len(h) <= 12 and PAD not in h and 2 not in h for h in beams)


def test_hessian_step_runs_under_the_math_kernel() -> None:
    """The default CPU kernel (flash, chosen when attention dropout is off) has no double backward; the runner's
    train_step switches to the math kernel on Hessian steps, so AdaHessian trains."""
    task = TranslationTask("", "de", "en", synthetic=16, loss_reduction="sum", max_tokens=200,
                           model={"layers": 1, "dim": 16, "ffn_dim": 32, "heads": 2, "attention_dropout": 0.0},
                           device=torch.device("cpu"), batch_size=1, eval_batch_size=1, seed=0)
    model = task.build_model()
    batch = next(task.train_batches(0))
    loss, _ = task.loss(model, batch)
    grads = torch.autograd.grad(loss, list(model.parameters()), create_graph=True)
    with pytest.raises(RuntimeError, match="flash_attention"):
        torch.autograd.grad(grads, list(model.parameters()), grad_outputs=[torch.ones_like(g) for g in grads])
    before = [p.detach().clone() for p in model.parameters()]
    opt = AdaHessian(model.parameters(), lr=0.01, block_size=32, seed=0)
    train_step(task, model, opt, batch, hessian=True, device=torch.device("cpu"))
    assert opt.hvp_count == 1
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
