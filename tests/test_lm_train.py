"""Language-model training: a tiny model learns the real PTB with AdamW and AdaHessian; runs through the
real runner and CLI record test perplexity and resume exactly."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from bench.preemption import Preempted
from bench.step import train_step
from optimizers import AdaHessian
from tasks.lm.task import LanguageModelTask
from tests.conftest import bench
from tests.lm_fixtures import write_wikitext
from tests.runs import comparable, interrupted_then_resumed, run
from tests.test_lm_data import PTB_DIR, needs_ptb
from tests.threads import one_intraop_thread

STEPS = 200
TINY_RUN = ("task.model.layers=1", "task.model.dim=16", "task.model.ffn_dim=32", "task.model.heads=2",
            "task.model.dropout=0.1", "task.bptt=8", "trainer.batch_size=4", "trainer.eval_batch_size=16",
            "trainer.schedule.warmup_steps=10", "trainer.device=cpu")


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One intra-op thread here and in `bench` subprocesses: these models are too small to gain from more, and on
    a shared 2-core machine more threads only spin."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with one_intraop_thread():
        yield


@pytest.fixture(scope="module")
def wikitext_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wikitext(tmp_path_factory.mktemp("wikitext"), n_train=100)


@pytest.mark.parametrize(("name", "lr"), [("adamw", 2e-2), ("adahessian", 0.3)])
def test_tiny_model_learns_real_ptb(name: str, lr: float) -> None:
    """STEPS steps of 8 x 16 tokens on a prefix of the train stream; validation perplexity (first 8,000 tokens
    of the valid split) ends far below the 10,000 of a model that has learnt nothing."""
    needs_ptb()
    torch.manual_seed(0)
    model_cfg = dict(layers=1, dim=32, ffn_dim=64, heads=2, dropout=0.0, vocab_size=None)
    task = LanguageModelTask("ptb", str(PTB_DIR), 16, model_cfg, train_tokens=8 * 16 * STEPS + 8,
                             device=torch.device("cpu"), batch_size=8, eval_batch_size=256, seed=0)
    assert task.steps_per_epoch() == STEPS
    model = task.build_model()
    hessian = name == "adahessian"
    optimizer = (AdaHessian(model.parameters(), lr=lr, hessian_power=0.5, block_size=4, seed=0) if hessian
                 else torch.optim.AdamW(model.parameters(), lr=lr))
    losses = [train_step(task, model, optimizer, batch, hessian=hessian, device=task.device, grad_clip=0.25).loss.item()
              for batch in task.train_batches(0)]
    model.eval()
    with torch.no_grad():
        result = task.score(model, task.valid[:8000])
    assert sum(losses[-20:]) / 20 < losses[0] - 2.0  # from ln(10,000) = 9.2 at the start
    assert result["tokens"] == 8000 and result["ppl"] < 1500, result


def test_bench_run_records_test_perplexity_and_tokens_per_second(wikitext_dir: Path, tmp_path: Path) -> None:
    proc = bench("run", "task=wikitext2_transformer_lm", "optimizer=adahessian", f"task.data_dir={wikitext_dir}",
                 "trainer.epochs=2", *TINY_RUN, f"paths.runs={tmp_path}", check=True)
    record = json.loads(next(tmp_path.glob("default/*/record.json")).read_text())
    assert record["status"] == "completed", proc.stderr
    assert record["test"]["tokens"] == record["data"]["test_tokens"] > 0
    assert record["metric"]["test"] == record["test"]["ppl"] < record["data"]["vocab"]
    assert record["cost"]["throughput_unit"] == "tokens" and record["cost"]["items_per_s"] > 0
    assert record["cost"]["hvp_count"] == record["cost"]["steps"] > 0
    assert record["history"][-1]["metrics"]["tokens"] == record["data"]["valid_tokens"]


def test_bad_lm_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = bench("run", "task=ptb_transformer_lm", f"task.data_dir={tmp_path}", f"paths.runs={tmp_path / 'runs'}")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith(f"error: {tmp_path}/ptb.train.txt: file missing")


def test_preempted_run_resumes_to_the_uninterrupted_record(wikitext_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = ("task=wikitext2_transformer_lm", "optimizer=adahessian", f"task.data_dir={wikitext_dir}",
                 "trainer.epochs=3", "trainer.deterministic=true", *TINY_RUN)
    reference = run(tmp_path / "reference", *overrides)
    steps_per_epoch = reference["cost"]["steps"] // 3
    original = LanguageModelTask.loss
    calls = {"n": 0}

    def loss_then_signal(self: LanguageModelTask, model: torch.nn.Module, batch: object) -> object:
        calls["n"] += 1
        if calls["n"] == steps_per_epoch + 3:  # mid-epoch 2: the runner checkpoints at the next step boundary
            os.kill(os.getpid(), signal.SIGUSR1)
        return original(self, model, batch)

    resumed = interrupted_then_resumed(monkeypatch, LanguageModelTask, "loss", loss_then_signal, Preempted,
                                       tmp_path / "resumed", *overrides)
    assert comparable(resumed) == comparable(reference)
    assert resumed["test"] == reference["test"]


@pytest.mark.slow
def test_bench_run_on_real_ptb_with_adahessian_records_test_perplexity(tmp_path: Path) -> None:
    needs_ptb()
    bench("run", "task=ptb_transformer_lm", "optimizer=adahessian", f"task.data_dir={PTB_DIR}", "trainer.epochs=1",
          "task.train_tokens=20000", "task.model.layers=1", "task.model.dim=32", "task.model.ffn_dim=64",
          "task.model.heads=2", "trainer.schedule.warmup_steps=20", "trainer.device=cpu", f"paths.runs={tmp_path}",
          check=True)
    record = json.loads(next(tmp_path.glob("default/*/record.json")).read_text())
    assert record["status"] == "completed"
    assert record["test"]["tokens"] == 82_430 and record["history"][-1]["metrics"]["tokens"] == 73_760
    assert record["metric"]["test"] < 10_000


def test_perf_step_time_times_the_lm_task(tmp_path: Path) -> None:
    proc = bench("perf", "step-time", "--task", "ptb_transformer_lm", "--data-dir", str(tmp_path / "absent"),
                 "--optimizers", "adamw,adahessian", "--batch-size", "4", "--steps", "2", "--warmup", "1",
                 "--device", "cpu", "--json", check=True)
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert result["data"] == "synthetic"
    assert {"adamw", "adahessian@1", "hvp_limit"} <= set(result["median_s"])
    assert "adahessian@1" in result["ratios_vs_adam"] and result["hvp_limit_vs_adam"] > 1
