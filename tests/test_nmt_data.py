"""Translation data: fairseq's dictionary and mmap formats byte for byte, both layouts giving identical batches on
the real Multi30k, the prepare-iwslt14.sh steps, and one-line errors for broken folders."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.schedules import warmup_invsqrt
from tasks.base import DataError
from tasks.nmt.batching import batch_by_size
from tasks.nmt.dictionary import Dictionary
from tasks.nmt.indexed import MAGIC, read_indexed, write_indexed
from tasks.nmt.moses import clean_corpus
from tasks.nmt.prepare import prepare_iwslt14
from tasks.nmt.task import TranslationTask
from tests.conftest import bench
from tests.nmt_fixtures import write_data_bin_from, write_iwslt_release, write_text_layout

TINY = {"layers": 1, "dim": 16, "ffn_dim": 32, "heads": 2}


def make_task(data_dir: Path, **kwargs) -> TranslationTask:
    args = {"model": TINY, "max_tokens": 400} | kwargs
    return TranslationTask(str(data_dir), "de", "en", device=torch.device("cpu"), batch_size=1, eval_batch_size=1,
                           seed=3, **args)


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_text_layout(tmp_path_factory.mktemp("m30k") / "text", n_train=600, n_eval=60, merges=200)


def test_dictionary_orders_and_writes_like_fairseq(tmp_path: Path) -> None:
    d = Dictionary.build(["b a c a", "c a d"])
    assert d.symbols[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert d.symbols[4:8] == ["a", "c", "b", "d"]  # by count, ties alphabetical
    assert len(d) % 8 == 0 and d.symbols[8:] == [] and len(d) == 8
    d2 = Dictionary.build(["x y z w v"])
    assert len(d2) == 16 and d2.symbols[9] == "madeupword0000" and d2.counts[9] == 0
    d2.save(tmp_path / "dict.txt")
    lines = (tmp_path / "dict.txt").read_text().splitlines()
    assert lines[0] == "v 1" and lines[5] == "madeupword0000 0" and len(lines) == 12
    assert Dictionary.load(tmp_path / "dict.txt") == d2
    assert d.encode("a zz") == [4, 3, 2] and d.decode([4, 3, 2, 1]) == "a <unk>"


def test_mmap_index_is_fairseqs_byte_layout(tmp_path: Path) -> None:
    items = [[5, 6, 2], [7, 2], [9, 9, 9, 2]]
    write_indexed(tmp_path / "x", items, np.uint16)
    raw = (tmp_path / "x.idx").read_bytes()
    assert raw[:9] == MAGIC == b"MMIDIDX\x00\x00"
    assert struct.unpack_from("<QBQQ", raw, 9) == (1, 8, 3, 1)  # version 1, uint16, 3 items, doc_idx [0]
    header = 9 + 8 + 1 + 8 + 8
    assert np.frombuffer(raw, np.int32, 3, header).tolist() == [3, 2, 4]
    assert np.frombuffer(raw, np.int64, 3, header + 12).tolist() == [0, 6, 10]  # byte offsets
    assert np.frombuffer(raw, np.int64, 1, header + 36).tolist() == [0]
    assert np.fromfile(tmp_path / "x.bin", np.uint16).tolist() == [5, 6, 2, 7, 2, 9, 9, 9, 2]
    assert [a.tolist() for a in read_indexed(tmp_path / "x")] == items


def test_batches_respect_max_tokens_and_keep_every_sentence() -> None:
    src = np.array([3, 9, 4, 4, 12, 2])
    tgt = np.array([5, 2, 4, 6, 1, 3])
    order = np.argsort(src, kind="mergesort")
    batches = batch_by_size(order, src, tgt, max_tokens=16)
    assert sorted(np.concatenate(batches).tolist()) == list(range(6))
    for b in batches:
        assert len(b) == 1 or len(b) * max(np.maximum(src, tgt)[b]) <= 16


def test_text_layout_and_data_bin_give_identical_batches(text_dir: Path, tmp_path: Path) -> None:
    data_bin = write_data_bin_from(text_dir, tmp_path / "data-bin")
    assert (data_bin / "dict.de.txt").read_text() == (data_bin / "dict.en.txt").read_text()
    text, binary = make_task(text_dir), make_task(data_bin)
    assert text.corpus.layout == "text" and binary.corpus.layout == "data-bin"
    assert text.steps_per_epoch() == binary.steps_per_epoch() > 1
    for epoch in (0, 1):
        pairs = list(zip(text.train_batches(epoch), binary.train_batches(epoch), strict=True))
        for a, b in pairs:
            assert torch.equal(a.src, b.src) and torch.equal(a.prev, b.prev) and torch.equal(a.target, b.target)
    assert [b.ids.tolist() for b in text.batches("valid")] == [b.ids.tolist() for b in binary.batches("valid")]
    first = [b.ids[0].item() for b in text.train_batches(0)]
    assert first != [b.ids[0].item() for b in text.train_batches(1)], "batch order is reshuffled per epoch"
    seen = sorted(i for b in text.train_batches(0) for i in b.ids.tolist())
    assert seen == list(range(600)), "every training sentence is in exactly one batch"
    resumed = [b.ids.tolist() for b in text.train_batches(1, start=2)]
    assert resumed == [b.ids.tolist() for b in text.train_batches(1)][2:]


def test_sentences_longer_than_max_positions_are_skipped_and_counted(text_dir: Path) -> None:
    task = make_task(text_dir, model=TINY | {"max_positions": 20})
    summary = task.data_summary()
    lengths = [max(len(s), len(t)) for s, t in zip(*task.corpus.splits["train"], strict=True)]
    assert summary["skipped_too_long"]["train"] == sum(n > 20 for n in lengths) > 0
    assert all(b.src.shape[1] <= 20 and b.target.shape[1] <= 20 for b in task.train_batches(0))


def test_broken_folders_are_one_line_data_errors(text_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "missing"
    broken.mkdir()
    for name in ("train.de", "train.en", "valid.de", "valid.en", "test.de"):
        (broken / name).write_text((text_dir / name).read_text())
    with pytest.raises(DataError, match=r"test\.en: file missing"):
        make_task(broken)
    (broken / "test.en").write_text("just one line\n")
    with pytest.raises(DataError, match=r"test\.de has 60 lines but .*test\.en has 1"):
        make_task(broken)
    data_bin = write_data_bin_from(text_dir, tmp_path / "bin")
    lines = (data_bin / "dict.en.txt").read_text().splitlines()
    (data_bin / "dict.en.txt").write_text("\n".join(lines[:50]) + "\n")
    with pytest.raises(DataError, match=r"token id \d+ but dict\.en\.txt has 54 symbols"):
        make_task(data_bin, model=TINY | {"share_embeddings": False})
    with pytest.raises(DataError, match="neither a fairseq data-bin"):
        make_task(tmp_path)


def test_bench_run_on_a_missing_folder_is_one_error_line(tmp_path: Path) -> None:
    proc = bench("run", "task=iwslt14_transformer", f"task.data_dir={tmp_path}", f"paths.runs={tmp_path / 'runs'}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("error: ")
    assert "neither a fairseq data-bin" in proc.stderr


def test_warmup_invsqrt_follows_fairseqs_inverse_sqrt() -> None:
    lr, init, warmup = 0.047, 3.13333333e-6, 8000
    factor = warmup_invsqrt(warmup, lr, init, 3.13333333e-8)
    step = (lr - init) / warmup
    for t in (0, 1, 4000, 7999):
        assert factor(t) * lr == pytest.approx(init + t * step, rel=1e-12)
    for t in (8000, 20000, 10**6):
        assert factor(t) * lr == pytest.approx(lr * math.sqrt(warmup) / math.sqrt(t), rel=1e-12)
    assert warmup_invsqrt(warmup, lr, init, 0.04)(10**6) * lr == pytest.approx(0.04)
    default = warmup_invsqrt(4)
    assert [default(t) for t in (0, 3, 15)] == [0.25, 1.0, 0.5]


def test_clean_corpus_is_clean_corpus_n_with_ratio_one_and_a_half() -> None:
    src = ["a  b c", "a", "", "x " * 176, "a|b c"]
    tgt = ["a b", "a b c", "a", "x", "d e"]
    # 2nd: 1/3 words < 1/1.5, 3rd: empty, 4th: > 175 words; `|` is removed (the first line is not factored)
    assert clean_corpus(src, tgt) == (["a b c", "ab c"], ["a b", "d e"])


def test_prepare_iwslt14_runs_the_scripts_steps(tmp_path: Path) -> None:
    raw = write_iwslt_release(tmp_path / "raw", n_train=230, n_test=4)
    out = tmp_path / "iwslt14.tokenized.de-en"
    assert prepare_iwslt14([str(raw), str(out), "--merges", "100"]) == 0
    lines = {f"{s}.{lang}": (out / f"{s}.{lang}").read_text().splitlines()
             for s in ("train", "valid", "test") for lang in ("de", "en")}
    assert len(lines["valid.de"]) == len(lines["valid.en"]) == len(lines["train.de"] + lines["valid.de"]) // 23
    assert len(lines["test.de"]) == len(lines["test.en"]) == 20 and len(lines["train.de"]) == len(lines["train.en"])
    text = "\n".join(lines["train.en"] + lines["test.de"])
    assert "<title>" not in text and "<seg" not in text and "ted.com" not in text and text == text.lower()
    assert "@@ " in text and " ." in text  # BPE joiners; Moses splits the final period
    assert (out / "code").read_text().count("\n") > 50
    task = make_task(out)
    assert task.data_summary()["sentences"]["test"] == 20
    with pytest.raises(DataError, match=r"not a folder or \.tgz"):
        prepare_iwslt14([str(tmp_path / "nowhere"), str(tmp_path / "o")])
