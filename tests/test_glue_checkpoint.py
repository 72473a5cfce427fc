"""Loading SqueezeBERT through task.pretrained (a local HF folder), and the one-line errors for bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from bench.errors import UsageError
from tasks.base import DataError
from tasks.glue.task import GlueTask
from tests.conftest import bench
from tests.glue_data import real_task_dir
from tests.glue_fixtures import write_rte
from tests.runs import run
from tests.test_glue_model import TINY_OVERRIDES, tiny_task
from tests.threads import one_intraop_thread


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with one_intraop_thread():
        yield


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GlueTask, dict[str, float]]:
    """A tiny random SqueezeBERT and its WordPiece tokenizer, saved with save_pretrained."""
    task = tiny_task(real_task_dir("RTE"), "rte")
    model = task.build_model().eval()
    folder = tmp_path_factory.mktemp("tiny-squeezebert")
    model.save_pretrained(folder)
    task.tokenizer.save_pretrained(folder)
    return folder, task, task.evaluate(model)


def test_save_pretrained_loads_back_through_task_pretrained(saved: tuple[Path, GlueTask, dict[str, float]]) -> None:
    folder, original, scores = saved
    loaded = GlueTask(glue_task="rte", data_dir=str(real_task_dir("RTE")), pretrained=str(folder),
                      max_train_examples=64, device=torch.device("cpu"), batch_size=16, eval_batch_size=64, seed=0)
    assert loaded.tokenizer.get_vocab() == original.tokenizer.get_vocab()
    assert loaded.train.input_ids == original.train.input_ids  # the checkpoint's own tokenizer
    assert loaded.evaluate(loaded.build_model().eval()) == pytest.approx(scores)


def test_bench_run_fine_tunes_a_local_checkpoint_with_adahessian(saved: tuple[Path, GlueTask, dict[str, float]],
                                                                  tmp_path: Path) -> None:
    """The issue's command: task=glue_squeezebert task.glue_task=rte optimizer=adahessian data_dir + pretrained."""
    folder = saved[0]
    record = run(tmp_path, "task=glue_squeezebert", "task.glue_task=rte", "optimizer=adahessian",
                 f"task.data_dir={real_task_dir('RTE')}", f"task.pretrained={folder}", "task.max_train_examples=64",
                 "trainer.epochs=1", "trainer.device=cpu")
    assert record["status"] == "completed", record["error"]
    assert record["task"] == "glue_rte" and record["cost"]["steps"] == 4 and record["cost"]["hvp_count"] == 4
    assert record["config"]["optimizer"]["block_size"] == 4  # the recipe applied
    assert set(record["history"][-1]["metrics"]) == {"accuracy", "loss"}


def test_mnli_checkpoint_head_is_replaced_for_a_two_class_task(saved: tuple[Path, GlueTask, dict[str, float]],
                                                               tmp_path: Path) -> None:
    """RTE from an MNLI-fine-tuned checkpoint (3 classes): a fresh 2-class head, the encoder kept."""
    original = saved[1]
    three = tiny_task(real_task_dir("RTE"), "rte")
    model = three.build_model()
    model.config.num_labels = 3
    model.classifier = torch.nn.Linear(model.config.hidden_size, 3)
    model.save_pretrained(tmp_path)
    original.tokenizer.save_pretrained(tmp_path)
    loaded = GlueTask(glue_task="rte", data_dir=str(real_task_dir("RTE")), pretrained=str(tmp_path),
                      max_train_examples=16, device=torch.device("cpu"), batch_size=16, eval_batch_size=64, seed=0)
    rebuilt = loaded.build_model()
    assert rebuilt.classifier.out_features == 2
    torch.testing.assert_close(rebuilt.transformer.embeddings.word_embeddings.weight,
                               model.transformer.embeddings.word_embeddings.weight)


def test_pretrained_errors(saved: tuple[Path, GlueTask, dict[str, float]], tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"task.pretrained=squeezebert/squeezebert-uncased: no such local folder; "
                                        r"only local folders work offline"):
        tiny_task(real_task_dir("RTE"), "rte", pretrained="squeezebert/squeezebert-uncased")
    weights_only = tmp_path / "weights-only"
    weights_only.mkdir()
    for name in ("config.json", "model.safetensors"):
        (weights_only / name).write_bytes((saved[0] / name).read_bytes())
    with pytest.raises(DataError, match=r"weights-only: no tokenizer \(vocab.txt or tokenizer.json\)"):
        tiny_task(real_task_dir("RTE"), "rte", pretrained=str(weights_only))


def test_bad_inputs_are_one_line_usage_errors(tmp_path: Path) -> None:
    """Wrong column count, bad label, missing split, a folder without a tokenizer, an unknown glue_task."""
    bad_row = write_rte(tmp_path / "bad_row", extra_train_lines=("7\tonly two",))
    bad_label = write_rte(tmp_path / "bad_label", bad_label=True)
    no_dev = write_rte(tmp_path / "no_dev")
    (no_dev / "RTE" / "dev.tsv").unlink()
    no_tokenizer = tmp_path / "no_tokenizer"
    no_tokenizer.mkdir()
    (no_tokenizer / "config.json").write_text('{"model_type": "squeezebert"}')
    (no_tokenizer / "model.safetensors").write_bytes(b"")
    cases = [(bad_row, [], r"RTE/train.tsv:8: 2 tab-separated columns, expected 4"),
             (bad_label, [], r"data row 2 has label 'maybe'"),
             (no_dev, [], r"RTE/dev.tsv: file missing"),
             (no_dev, [f"task.pretrained={no_tokenizer}"], r"no_tokenizer: no tokenizer"),
             (no_dev, ["task.glue_task=nope"], r"task.glue_task=nope: unknown GLUE task")]
    for data_dir, extra, message in cases:
        with pytest.raises(UsageError, match=message) as caught:
            run(tmp_path / "runs", "task=glue_squeezebert", f"task.data_dir={data_dir}", "trainer.device=cpu",
                *TINY_OVERRIDES, *extra)
        assert "\n" not in str(caught.value)


def test_cli_wrong_column_count_exits_2_with_one_line(tmp_path: Path) -> None:
    data_dir = write_rte(tmp_path, extra_train_lines=("7\tonly two",))
    proc = bench("run", "task=glue_squeezebert", f"task.data_dir={data_dir}", f"paths.runs={tmp_path / 'runs'}",
                 "trainer.device=cpu")
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"error: {data_dir}/RTE/train.tsv:8: 2 tab-separated columns, expected 4; fix or delete the line, or set "
        "task.skip_bad_rows=true to skip such rows"), proc.stderr
