"""Criteo Kaggle train.txt: parsing edge cases, the reference split, first-seen dictionaries, the cache."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tasks.base import DataError
from tasks.dlrm.parse import MISSING_ID, Block, parse_file
from tasks.dlrm.prepare import ensure_prepared, prepare_criteo, split_ranges, split_sizes
from tasks.dlrm.task import CriteoDLRMTask
from tasks.dlrm.torchrec import find_torchrec, load_torchrec
from tests.conftest import bench
from tests.criteo_fixtures import kaggle_line, learnable_rows, real_sample, write_train

EMPTY13, EMPTY26 = [""] * 13, [""] * 26


def log1(x: float) -> np.float32:
    return np.float32(math.log(x + 1))


def first_seen(columns: list[list[str]]) -> list[dict[str, int]]:
    """Per-column dictionaries built the slow, obvious way."""
    dicts: list[dict[str, int]] = [{} for _ in columns[0]]
    for row in columns:
        for j, value in enumerate(row):
            dicts[j].setdefault(value, len(dicts[j]))
    return dicts


def parse_all(path: Path) -> Block:
    blocks = list(parse_file(path))
    return Block(*(np.concatenate([getattr(b, k) for b in blocks]) for k in ("labels", "dense", "ids")),
                 sum(b.skipped for b in blocks), sum(b.lines for b in blocks))


def load(prepared, name: str) -> np.ndarray:
    return np.load(prepared.folder / f"{name}.npy")[: prepared.manifest["rows"]]


def test_reference_split_sizes() -> None:
    # 7 chunks, the first total % 7 one longer; the 7th halved, test first (one longer when odd).
    assert split_sizes(100) == {"train": 86, "test": 7, "val": 7}
    assert split_sizes(45_840_617) == {"train": 39_291_958, "test": 3_274_330, "val": 3_274_329}
    assert split_sizes(7) == {"train": 6, "test": 1, "val": 0}


def test_split_ranges_paper_and_reference() -> None:
    sizes = split_sizes(100)  # days of 15, 15, 14, 14, 14, 14, 14: train 86, day 7 is rows 86-99
    assert split_ranges(sizes, "paper_day7") == {"train": (0, 86), "test": (86, 100), "val": (86, 100)}
    assert split_ranges(sizes, "dlrm_half_day7") == {"train": (0, 86), "test": (86, 93), "val": (93, 100)}
    with pytest.raises(ValueError, match=r"task\.test_split=day7: expected one of paper_day7, dlrm_half_day7"):
        split_ranges(sizes, "day7")


def _task(data_dir: Path, **kwargs: object) -> CriteoDLRMTask:
    return CriteoDLRMTask(str(data_dir), prepare_workers=1, model={"embedding_dim": 4, "bottom_mlp": [13, 8, 4],
                          "top_mlp": [8, 1]}, device=torch.device("cpu"), batch_size=32, eval_batch_size=16, seed=0,
                          rank=0, world_size=1, **kwargs)


@pytest.mark.parametrize(("test_split", "test_rows", "val_rows"),
                         [("paper_day7", (600, 700), (600, 700)), ("dlrm_half_day7", (600, 650), (650, 700))])
def test_test_split_scores_the_rows_it_names(tmp_path: Path, test_split: str, test_rows: tuple[int, int],
                                             val_rows: tuple[int, int]) -> None:
    """700 rows = 7 days of 100: both train on days 1-6; the paper tests on all of day 7, the reference on its
    first half. test() scores exactly those rows of train.txt (checked against the file's own labels)."""
    lines = learnable_rows(700)
    task = _task(write_train(tmp_path / "data", lines), test_split=test_split)
    assert task.data.splits == {"train": (0, 600), "test": test_rows, "val": val_rows} and task.n_train == 600
    summary = task.data_summary()
    assert summary["test_split"] == test_split
    assert summary["split"] == {"train": 600, "test": test_rows[1] - test_rows[0], "val": val_rows[1] - val_rows[0]}
    torch.manual_seed(0)
    model = task.build_model().eval()
    lo, hi = test_rows
    labels = np.array([int(line.split("\t")[0]) for line in lines[lo:hi]], dtype=np.float64)
    np.testing.assert_array_equal(task.data.labels[lo:hi], labels)
    dense, sparse, _ = task.batch(slice(lo, hi))
    with torch.no_grad():
        p = torch.sigmoid(model(dense, sparse)).numpy().astype(np.float64)
    assert task.test(model)["accuracy"] == pytest.approx(100.0 * np.mean(np.round(p) == labels), abs=1e-12)
    assert task.evaluate(model) == task.score(model, "val")


def test_test_split_default_is_the_papers_and_a_wrong_value_is_one_line(tmp_path: Path) -> None:
    folder = write_train(tmp_path / "data", learnable_rows(70))
    assert _task(folder).data.splits["test"] == (60, 70)
    with pytest.raises(ValueError, match=r"task\.test_split=half: expected one of paper_day7, dlrm_half_day7"):
        _task(folder, test_split="half")


def test_real_sample_test_split(tmp_path: Path) -> None:
    lines = real_sample().read_text().splitlines()
    folder = write_train(tmp_path / "data", lines)
    for test_split, test_rows in (("paper_day7", (86, 100)), ("dlrm_half_day7", (86, 93))):
        data = _task(folder, test_split=test_split).data
        assert data.splits["test"] == test_rows
        lo, hi = test_rows
        np.testing.assert_array_equal(data.labels[lo:hi], [float(line.split("\t")[0]) for line in lines[lo:hi]])


def test_real_sample_rows_dictionaries_and_values(tmp_path: Path) -> None:
    source = real_sample()
    lines = source.read_text().splitlines()
    write_train(tmp_path / "data", lines)
    prepared = ensure_prepared(tmp_path / "data", quiet=True, workers=1)
    m = prepared.manifest
    assert (m["lines"], m["rows"], m["skipped_lines"]) == (100, 100, 0)
    assert m["split"] == {"train": 86, "test": 7, "val": 7}
    fields = [line.split("\t") for line in lines]
    dicts = first_seen([f[14:] for f in fields])
    assert m["table_sizes"] == [len(d) for d in dicts]
    sparse = load(prepared, "sparse")
    assert sparse.dtype == np.int32
    expected_codes = np.array([[dicts[j][v] for j, v in enumerate(f[14:])] for f in fields])
    np.testing.assert_array_equal(sparse, expected_codes)
    np.testing.assert_array_equal(load(prepared, "labels"), [float(f[0]) for f in fields])
    # Row 1 of the real file: 0, '', 0, 5, 4, 13275, 14, 35, 4, 41, '', 4, 0, 4.
    dense = load(prepared, "dense")
    assert fields[0][1:14] == ["", "0", "5", "4", "13275", "14", "35", "4", "41", "", "4", "0", "4"]
    expected = [0, 0, log1(5), log1(4), log1(13275), log1(14), log1(35), log1(4), log1(41), 0, log1(4), 0, log1(4)]
    np.testing.assert_allclose(dense[0], expected, rtol=1e-6)
    ids = parse_all(source).ids
    assert ids[0, 1] == 0xF0CF0024 and ids[0, 1] >= 2**31  # beyond int32
    assert ids[0, 21] == MISSING_ID  # C22 is empty in the first row


def test_edge_cases_parse_as_specified(tmp_path: Path) -> None:
    rows = [
        kaggle_line(1, EMPTY13, EMPTY26),
        kaggle_line(0, ["-5", "-1", "0", "7", *[""] * 9], ["ffffffff", "80000000", "7fffffff", "0000000a", *[""] * 22]),
        kaggle_line(1, ["3"] * 13, ["ffffffff", "", "7fffffff", "0000000A", *["1"] * 22]),
    ]
    lf = parse_all(write_train(tmp_path / "lf", rows) / "train.txt")
    crlf = parse_all(write_train(tmp_path / "crlf", rows, ending="\r\n") / "train.txt")
    bare = parse_all(write_train(tmp_path / "bare", rows, final_newline=False) / "train.txt")
    for block in (crlf, bare):
        np.testing.assert_array_equal(block.ids, lf.ids)
        np.testing.assert_array_equal(block.dense, lf.dense)
    np.testing.assert_array_equal(lf.labels, [1, 0, 1])
    np.testing.assert_array_equal(lf.dense[0], np.zeros(13))  # missing -> 0
    np.testing.assert_array_equal(lf.dense[1, :4], [0, 0, 0, log1(7)])  # negatives -> 0
    np.testing.assert_array_equal(lf.ids[0], [MISSING_ID] * 26)
    assert list(lf.ids[1, :4]) == [0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 10]
    assert lf.ids.dtype == np.int64 and lf.ids[2, 3] == 10  # upper-case hex
    prepared = ensure_prepared(tmp_path / "crlf", quiet=True, workers=1)
    # Missing is its own category: C2 has 0x80000000 and missing (rows 1, 3) -> 2 codes; C1 ffffffff twice + missing.
    assert prepared.manifest["table_sizes"][:4] == [2, 2, 2, 2]
    np.testing.assert_array_equal(load(prepared, "sparse")[:, 0], [0, 1, 1])


@pytest.mark.parametrize(("bad", "where"), [
    (kaggle_line(0, EMPTY13, EMPTY26)[:-1], "train.txt:3: 39 tab-separated fields, expected 40"),
    (kaggle_line(0, EMPTY13, ["zzzzzzzz", *EMPTY26[1:]]), "train.txt:3: C1 must be a hex id"),
    (kaggle_line(0, ["1.5", *EMPTY13[1:]], EMPTY26), "train.txt:3: I1 must be an integer count"),
    (kaggle_line(2, EMPTY13, EMPTY26), "train.txt:3: label must be 0 or 1"),
])
def test_bad_line_names_file_line_and_fix_or_is_skipped(tmp_path: Path, bad: str, where: str) -> None:
    good = learnable_rows(4)
    folder = write_train(tmp_path, [*good[:2], bad, *good[2:]])
    with pytest.raises(DataError) as error:
        ensure_prepared(folder, quiet=True, workers=1)
    assert where in str(error.value) and "task.skip_bad_lines=true" in str(error.value)
    assert not (folder / ".bench-cache" / "criteo_kaggle_v1_full").exists()  # nothing trusted left behind
    prepared = ensure_prepared(folder, skip_bad_lines=True, quiet=True, workers=1)
    assert (prepared.manifest["rows"], prepared.manifest["skipped_lines"]) == (4, 1)
    with pytest.raises(DataError, match="skipped when this cache"):
        ensure_prepared(folder, quiet=True, workers=1)


def test_truncated_last_line_is_an_error_or_skipped(tmp_path: Path) -> None:
    lines = learnable_rows(9)
    folder = write_train(tmp_path, [*lines, lines[0][:37]], final_newline=False)  # cut mid-record
    with pytest.raises(DataError, match=r"train.txt:10: \d+ tab-separated fields"):
        ensure_prepared(folder, quiet=True, workers=1)
    m = ensure_prepared(folder, skip_bad_lines=True, quiet=True, workers=1).manifest
    assert (m["lines"], m["rows"], m["skipped_lines"]) == (10, 9, 1)
    assert m["split"] == split_sizes(9)


def test_blocks_and_worker_processes_give_the_same_cache(tmp_path: Path) -> None:
    folder = write_train(tmp_path, learnable_rows(300))
    one = ensure_prepared(folder, tmp_path / "one", quiet=True, workers=1)
    small = ensure_prepared(folder, tmp_path / "small", quiet=True, workers=1, block_bytes=997)
    assert one.manifest["table_sizes"] == small.manifest["table_sizes"]
    for name in ("labels", "dense", "sparse"):
        np.testing.assert_array_equal(load(one, name), load(small, name))


def test_max_ind_range_hashes_ids_first(tmp_path: Path) -> None:
    rows = [kaggle_line(0, EMPTY13, [f"{v:08x}", *EMPTY26[1:]]) for v in (3, 13, 23, 5, 0xFFFFFFFF, 0)]
    prepared = ensure_prepared(write_train(tmp_path, rows), max_ind_range=10, quiet=True, workers=1)
    # ids mod 10: 3, 3, 3, 5, 5 (4294967295 % 10), 0 -> three distinct codes in first-seen order.
    np.testing.assert_array_equal(load(prepared, "sparse")[:, 0], [0, 0, 0, 1, 1, 2])
    assert prepared.folder.name.endswith("mod10")


def test_unchanged_source_reuses_and_changed_source_rebuilds(tmp_path: Path) -> None:
    lines = learnable_rows(20)
    folder = write_train(tmp_path, lines)
    first = ensure_prepared(folder, quiet=True, workers=1)
    inode = os.stat(first.folder / "sparse.npy").st_ino
    again = ensure_prepared(folder, quiet=True, workers=1)
    assert os.stat(again.folder / "sparse.npy").st_ino == inode
    flipped = "1" if lines[0][0] == "0" else "0"
    write_train(folder, [flipped + lines[0][1:], *lines[1:]])  # same size, one label changed
    changed = ensure_prepared(folder, quiet=True, workers=1)
    assert changed.manifest["source"]["blake2b_sampled"] != first.manifest["source"]["blake2b_sampled"]
    assert load(changed, "labels")[0] == float(flipped)
    write_train(folder, lines[:14])  # a different size
    assert ensure_prepared(folder, quiet=True, workers=1).manifest["rows"] == 14


def test_killed_prepare_leaves_nothing_trusted(tmp_path: Path) -> None:
    folder = write_train(tmp_path, learnable_rows(10))
    cache = folder / ".bench-cache"
    stale = cache / ".tmp-999999999-deadbeef"  # a killed prepare's folder (no such pid)
    stale.mkdir(parents=True)
    half = cache / "criteo_kaggle_v1_full"  # arrays without a manifest: never trusted
    half.mkdir()
    (half / "labels.npy").write_bytes(b"partial")
    prepared = ensure_prepared(folder, quiet=True, workers=1)
    assert not stale.exists() and prepared.manifest["rows"] == 10
    assert json.loads((half / "manifest.json").read_text())["rows"] == 10


def test_missing_empty_and_foreign_data_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        ensure_prepared(tmp_path / "nowhere", quiet=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "data.csv").write_text("a,b\n")
    with pytest.raises(DataError, match=r"holds no train\.txt"):
        ensure_prepared(tmp_path / "other", quiet=True)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "train.txt").write_text("")
    with pytest.raises(DataError, match="empty file"):
        ensure_prepared(tmp_path / "empty", quiet=True)
    write_train(tmp_path / "csv", ["0,1,2,3"])
    with pytest.raises(DataError, match=r"train\.txt:1: 1 tab-separated fields, expected 40"):
        ensure_prepared(tmp_path / "csv", quiet=True)


def test_prepare_command_prints_its_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_train(tmp_path, learnable_rows(14))
    assert prepare_criteo([str(folder), "--workers", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 14 and summary["split"] == {"train": 12, "test": 1, "val": 1}
    assert summary["lines_per_s"] > 0


def test_torchrec_layout_is_read_in_place(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for day in range(7):
        np.save(tmp_path / f"day_{day}_dense.npy", rng.random((10, 13), dtype=np.float32))
        np.save(tmp_path / f"day_{day}_sparse.npy", rng.integers(-2**31, 2**31, (10, 26)).astype(np.int32))
        np.save(tmp_path / f"day_{day}_labels.npy", np.full((10, 1), day % 2, dtype=np.int32))
    assert find_torchrec(tmp_path) == [f"day_{d}" for d in range(7)]
    with pytest.raises(DataError, match=r"task\.max_ind_range"):
        load_torchrec(tmp_path, -1)
    data = load_torchrec(tmp_path, 1000, "dlrm_half_day7")
    assert data.splits == {"train": (0, 60), "test": (60, 65), "val": (65, 70)}
    assert load_torchrec(tmp_path, 1000, "paper_day7").splits == {"train": (0, 60), "test": (60, 70), "val": (60, 70)}
    rows = np.array([3, 9, 10, 65])
    np.testing.assert_array_equal(data.labels[rows], [0, 0, 1, 0])
    raw = np.load(tmp_path / "day_6_sparse.npy")[5]
    np.testing.assert_array_equal(data.sparse[np.array([65])][0], np.mod(raw.astype(np.int64), 1000))
    np.testing.assert_array_equal(data.dense[slice(10, 12)], np.load(tmp_path / "day_1_dense.npy")[:2])


def test_bench_data_prepare_command(tmp_path: Path) -> None:
    folder = write_train(tmp_path / "good", learnable_rows(21))
    done = bench("data", "prepare", "criteo_dlrm", str(folder), "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["split"] == {"train": 18, "test": 2, "val": 1}
    assert "lines/s" in done.stderr and (folder / ".bench-cache" / "criteo_kaggle_v1_full" / "manifest.json").exists()
    bad = write_train(tmp_path / "bad", [*learnable_rows(2), "1\tzz"])
    failed = bench("data", "prepare", "criteo_dlrm", str(bad))
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [failed.stderr.strip()]
    assert failed.stderr.startswith("error: ") and "train.txt:3: 2 tab-separated fields" in failed.stderr


@pytest.mark.slow
def test_worker_processes_give_the_same_cache(tmp_path: Path) -> None:
    folder = write_train(tmp_path, learnable_rows(3000))
    one = ensure_prepared(folder, tmp_path / "one", quiet=True, workers=1, block_bytes=50_000)
    two = ensure_prepared(folder, tmp_path / "two", quiet=True, workers=2, block_bytes=50_000)
    assert one.manifest["table_sizes"] == two.manifest["table_sizes"] and two.manifest["workers"] == 2
    for name in ("labels", "dense", "sparse"):
        np.testing.assert_array_equal(load(one, name), load(two, name))
