"""GLUE TSV readers: the real files against their published sizes, and every quirk on tiny fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.base import DataError
from tasks.glue.specs import PUBLISHED_SIZES, SPECS, spec_for
from tasks.glue.tsv import read_task
from tests.glue_data import real_task_dir
from tests.glue_fixtures import write_cola, write_mnli, write_mrpc, write_qqp, write_rte

REAL = {"rte": "RTE", "mrpc": "MRPC", "stsb": "STS-B", "cola": "CoLA", "sst2": "SST-2"}


@pytest.mark.parametrize("name", list(REAL))
def test_real_glue_row_counts_match_published_sizes(name: str) -> None:
    spec = SPECS[name]
    train, devs = read_task(real_task_dir(REAL[name]), spec)
    assert (len(train), *map(len, devs.values())) == PUBLISHED_SIZES[name]
    assert train.skipped_lines == [] and all(not d.skipped_lines for d in devs.values())
    assert (train.text_b is None) == (spec.columns.text_b is None)
    if spec.labels is not None:
        assert set(train.labels) == set(spec.labels)


def test_real_cola_has_no_header_and_keeps_its_first_row() -> None:
    train, _ = read_task(real_task_dir("CoLA"), SPECS["cola"])
    first_line = (real_task_dir("CoLA") / "CoLA" / "train.tsv").read_text().split("\n")[0].split("\t")
    assert (train.text_a[0], train.labels[0]) == (first_line[3], first_line[1])


def test_quote_characters_do_not_merge_lines(tmp_path: Path) -> None:
    train, devs = read_task(write_qqp(tmp_path), SPECS["qqp"])
    assert len(train) == 3 and len(devs["dev"]) == 2
    assert train.text_a[0] == 'What is "best' and train.text_b[0] == 'Why is it "so good?'
    assert train.labels == ["0", "1", "0"]


def test_cola_headerless_and_mrpc_byte_order_mark(tmp_path: Path) -> None:
    cola, _ = read_task(write_cola(tmp_path), SPECS["cola"])
    assert cola.labels == ["1", "0", "1"] and cola.text_a[2] == 'He left "quickly.'
    mrpc, _ = read_task(write_mrpc(tmp_path), SPECS["mrpc"])
    assert mrpc.labels == ["1", "0"] and mrpc.text_b[1] == "Yucaipa bought Dominick 's in 1995 ."


def test_mnli_reads_both_dev_sets_with_their_own_widths(tmp_path: Path) -> None:
    train, devs = read_task(write_mnli(tmp_path), SPECS["mnli_m"])
    assert len(train) == 6 and train.labels[:3] == ["contradiction", "entailment", "neutral"]
    assert list(devs) == ["m", "mm"] and (len(devs["m"]), len(devs["mm"])) == (3, 1)
    assert list(read_task(tmp_path, SPECS["mnli_mm"])[1]) == ["mm", "m"]


def test_wrong_column_count_names_file_and_line_or_is_skipped(tmp_path: Path) -> None:
    root = write_rte(tmp_path, extra_train_lines=("99\tonly two columns", "100\ta\tb\tentailment"))
    with pytest.raises(DataError, match=r"RTE/train\.tsv:8: 2 tab-separated columns, expected 4.*skip_bad_rows"):
        read_task(root, SPECS["rte"])
    train, _ = read_task(root, SPECS["rte"], skip_bad=True)
    assert len(train) == 7 and train.skipped_lines == [8]


def test_label_outside_the_task_set_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"RTE/dev\.tsv: data row 2 has label 'maybe', expected entailment"):
        read_task(write_rte(tmp_path, bad_label=True), SPECS["rte"])


def test_missing_split_and_folder(tmp_path: Path) -> None:
    root = write_rte(tmp_path)
    (root / "RTE" / "dev.tsv").unlink()
    with pytest.raises(DataError, match=r"RTE/dev\.tsv: file missing; expected the glue_data layout"):
        read_task(root, SPECS["rte"])
    with pytest.raises(DataError, match=r"no MRPC/train\.tsv there"):
        read_task(root, SPECS["mrpc"])


def test_unknown_glue_task() -> None:
    with pytest.raises(DataError, match=r"task.glue_task=mnlii: unknown GLUE task; choose one of cola, sst2"):
        spec_for("mnlii")
    with pytest.raises(DataError, match=r"task.glue_task=mnli: choose mnli_m"):
        spec_for("mnli")
