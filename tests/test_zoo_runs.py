"""The zoo through the real runner and CLI: a digits sweep of all seven completes and learns, `bench report`
shows their cost columns, an interrupted run resumes to the uninterrupted record, and single-process
optimizers are refused on several processes with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.config import check_config, compose_config
from bench.errors import UsageError
from bench.runner import Runner
from tests.conftest import bench
from tests.runs import comparable, interrupted_then_resumed, run

ZOO = ("shampoo", "mfac", "agd", "oasis", "kfac", "sophiah", "lbfgs")
SHORT = ("trainer.epochs=2", "trainer.batch_size=256", "trainer.deterministic=true")


@pytest.mark.parametrize("seeds", ["0", pytest.param("0,1", marks=pytest.mark.slow)])
def test_digits_sweep_of_the_zoo_completes_learns_and_reports_costs(tmp_path: Path, seeds: str) -> None:
    """The issue's `bench run -m task=digits optimizer=<all seven> seed=0,1`, on a 2-epoch budget (slow), and
    its one-seed version (fast)."""
    bench("run", "-m", "task=digits", f"optimizer={','.join(ZOO)}", f"seed={seeds}", *SHORT,
          f"paths.runs={tmp_path}", "trainer.progress=false", check=True)
    records = [json.loads(p.read_text()) for p in tmp_path.rglob("record.json")]
    expected = [(o, int(s)) for o in ZOO for s in seeds.split(",")]
    assert sorted((r["optimizer"], r["seed"]) for r in records) == sorted(expected)
    for r in records:
        assert r["status"] == "completed", (r["optimizer"], r["error"])
        losses = [row["train_loss"] for row in r["history"]]
        assert losses[-1] < losses[0], (r["optimizer"], losses)
    cost = {r["optimizer"]: r["cost"] for r in records if r["seed"] == 0}
    steps = cost["agd"]["steps"]
    assert cost["lbfgs"]["grad_evals"] > steps and cost["oasis"]["grad_evals"] == 2 * steps - 1
    assert cost["sophiah"]["hvp_count"] == 1  # k = 10: steps 0 and 10, and 10 steps were taken
    assert cost["oasis"]["hvp_count"] == 10 + steps - 1  # init_samples for D_0, then one probe per step
    assert cost["mfac"]["optimizer_state_bytes"] > 64 * 4 * 10_000  # the 64 x d gradient window
    assert cost["kfac"]["precond_time_frac"] > 0
    report = bench("report", str(tmp_path), "--table", "summary", "--format", "csv", check=True).stdout
    header = next(line for line in report.splitlines() if line.startswith("task,"))
    assert {"s/step", "HVPs", "grad evals", "state MB"} <= set(header.split(","))
    labels = {line.split(",")[1] for line in report.splitlines() if line.startswith("digits,")}
    assert labels == {*ZOO} - {"sophiah"} | {"sophiah@10"}  # refresh interval in the label, as AdaHessian@K


@pytest.mark.parametrize("optimizer", ["kfac", "oasis", "shampoo", "lbfgs"])  # hooks, closure + probes, library
def test_interrupted_zoo_run_resumes_to_the_uninterrupted_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  optimizer: str) -> None:
    overrides = ("task=digits", f"optimizer={optimizer}", *SHORT)
    reference = run(tmp_path / "reference", *overrides)
    original = Runner.end_epoch

    def stop_after_first_epoch(self, *args, **kwargs):
        original(self, *args, **kwargs)  # evaluates and writes the epoch-1 checkpoint
        raise KeyboardInterrupt

    resumed = interrupted_then_resumed(monkeypatch, Runner, "end_epoch", stop_after_first_epoch, KeyboardInterrupt,
                                       tmp_path / "resumed", *overrides)
    assert comparable(resumed) == comparable(reference)
    assert resumed["cost"]["grad_evals"] == reference["cost"]["grad_evals"]


@pytest.mark.parametrize(("optimizer", "why"), [("kfac", "Kronecker factors"), ("lbfgs", "line search"),
                                                ("oasis", "closure")])
def test_single_process_optimizers_are_refused_on_several_processes(optimizer: str, why: str) -> None:
    cfg = compose_config([f"optimizer={optimizer}", "trainer.devices=2", "trainer.batch_size=64"])
    with pytest.raises(UsageError, match=f"optimizer={optimizer} on 2 processes: .*{why}.*trainer.devices=1"):
        check_config(cfg)


@pytest.mark.parametrize("optimizer", ["shampoo", "mfac", "agd", "sophiah"])
def test_reducing_optimizers_are_allowed_on_several_processes(optimizer: str) -> None:
    check_config(compose_config([f"optimizer={optimizer}", "trainer.devices=2", "trainer.batch_size=64"]))


@pytest.mark.parametrize(("optimizer", "mode"), [("kfac", "decoupled"), ("mfac", "decoupled"), ("sophiah", "l2")])
def test_weight_decay_mode_an_optimizer_does_not_implement_is_refused(optimizer: str, mode: str) -> None:
    from bench.optim_factory import build_optimizer

    cfg = compose_config([f"optimizer={optimizer}", f"optimizer.weight_decay_mode={mode}"])
    with pytest.raises(UsageError, match=f"weight_decay_mode={mode}: .* applies weight_decay as"):
        build_optimizer(cfg.optimizer, [{"params": [torch.zeros(3, requires_grad=True)]}], steps_per_epoch=1, seed=0)
