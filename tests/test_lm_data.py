"""Language-model data: the real PTB's token counts, the WikiText cache, batching, perplexity, and bad input."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tasks.base import DataError
from tasks.lm.batching import batchify, heldout_windows, train_windows, windows_per_epoch
from tasks.lm.corpus import CACHE_DIR, load_ptb, load_wikitext, prepare_wikitext
from tasks.lm.task import LanguageModelTask
from tests.lm_fixtures import write_ptb, write_wikitext

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PTB_DIR = (SHARED if SHARED.is_dir() else Path("/work/shared/data")) / "ptb"
TINY = dict(layers=1, dim=16, ffn_dim=32, heads=2, dropout=0.0, vocab_size=None)
RUNTIME = dict(device=torch.device("cpu"), batch_size=4, eval_batch_size=8, seed=0)


def needs_ptb() -> None:
    if not (PTB_DIR / "ptb.train.txt").is_file():
        pytest.skip(f"real PTB absent: {PTB_DIR}/ptb.train.txt (see shared/data/README.md)")


def test_real_ptb_has_the_standard_token_counts() -> None:
    needs_ptb()
    corpus = load_ptb(PTB_DIR)
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (929_589, 73_760, 82_430)
    assert len(corpus.words) == 10_000 and corpus.words[corpus.train[-1]] == "<eos>"
    assert "<unk>" in corpus.words


def test_batchify_and_windows_follow_pytorch_examples() -> None:
    stream = torch.arange(23)
    rows = batchify(stream, 4)  # 23 // 4 = 5 tokens per row, the last 3 dropped
    assert rows.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14], [15, 16, 17, 18, 19]]
    windows = list(train_windows(rows, 3))
    assert len(windows) == windows_per_epoch(5, 3) == 2
    (x0, y0), (x1, y1) = windows
    assert x0[1].tolist() == [5, 6, 7] and y0[1].tolist() == [6, 7, 8]
    assert x1[1].tolist() == [8] and y1[1].tolist() == [9]  # the short last window
    resumed = list(train_windows(rows, 3, start=1))
    assert len(resumed) == 1 and torch.equal(resumed[0][0], x1)


def test_heldout_windows_predict_every_token_once() -> None:
    stream = torch.arange(1, 12)  # 11 tokens; eos id 0 is the first context
    batches = list(heldout_windows(stream, bptt=3, eos=0, windows_per_batch=2))
    targets = torch.cat([y.flatten() for _, y in batches])
    inputs = torch.cat([x.flatten() for x, _ in batches])
    assert targets.tolist() == stream.tolist()
    assert inputs.tolist() == [0, *stream[:-1].tolist()]
    assert [tuple(x.shape) for x, _ in batches] == [(2, 3), (1, 3), (1, 2)]


class Bigram(nn.Module):
    """Logits log T[prev] from a fixed next-word table: a model whose perplexity can be worked by hand."""

    def __init__(self, table: list[list[float]]) -> None:
        super().__init__()
        self.log_table = torch.tensor(table).log()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.log_table[ids]


def test_perplexity_of_a_hand_worked_example(tmp_path: Path) -> None:
    # Vocabulary in order of first appearance in train: a=0, b=1, <eos>=2. Valid "a b / a" is the stream
    # a b <eos> a <eos>, predicted from the contexts <eos> a b <eos> a.
    (tmp_path / "ptb.train.txt").write_text(" a b \n a \n")
    (tmp_path / "ptb.valid.txt").write_text(" a b \n a \n")
    (tmp_path / "ptb.test.txt").write_text(" b \n")
    task = LanguageModelTask("ptb", str(tmp_path), 2, TINY, device=torch.device("cpu"), batch_size=1,
                             eval_batch_size=1, seed=0)
    table = [[0.25, 0.5, 0.25],  # after a
             [0.25, 0.25, 0.5],  # after b
             [0.5, 0.25, 0.25]]  # after <eos>
    # P = T[eos][a] T[a][b] T[b][eos] T[eos][a] T[a][eos] = 0.5^4 * 0.25 -> NLL 6 ln 2 over 5 tokens.
    result = task.score(Bigram(table), task.valid)
    assert result["tokens"] == 5
    assert result["loss"] == pytest.approx(6 * math.log(2) / 5)
    assert result["ppl"] == pytest.approx(2 ** 1.2)
    # The test split " b " is b <eos>: T[eos][b] T[b][eos] = 0.25 * 0.5 -> ppl sqrt(8).
    assert task.test(Bigram(table))["ppl"] == pytest.approx(math.sqrt(8))


def test_wikitext_cache_is_built_once_reused_and_rebuilt_when_the_source_changes(tmp_path: Path) -> None:
    root = write_wikitext(tmp_path / "wt")
    first = load_wikitext(root, quiet=True)
    cache = root / CACHE_DIR
    assert first.cache == cache and (cache / "meta.json").is_file()
    assert isinstance(first.train, np.memmap)
    train_lines = (root / "wiki.train.tokens").read_text().splitlines()
    assert len(first.train) == sum(len(line.split()) + 1 for line in train_lines)  # blank lines give one <eos>
    assert {"=", "@-@", "<unk>", "<eos>"} <= set(first.words)
    unk = first.words.index("<unk>")
    assert first.valid[-3] == unk  # 'neverseen' is not a train word: <unk>, not an error
    stamp = (cache / "train.ids").stat().st_mtime_ns
    again = load_wikitext(root, quiet=True)
    assert (cache / "train.ids").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert np.array_equal(again.train, first.train) and again.words == first.words
    with (root / "wiki.train.tokens").open("a") as f:
        f.write(" w3 w4 w5 \n")
    rebuilt = load_wikitext(root, quiet=True)
    assert len(rebuilt.train) == len(first.train) + 4


def test_bench_data_prepare_function_builds_the_cache(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_wikitext(tmp_path / "wt")
    out = tmp_path / "elsewhere"
    assert prepare_wikitext([str(root), "--cache-dir", str(out)]) == 0
    assert (out / "meta.json").is_file() and not (root / CACHE_DIR).exists()
    assert "tokens with <eos>: train" in capsys.readouterr().out


def test_missing_and_empty_split_files_are_one_line_errors(tmp_path: Path) -> None:
    root = write_ptb(tmp_path / "ptb")
    (root / "ptb.test.txt").unlink()
    missing = r"ptb\.test\.txt: file missing; expected .* \(task\.data_dir\) to hold ptb\.train\.txt"
    with pytest.raises(DataError, match=missing):
        load_ptb(root)
    (root / "ptb.test.txt").write_text("")
    with pytest.raises(DataError, match=r"ptb\.test\.txt: the file is empty"):
        load_ptb(root)
    wiki = write_wikitext(tmp_path / "wt")
    (wiki / "wiki.test.tokens").write_bytes(b" caf\xe9 \n")  # Latin-1, not the release's UTF-8
    with pytest.raises(DataError, match=r"wiki\.test\.tokens: not UTF-8 text"):
        load_wikitext(wiki, quiet=True)
    os.remove(wiki / "wiki.valid.tokens")
    with pytest.raises(DataError, match=r"wiki\.valid\.tokens: file missing"):
        load_wikitext(wiki, quiet=True)


def test_an_unknown_word_in_ptb_valid_names_the_line(tmp_path: Path) -> None:
    root = write_ptb(tmp_path / "ptb")
    with (root / "ptb.valid.txt").open("a") as f:
        f.write(" w1 stranger w2 \n")
    with pytest.raises(DataError, match=r"ptb\.valid\.txt:41: word 'stranger' is not in the train vocabulary"):
        load_ptb(root)


def test_vocabulary_larger_than_the_embedding_and_bptt_longer_than_valid(tmp_path: Path) -> None:
    root = write_ptb(tmp_path / "ptb", n_heldout=2)
    vocab = len(load_ptb(root).words)
    with pytest.raises(DataError, match=rf"task\.model\.vocab_size=10: .* has {vocab} words"):
        LanguageModelTask("ptb", str(root), 4, {**TINY, "vocab_size": 10}, **RUNTIME)
    task = LanguageModelTask("ptb", str(root), 4, {**TINY, "vocab_size": vocab + 3}, **RUNTIME)
    assert task.build_model().embed.num_embeddings == vocab + 3
    valid = len(task.valid)
    with pytest.raises(DataError, match=rf"task\.bptt={valid + 1}: longer than the {valid}-token valid split"):
        LanguageModelTask("ptb", str(root), valid + 1, TINY, **RUNTIME)


def test_ranks_take_disjoint_rows_of_the_global_batch(tmp_path: Path) -> None:
    root = write_ptb(tmp_path / "ptb")
    runtime = {**RUNTIME, "batch_size": 4}
    whole = LanguageModelTask("ptb", str(root), 5, TINY, **runtime)
    parts = [LanguageModelTask("ptb", str(root), 5, TINY, **runtime, rank=r, world_size=2) for r in (0, 1)]
    assert all(p.steps_per_epoch() == whole.steps_per_epoch() for p in parts)
    assert torch.equal(torch.cat([p.rows for p in parts]), whole.rows)


def test_synthetic_streams_have_the_real_shapes() -> None:
    task = LanguageModelTask("ptb", "/nonexistent", 8, TINY, synthetic=16, **RUNTIME)
    x, y = next(iter(task.train_batches(0)))
    assert x.shape == y.shape == (4, 8) and task.build_model()(x).shape == (4, 8, 10_000)
    assert task.steps_per_epoch() == windows_per_epoch(16 * 8 // 4, 8)


def test_label_smoothing_is_the_eps_over_v_formula_and_validated() -> None:
    task = LanguageModelTask("ptb", "/nonexistent", 8, TINY, synthetic=16, label_smoothing=0.1, **RUNTIME)
    torch.manual_seed(0)
    model = task.build_model().eval()
    batch = next(iter(task.train_batches(0)))
    loss, n = task.loss(model, batch)
    logp = torch.log_softmax(model(batch[0]).float(), -1).flatten(0, 1)
    nll = -logp.gather(1, batch[1].reshape(-1, 1)).mean()
    torch.testing.assert_close(loss, 0.9 * nll + 0.1 * (-logp.mean(1)).mean())
    assert n == batch[1].numel()
    with pytest.raises(ValueError, match=r"task\.label_smoothing=1\.0: expected a number in \[0, 1\)"):
        LanguageModelTask("ptb", "/nonexistent", 8, TINY, synthetic=16, label_smoothing=1.0, **RUNTIME)
