"""DLRM training through the real runner: the hybrid optimizer, its record, resume; the model's shapes."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from bench.errors import UsageError
from bench.optim_factory import build_optimizer, state_bytes
from bench.routing import RoutedOptimizer
from optimizers import AdaHessian
from tasks.dlrm.model import DLRM
from tasks.dlrm.task import CriteoDLRMTask
from tests.criteo_fixtures import learnable_rows, write_train
from tests.runs import comparable, interrupted_then_resumed, run
from tests.threads import one_intraop_thread

TINY = ["task.model.embedding_dim=4", "task.model.bottom_mlp=[13,8,4]", "task.model.top_mlp=[8,1]",
        "task.prepare_workers=1", "trainer.batch_size=32", "trainer.eval_batch_size=64", "trainer.device=cpu"]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny sparse ops: intra-op threads only add contention (10x slower on a busy 2-core machine)."""
    with one_intraop_thread():
        yield


@pytest.fixture(scope="module")
def criteo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """700 learnable Kaggle-format rows: 600 train (days 1-6), 100 in day 7."""
    return write_train(tmp_path_factory.mktemp("criteo"), learnable_rows(700))


def overrides(criteo_dir: Path, optimizer: str, epochs: int = 3) -> list[str]:
    return ["task=criteo_dlrm", f"optimizer={optimizer}", f"task.data_dir={criteo_dir}", f"trainer.epochs={epochs}",
            "trainer.deterministic=true", *TINY]


@pytest.mark.parametrize("optimizer", ["adagrad", "adahessian"])
def test_hybrid_run_lowers_the_loss_and_records_the_routing(tmp_path: Path, criteo_dir: Path, optimizer: str) -> None:
    record = run(tmp_path, *overrides(criteo_dir, optimizer))
    assert record["status"] == "completed", record["error"]
    losses = [row["train_loss"] for row in record["history"]]
    assert losses[-1] < losses[0] - 0.05, losses
    metrics = record["history"][-1]["metrics"]
    assert set(metrics) == {"accuracy", "roc_auc", "logloss"}
    assert record["metric"]["name"] == "accuracy" and record["metric"]["final"] == metrics["accuracy"]
    assert set(record["test"]) == set(metrics) and record["metric"]["test"] == record["test"]["accuracy"]
    # task.test_split=paper_day7 (the default): all of day 7 tests, and is also the per-epoch evaluation.
    assert record["data"]["split"] == {"train": 600, "test": 100, "val": 100} and record["data"]["skipped_lines"] == 0
    assert record["data"]["test_split"] == "paper_day7" and record["config"]["task"]["test_split"] == "paper_day7"
    assert record["cost"]["throughput_unit"] == "examples" and record["cost"]["items_per_s"] > 0
    routing = record["param_routing"]
    assert routing["embeddings"] == {"optimizer": "adagrad", "n_tensors": 26,
                                     "n_params": 4 * sum(record_table_sizes(criteo_dir))}
    assert routing["primary"]["optimizer"] == optimizer and routing["primary"]["n_tensors"] == 8
    steps = record["cost"]["steps"]
    assert steps == 3 * 19  # ceil(600 / 32) per epoch, the last batch shorter
    assert record["cost"]["hvp_count"] == (steps if optimizer == "adahessian" else 0)
    assert record["config"]["optimizer"]["lr"] == (0.043 if optimizer == "adahessian" else 0.01)


def record_table_sizes(criteo_dir: Path) -> list[int]:
    manifest = next((criteo_dir / ".bench-cache").glob("criteo_kaggle_*/manifest.json"))
    return json.loads(manifest.read_text())["table_sizes"]


def test_interrupted_run_resumes_to_the_uninterrupted_record(tmp_path: Path, criteo_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    args = overrides(criteo_dir, "adahessian", epochs=2)
    reference = run(tmp_path / "reference", *args)
    evaluate = CriteoDLRMTask.evaluate
    calls = {"n": 0}

    def stop_in_second_eval(self: CriteoDLRMTask, model: torch.nn.Module) -> dict[str, float]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return evaluate(self, model)

    resumed = interrupted_then_resumed(monkeypatch, CriteoDLRMTask, "evaluate", stop_in_second_eval,
                                       KeyboardInterrupt, tmp_path / "killed", *args)
    assert comparable(resumed) == comparable(reference)


def tiny_model() -> DLRM:
    torch.manual_seed(0)
    return DLRM([5, 7, 3] + [2] * 23, [13, 8, 4], [8, 1], embedding_dim=4)


def routed(primary: str) -> RoutedOptimizer:
    cfgs = {"adahessian": {"name": "adahessian", "_target_": "optimizers.AdaHessian", "lr": 0.043, "seed": 0},
            "sgd": {"name": "sgd", "_target_": "torch.optim.SGD", "lr": 0.1}}
    routes = OmegaConf.create({"embeddings": {"name": "adagrad", "_target_": "torch.optim.Adagrad", "lr": 0.01}})
    model = tiny_model()
    groups = [{"params": model.mlp_parameters()}, {"params": list(model.embeddings.parameters()),
                                                   "route": "embeddings"}]
    optimizer = build_optimizer(OmegaConf.create(cfgs[primary]), groups, 10, seed=0, routes=routes)
    assert isinstance(optimizer, RoutedOptimizer)
    optimizer.model = model  # type: ignore[attr-defined]  # kept for the test's steps
    return optimizer


def step(optimizer: RoutedOptimizer, hessian: bool) -> None:
    model = optimizer.model  # type: ignore[attr-defined]
    dense = torch.rand(6, 13)
    sparse = torch.randint(0, 2, (6, 26))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(dense, sparse), torch.rand(6).round())
    loss.backward(create_graph=hessian)
    if hessian:
        optimizer.update_hessian()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def test_hessian_covers_the_primary_group_only_and_state_round_trips() -> None:
    optimizer = routed("adahessian")
    assert isinstance(optimizer.primary, AdaHessian) and optimizer.needs_hessian(0)
    torch.manual_seed(1)
    step(optimizer, hessian=True)
    model = optimizer.model  # type: ignore[attr-defined]
    assert optimizer.hvp_count == 1
    assert set(optimizer.primary.state) == set(model.mlp_parameters())
    assert set(optimizer.routes["embeddings"].state) == set(model.embeddings.parameters())
    expected = sum(t.numel() * t.element_size() for opt in (optimizer.primary, optimizer.routes["embeddings"])
                   for s in opt.state.values() for t in s.values() if torch.is_tensor(t))
    assert state_bytes(optimizer) == expected
    saved = copy.deepcopy(optimizer.state_dict())  # as a checkpoint file would hold it
    clone = routed("adahessian")
    clone.model.load_state_dict(model.state_dict())  # type: ignore[attr-defined]
    clone.load_state_dict(saved)
    for opt in (optimizer, clone):
        torch.manual_seed(2)
        step(opt, hessian=True)
    for a, b in zip(model.parameters(), clone.model.parameters(), strict=True):  # type: ignore[attr-defined]
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_first_order_primary_has_no_curvature_and_schedules_see_every_group() -> None:
    optimizer = routed("sgd")
    assert not hasattr(optimizer, "needs_hessian") and not hasattr(optimizer, "hessian_reduce")
    assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.01]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 ** s)
    step(optimizer, hessian=False)
    scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == [0.05, 0.005]


def test_a_route_without_config_is_a_usage_error() -> None:
    model = tiny_model()
    groups = [{"params": model.mlp_parameters()}, {"params": list(model.embeddings.parameters()), "route": "emb"}]
    with pytest.raises(UsageError, match=r"task\.routes\.emb"):
        build_optimizer(OmegaConf.create({"name": "sgd", "_target_": "torch.optim.SGD", "lr": 0.1}), groups, 1, 0)


def test_reference_shapes() -> None:
    model = DLRM([10] * 26, [13, 512, 256, 64, 16], [512, 256, 1])
    assert model.top[0].in_features == 16 + 351 == 367
    assert isinstance(model.top[-1], torch.nn.Linear)  # a logit, the sigmoid is in the loss
    assert all(t.sparse and t.mode == "sum" and t.embedding_dim == 16 for t in model.embeddings)
    out = model(torch.rand(3, 13), torch.randint(0, 10, (3, 26)))
    assert out.shape == (3,)
    with pytest.raises(ValueError, match="embedding_dim"):
        DLRM([10] * 26, [13, 8], [8, 1], embedding_dim=16)


def test_multi_process_runs_are_refused_not_wrong(criteo_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"trainer\.devices=1"):
        CriteoDLRMTask(str(criteo_dir), device=torch.device("cpu"), batch_size=32, eval_batch_size=64, seed=0,
                       rank=0, world_size=2)
