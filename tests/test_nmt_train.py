"""`bench run task=iwslt14_transformer` end to end on the real Multi30k: a tiny transformer learns with AdamW and
AdaHessian, beam-search BLEU on the test split is recorded from the averaged checkpoints, and a resumed run equals
the uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.checkpoint import load_checkpoint
from tasks.nmt.task import TranslationTask
from tests.nmt_fixtures import TINY_MODEL, write_data_bin_from, write_text_layout
from tests.runs import comparable, interrupted_then_resumed, run

# Outputs capped at source length + 5 (fairseq-generate's --max-len-a/b) to keep an untrained model's decoding short.
COMMON = [*TINY_MODEL, "task.max_tokens=300", "trainer.device=cpu", "trainer.deterministic=true",
          "trainer.schedule.warmup_steps=60", "task.max_len_a=1.0", "task.max_len_b=5"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_text_layout(tmp_path_factory.mktemp("m30k") / "text", n_train=800, n_eval=100, merges=300)


@pytest.mark.parametrize("optimizer", ["adamw", "adahessian"])
def test_tiny_transformer_learns_and_records_beam_bleu(tmp_path: Path, data_dir: Path, optimizer: str) -> None:
    record = run(tmp_path, "task=iwslt14_transformer", f"optimizer={optimizer}", f"task.data_dir={data_dir}",
                 *COMMON, "trainer.epochs=5", "trainer.average_last=2")
    assert record["status"] == "completed", record["error"]
    losses = [row["train_loss"] for row in record["history"]]
    assert losses[-1] < losses[0] - 0.5, losses
    assert record["cost"]["steps"] >= 200 and record["cost"]["throughput_unit"] == "tokens"
    assert record["test"]["bleu"] > 0 and record["metric"]["test"] == record["test"]["bleu"]
    assert record["test_model"].endswith("epochs [4, 5]")
    assert record["data"]["layout"] == "text" and record["data"]["skipped_too_long"]["train"] == 0
    if optimizer == "adahessian":
        assert record["config"]["task"]["loss_reduction"] == "sum"
        assert record["cost"]["hvp_count"] == record["cost"]["steps"]
        check_average(tmp_path, record, data_dir)


def check_average(runs: Path, record: dict, data_dir: Path) -> None:
    """The test BLEU is that of the hand-computed mean of the last two epochs' weights."""
    run_dir = runs / record["study"] / record["run_id"]
    a, b = (torch.load(run_dir / "snapshots" / f"epoch_{e:05d}.pt", weights_only=True) for e in (4, 5))
    cfg = record["config"]["task"]
    task = TranslationTask(str(data_dir), "de", "en", max_tokens=cfg["max_tokens"], model=cfg["model"],
                           device=torch.device("cpu"), batch_size=1, eval_batch_size=1, seed=record["seed"])
    model = task.build_model()
    model.load_state_dict({k: (a[k] + b[k]) / 2 for k in a})
    final = load_checkpoint(run_dir).payload["model"]
    assert any(not torch.equal(final[k], model.state_dict()[k]) for k in final)
    model.eval()
    assert task.test(model)["bleu"] == pytest.approx(record["test"]["bleu"], abs=1e-9)


def test_resumed_run_equals_the_uninterrupted_one(tmp_path: Path, data_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = ["task=iwslt14_transformer", "optimizer=adahessian", f"task.data_dir={data_dir}", *COMMON,
                 "trainer.epochs=2", "task.max_tokens=600", "trainer.average_last=1"]
    reference = run(tmp_path / "reference", *overrides)
    batches = TranslationTask.train_batches

    def interrupted(self: TranslationTask, epoch: int, start: int = 0):
        for i, batch in enumerate(batches(self, epoch, start)):
            if epoch == 1 and i == 3:
                raise KeyboardInterrupt
            yield batch

    resumed = interrupted_then_resumed(monkeypatch, TranslationTask, "train_batches", interrupted, KeyboardInterrupt,
                                       tmp_path / "killed", *overrides)
    assert comparable(resumed) == comparable(reference)
    assert resumed["test"] == reference["test"]


def test_a_fairseq_data_bin_trains_and_records_test_bleu(tmp_path: Path) -> None:
    text = write_text_layout(tmp_path / "text", n_train=200, n_eval=30, merges=100)
    data_bin = write_data_bin_from(text, tmp_path / "data-bin")
    record = run(tmp_path / "runs", "task=iwslt14_transformer", "optimizer=adamw", f"task.data_dir={data_bin}",
                 *COMMON, "trainer.epochs=1", "trainer.average_last=1")
    assert record["status"] == "completed", record["error"]
    assert record["data"]["layout"] == "data-bin" and record["data"]["sentences"]["test"] == 30
    assert record["test"]["bleu"] >= 0 and record["test"]["sentences"] == 30
