"""`bench data prepare multi30k`: the Multi30k task-1 release (a few hundred real lines, gzipped as released, one
split plain) into the translation task's text layout, and the one-line error (exit 2) for a wrong RAW_DIR."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tasks.nmt.prepare_multi30k import prepare_multi30k
from tests.conftest import bench
from tests.nmt_fixtures import multi30k_dir

SIZES = {"train": 300, "val": 40, "test_2016_flickr": 30}


def raw_lines(name: str, lang: str, n: int) -> list[str]:
    return gzip.decompress((multi30k_dir() / f"{name}.{lang}.gz").read_bytes()).decode("utf-8").splitlines()[:n]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first lines of each release file: train and val gzipped as published, the test set plain text."""
    raw = tmp_path_factory.mktemp("multi30k") / "raw"
    raw.mkdir()
    for name, n in SIZES.items():
        for lang in ("de", "en"):
            text = ("\n".join(raw_lines(name, lang, n)) + "\n").encode("utf-8")
            if name == "test_2016_flickr":
                (raw / f"{name}.{lang}").write_bytes(text)
            else:
                (raw / f"{name}.{lang}.gz").write_bytes(gzip.compress(text))
    return raw


def test_release_becomes_the_text_layout_tokenized_lowercased_and_bpe_joined(release: Path) -> None:
    out = release.parent / "multi30k-bpe"
    assert prepare_multi30k([str(release), str(out), "--merges", "200"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["code", *(f"{s}.{lang}" for s in ("train", "valid", "test") for lang in ("de", "en"))])
    assert not out.with_name("multi30k-bpe.partial").exists()
    for split, name in (("train", "train"), ("valid", "val"), ("test", "test_2016_flickr")):
        for lang in ("de", "en"):
            lines = (out / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
            raw = raw_lines(name, lang, SIZES[name])
            assert len(lines) == len(raw)  # no cleaning: every pair kept, line-aligned
            assert lines == [line.lower() for line in lines]
            words = [line.replace("@@ ", "").split() for line in lines]
            assert all(w for w in words)
            # Moses splits the final period off each caption ("A man sleeps." -> "a man sleeps .")
            assert sum(line[-1] == "." for line in raw) == sum(w[-1] == "." and len(w) > 1 for w in words)
    train = (out / "train.en").read_text(encoding="utf-8")
    assert "@@ " in train and (out / "code").read_text(encoding="utf-8").count("\n") > 100


def test_a_wrong_raw_dir_is_one_error_line_naming_the_release(release: Path, tmp_path: Path) -> None:
    broken = tmp_path / "raw"
    broken.mkdir()
    (broken / "train.de.gz").write_bytes((release / "train.de.gz").read_bytes())
    proc = bench("data", "prepare", "multi30k", str(broken), str(tmp_path / "out"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = proc.stderr.strip()
    assert line.startswith("error:") and "\n" not in line
    assert "train.en" in line and "github.com/multi30k/dataset" in line and "data/task1/raw" in line
    assert not (tmp_path / "out").exists()
