"""PINN runs through the real runner: each problem's rel-L2 drops for Adam and AdaHessian, NaN is `diverged`,
the Adam -> L-BFGS / Adam -> AdaHessian switch records both phases and survives a kill and resume."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from bench import report
from bench.config import compose_config
from bench.distributed import Distributed
from bench.errors import UsageError
from bench.recordset import load
from bench.runner import build_task, seed_everything
from bench.step import backward
from tasks.pinn.task import PinnTask
from tests.runs import comparable, interrupted_then_resumed, run
from tests.threads import one_intraop_thread

pytestmark = pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")

SMALL = ("task.n_collocation=256", "task.n_boundary=64", "task.model.width=20",
         "task.model.depth=2", "task.steps_per_epoch=50", "trainer.epochs=2", "trainer.deterministic=true")
LR = {"adam": "optimizer.lr=0.01", "adahessian": "optimizer.lr=0.05"}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny full-batch MLPs run faster on one thread than on two contended ones."""
    with one_intraop_thread():
        yield


def initial_rel_l2(tmp_path: Path, *overrides: str) -> float:
    """rel-L2 of the model as the runner builds it before its first step (same seed, same init)."""
    cfg = compose_config([f"paths.runs={tmp_path}", *overrides])
    seed_everything(cfg.seed, False)
    task = build_task(cfg, torch.device("cpu"), Distributed.single())
    return task.evaluate(task.build_model())["rel_l2"]


@pytest.mark.parametrize("optimizer", ["adam", "adahessian"])
@pytest.mark.parametrize("task", ["pinn_burgers", "pinn_poisson", "pinn_convection"])
def test_small_run_lowers_rel_l2(tmp_path: Path, task: str, optimizer: str) -> None:
    small = SMALL
    if task == "pinn_convection":
        # Krishnapriyan et al.'s grid setup (the default) takes every grid t on the x faces and the whole t = 0 row.
        small = tuple(o for o in SMALL if not o.startswith("task.n_boundary="))
    overrides = (f"task={task}", f"optimizer={optimizer}", f"task.cache_dir={tmp_path}", *small, LR[optimizer])
    if task == "pinn_burgers":
        overrides += ("task.n_initial=64",)
    if task == "pinn_convection":
        overrides += ("task.params.beta=1.0",)  # learnable in 100 steps; beta=30 is the known failure case
    record = run(tmp_path, *overrides)
    assert record["status"] == "completed", record["error"]
    assert record["metric"]["name"] == "rel_l2" and record["metric"]["mode"] == "min"
    start = initial_rel_l2(tmp_path, *overrides)
    assert record["metric"]["best"] < 0.8 * start
    row = record["history"][-1]["metrics"]
    assert {"loss", "loss_pde", "loss_bc"} <= set(row)
    assert record["cost"]["hvp_count"] == (100 if optimizer == "adahessian" else 0)
    assert record["phases"] == [{"optimizer": optimizer, "start_step": 0, "end_step": 100}]


def test_nan_loss_is_diverged(tmp_path: Path) -> None:
    record = run(tmp_path, "task=pinn_poisson", "optimizer=adam", f"task.cache_dir={tmp_path}", *SMALL,
                 "optimizer.lr=1e30")
    assert record["status"] == "diverged" and "loss became" in record["error"]


def test_adam_to_adahessian_switch_records_phases_and_resumes_exactly(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = ("task=pinn_burgers", "optimizer=adam", f"task.cache_dir={tmp_path}", *SMALL, "task.n_initial=64",
                 "optimizer.lr=0.01", "trainer.switch_at=50", "trainer.switch_to=adahessian")
    whole = run(tmp_path / "whole", *overrides)
    assert whole["status"] == "completed"
    assert whole["phases"] == [{"optimizer": "adam", "start_step": 0, "end_step": 50},
                               {"optimizer": "adahessian", "start_step": 50, "end_step": 100}]
    assert whole["cost"]["hvp_count"] == 50
    calls = {"n": 0}
    loss = PinnTask.loss

    def killed_at_step_70(self: PinnTask, model: torch.nn.Module, batch: object) -> tuple[torch.Tensor, int]:
        calls["n"] += 1
        if calls["n"] == 71:
            raise KeyboardInterrupt
        return loss(self, model, batch)

    # resumed from the step-50 checkpoint, which holds AdaHessian's state
    resumed = interrupted_then_resumed(monkeypatch, PinnTask, "loss", killed_at_step_70, KeyboardInterrupt,
                                       tmp_path / "killed", *overrides)
    assert comparable(resumed) == comparable(whole)
    assert resumed["phases"] == whole["phases"]


def test_adam_to_lbfgs_switch_records_both_phases(tmp_path: Path) -> None:
    record = run(tmp_path, "task=pinn_poisson", "optimizer=adam", f"task.cache_dir={tmp_path}", *SMALL,
                 "optimizer.lr=0.01", "trainer.switch_at=50", "trainer.switch_to=lbfgs")
    assert record["status"] == "completed", record["error"]
    assert record["phases"] == [{"optimizer": "adam", "start_step": 0, "end_step": 50},
                                {"optimizer": "lbfgs", "start_step": 50, "end_step": 100}]
    rel = [row["metrics"]["rel_l2"] for row in record["history"]]
    assert rel[1] < rel[0]  # L-BFGS improves on where Adam left off
    assert record["cost"]["grad_evals"] > 100  # each L-BFGS step evaluates the closure several times
    plain = run(tmp_path, "task=pinn_poisson", "optimizer=adam", f"task.cache_dir={tmp_path}", *SMALL,
                "optimizer.lr=0.01")
    section = report.pinn_section(load(tmp_path))
    rows = {(row[0], row[1]): row for row in section.rows}
    assert rows[("pinn_poisson", "adam→lbfgs")][3] == "1" and rows[("pinn_poisson", "adam")][3] == "1"
    assert rows[("pinn_poisson", "adam")][4] == report.num(plain["metric"]["final"], "rel_l2")


def test_unknown_switch_target_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"trainer\.switch_to=newton: no such optimizer"):
        run(tmp_path, "task=pinn_poisson", "optimizer=adam", f"task.cache_dir={tmp_path}", *SMALL,
            "trainer.switch_to=newton")


def test_switch_optimizer_keys_reach_the_second_optimizer(tmp_path: Path) -> None:
    """The recipe's L-BFGS takes 20 iterations a step; `trainer.switch_optimizer` makes it one, as a study that
    matches iteration budgets across arms needs: fewer closure calls for the same 50 steps after the switch."""
    common = ["task=pinn_poisson", "optimizer=adam", f"task.cache_dir={tmp_path}", *SMALL, "optimizer.lr=0.01",
              "trainer.switch_at=50", "trainer.switch_to=lbfgs"]
    recipe = run(tmp_path / "recipe", *common)
    one = run(tmp_path / "one", *common, "trainer.switch_optimizer={max_iter: 1}")
    assert one["status"] == recipe["status"] == "completed"
    assert 50 + 50 <= one["cost"]["grad_evals"] < recipe["cost"]["grad_evals"]
    assert one["run_id"] != recipe["run_id"]


def test_a_hessian_step_leaves_no_graph_on_inputs_that_require_grad() -> None:
    """The PINN residual differentiates u in its inputs, so they require grad; a create_graph backward must not
    leave them a graph-carrying .grad (a reference cycle through the autograd graph, leaked on every AdaHessian
    step), and the parameters still get theirs, with the graph the Hessian estimate needs."""
    model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    points = torch.rand(16, 2).requires_grad_(True)
    u = model(points).squeeze(-1)
    u_x = torch.autograd.grad(u.sum(), points, create_graph=True)[0][:, 0]
    backward(u_x.pow(2).mean(), optimizer, graph=True)
    assert points.grad is None
    assert model[0].weight.grad is not None and model[0].weight.grad.grad_fn is not None  # u_x's own weights
