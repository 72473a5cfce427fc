"""`bench data prepare wmt14`: prepare-wmt14en2de.sh's steps on real Multi30k sentences laid out as the WMT14
release (part packed in its .tgz), the prepared folder training `task=wmt14_transformer`, and the one-line error
for a missing release file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.nmt.moses import MosesPipeline, remove_non_printing
from tasks.nmt.prepare_wmt14 import prepare_wmt14
from tasks.nmt.staging import ApplyBpe, LinePool
from tests.conftest import bench
from tests.nmt_fixtures import TINY_MODEL, write_wmt14_release
from tests.runs import run
from tests.threads import one_intraop_thread

RATIO_DROP = {"en": "Yes.", "de": "Ja, das ist wirklich ein sehr langer und ausführlicher deutscher Satz."}
KEPT_250 = {"en": " ".join(["a"] * 250), "de": " ".join(["a"] * 250)}
LONG_251 = {"en": " ".join(["a"] * 251), "de": " ".join(["a"] * 251)}
# 246 words, but the two unseen words become single letters under BPE: more than 250 pieces, so dropped
PIECES_DROP = {lang: " ".join(["a"] * 244) + " qxzjvq jqzxvj" for lang in ("en", "de")}
QUOTE = {"en": 'He said "Hello."', "de": 'Er sagte "Hallo."'}
CRAFTED = [RATIO_DROP, KEPT_250, LONG_251, PIECES_DROP, QUOTE]
TEST_CRAFTED = [{"en": "It’s a man’s world.", "de": "Es ist eine Männerwelt."}]


def unbpe(line: str) -> str:
    return line.replace("@@ ", "")


def read(folder: Path, name: str) -> list[str]:
    return (folder / name).read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    return write_wmt14_release(tmp_path_factory.mktemp("wmt14") / "orig", CRAFTED, TEST_CRAFTED)


@pytest.fixture(scope="module")
def prepared(release: tuple[Path, dict[str, list[str]]]) -> Path:
    raw, _ = release
    out = raw.parent / "wmt14_en_de"
    assert prepare_wmt14([str(raw), str(out), "--merges", "200", "--workers", "1"]) == 0
    return out


def kept_by_clean_corpus(en: str, de: str) -> bool:
    """clean-corpus-n.perl -ratio 1.5 ... 1 250 on one pair of (already single-spaced) lines."""
    ne, nd = len(en.split(" ")), len(de.split(" "))
    return 1 <= ne <= 250 and 1 <= nd <= 250 and ne / nd <= 1.5 and nd / ne <= 1.5


def test_valid_is_every_100th_line_and_both_splits_are_cleaned_after_bpe(release: tuple[Path, dict],
                                                                         prepared: Path) -> None:
    _, lines = release
    n = len(lines["en"])
    assert n == 315 and sorted(p.name for p in prepared.iterdir()) == sorted(
        ["code", *(f"{s}.{lang}" for s in ("train", "valid", "test") for lang in ("en", "de"))])
    bpe = ApplyBpe(prepared / "code")
    pieces = {lang: [bpe(MosesPipeline(lang, normalize=True, aggressive=True)(x)) for x in lines[lang]]
              for lang in ("en", "de")}
    valid = [k - 1 for k in range(100, n + 1, 100)]
    train = [i for i in range(n) if i not in valid]
    for split, rows in (("valid", valid), ("train", train)):
        kept = [i for i in rows if kept_by_clean_corpus(pieces["en"][i], pieces["de"][i])]
        for lang in ("en", "de"):
            assert read(prepared, f"{split}.{lang}") == [pieces[lang][i] for i in kept]
    assert len(read(prepared, "valid.en")) == 3 and 290 < len(read(prepared, "train.en")) < 312 - 3


def test_clean_corpus_runs_after_bpe_with_ratio_and_length_limits(prepared: Path) -> None:
    train = {lang: [unbpe(x) for x in read(prepared, f"train.{lang}")] for lang in ("en", "de")}
    assert "Yes ." not in train["en"]  # 2 / 13 tokens: ratio above 1.5
    assert KEPT_250["en"] in train["en"] and LONG_251["en"] not in train["en"]  # 1..250
    pieces = ApplyBpe(prepared / "code")(PIECES_DROP["en"]).split(" ")
    assert len(PIECES_DROP["en"].split(" ")) <= 250 < len(pieces), "the drop below must come from BPE pieces"
    assert PIECES_DROP["en"] not in train["en"]
    assert "@@ " in "\n".join(read(prepared, "train.de") + read(prepared, "test.en"))


def test_tokenization_is_aggressive_escaped_normalized_and_cased(prepared: Path) -> None:
    train = {lang: [unbpe(x) for x in read(prepared, f"train.{lang}")] for lang in ("en", "de")}
    assert any("blond @-@ haired" in line for line in train["en"])  # tokenizer.perl -a
    assert "Er sagte &quot; Hallo &quot; ." in train["de"]  # normalize-punctuation.perl moves the final `."`
    assert "He said &quot; Hello . &quot;" in train["en"]
    assert any(line[0].isupper() for line in train["de"]), "WMT is not lower-cased"


def test_test_set_is_the_sgm_segments(prepared: Path) -> None:
    test = {lang: [unbpe(x) for x in read(prepared, f"test.{lang}")] for lang in ("en", "de")}
    assert len(test["en"]) == len(test["de"]) == 21
    assert test["en"][0] == "It &apos;s a man &apos;s world ."  # ’ -> ' before tokenizing
    assert test["de"][0] == "Es ist eine Männerwelt ."
    assert not any("<" in line or "seg" in line for line in test["en"] + test["de"])


def test_wmt14_transformer_trains_on_the_prepared_folder(tmp_path: Path, prepared: Path) -> None:
    with one_intraop_thread():
        record = run(tmp_path, "task=wmt14_transformer", "optimizer=adamw", f"task.data_dir={prepared}",
                     *TINY_MODEL, "task.max_tokens=100000", "task.model.max_positions=64", "trainer.device=cpu",
                     "trainer.epochs=1", "trainer.average_last=1", "task.max_len_a=1.0", "task.max_len_b=5")
    assert record["status"] == "completed", record["error"]
    assert record["cost"]["steps"] == 1 and record["data"]["layout"] == "text"
    assert record["data"]["skipped_too_long"]["train"] >= 1  # the 250-token pair, beyond max_positions 64
    assert record["data"]["sentences"] == {"train": len(read(prepared, "train.de")), "valid": 3, "test": 21}
    assert record["test"]["sentences"] == 21 - record["data"]["skipped_too_long"]["test"]


def test_a_missing_release_file_is_one_error_line(tmp_path: Path, release: tuple[Path, dict]) -> None:
    raw, _ = release
    broken = tmp_path / "orig"
    broken.mkdir()
    (broken / "training").symlink_to(raw / "training")
    (broken / "training-parallel-commoncrawl.tgz").symlink_to(raw / "training-parallel-commoncrawl.tgz")
    proc = bench("data", "prepare", "wmt14", str(broken), str(tmp_path / "out"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    missing = broken / "test-full" / "newstest2014-deen-src.en.sgm"
    assert proc.stderr.startswith(f"error: {missing}: missing, and no {broken / 'test-full.tgz'}")
    assert "http://statmt.org/wmt14/test-full.tgz" in proc.stderr and not (tmp_path / "out").exists()


def test_moses_steps_match_the_perl_scripts_on_their_quirks() -> None:
    assert remove_non_printing("a\u200bb\u00adc\x07d") == "a b c d"  # \p{C}: Cf and Cc alike
    de = MosesPipeline("de", normalize=True, aggressive=True)
    assert de("„Sie kamen“, sagte er.") == "&quot; Sie kamen &quot; , sagte er ."
    assert de("Das ist ein Ost-West-Konflikt.") == "Das ist ein Ost @-@ West @-@ Konflikt ."
    assert MosesPipeline("de")("   ") == "   "  # tokenizer.perl passes blank lines through


def test_line_pool_keeps_line_order_across_workers_and_jobs(prepared: Path) -> None:
    lines = [f"Line {i}: a well-known, tiny test." for i in range(60)]
    tokenize, bpe = MosesPipeline("en", aggressive=True), ApplyBpe(prepared / "code")
    with LinePool(2) as pool:
        for job in (tokenize, bpe, tokenize):
            assert list(pool.map(job, lines, chunk=7)) == [job(line) for line in lines]
