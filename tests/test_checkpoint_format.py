"""The weights-only checkpoint format: every kind of run state comes back exactly and with its type, each
optimizer of the zoo and each schedule resumes bit for bit from a file, and state a weights-only load could not
rebuild is refused when it is saved, not discovered at resume."""

from __future__ import annotations

import random
from collections import OrderedDict
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from bench.checkpoint import MAGIC, decode, encode, restore_rng_state, rng_state
from bench.config import CONF_DIR, compose_config
from bench.distributed import Distributed
from bench.optim_factory import build_optimizer, needs_hessian
from bench.runner import build_task
from bench.schedules import SCHEDULES, Schedule
from bench.step import train_step

CPU = torch.device("cpu")
# Intervals shortened so that 8 steps cross every kind of state update (Shampoo's inverse roots and
# preconditioned steps, K-FAC's factors and inverses, a full M-FAC ring that wraps, SophiaH's refreshes).
SHORT = {
    "shampoo": ("optimizer.preconditioning_compute_steps=2", "optimizer.start_preconditioning_step=2"),
    "kfac": ("optimizer.factor_every=2", "optimizer.inverse_every=3"),
    "mfac": ("optimizer.ngrads=3",),
    "sophiah": ("optimizer.update_each=3",),
}
ZOO = sorted(p.stem for p in (CONF_DIR / "optimizer").glob("*.yaml"))


def payload(model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int) -> dict:
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": {},
            "state": {"step": step}, "ranks": [{"rng": rng_state()}]}


def same(a: object, b: object) -> bool:
    """Equal values of the same types, down to tensors and the attributes of objects."""
    if type(a) is not type(b):
        return False
    if torch.is_tensor(a):
        return torch.equal(a, b)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if hasattr(a, "__dict__") and not isinstance(a, torch.nn.Module):
        return same(vars(a), vars(b))
    return a == b


def test_every_state_type_comes_back_exactly_and_with_its_type() -> None:
    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    random.random(), np.random.standard_normal(), torch.rand(1)  # mid-stream, with NumPy's cached Gaussian set
    state = {"step": 7, "history": [{"metrics": {"mcc": np.float64(0.25), "n": np.int64(3)}, "lr": 0.1}],
             "stopped_early": {"epoch": 2, "reason": "top1 did not improve"}, "nested": OrderedDict(a=(1, None)),
             "keys": {torch.device("cpu"): 1, ("a", 2): 2, torch.float32: 3},
             "arrays": [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([True, False]),
                        np.array([], dtype=np.int16)], "size": torch.Size([2, 3]), "dtype": torch.float16}
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    saved = {"model": model.state_dict(), "optimizer": {}, "schedule": {}, "state": state,
             "ranks": [{"rng": rng_state()}]}
    expected = (random.random(), np.random.standard_normal(), torch.rand(1))
    loaded = decode(encode(saved))
    restore_rng_state(loaded["ranks"][0]["rng"])
    assert (random.random(), np.random.standard_normal(), torch.rand(1)) == expected
    assert same(loaded["model"], model.state_dict())
    assert loaded["model"]._metadata == model.state_dict()._metadata  # module versions, for load_state_dict
    back = loaded["state"]
    assert type(back["history"][0]["metrics"]["mcc"]) is np.float64 and back["history"][0]["metrics"]["mcc"] == 0.25
    assert type(back["history"][0]["metrics"]["n"]) is np.int64
    assert type(back["nested"]) is OrderedDict and back["nested"]["a"] == (1, None)
    for got, want in zip(back["arrays"], state["arrays"], strict=True):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    assert {k: back[k] for k in ("step", "stopped_early", "size", "dtype", "keys")} == \
        {k: state[k] for k in ("step", "stopped_early", "size", "dtype", "keys")}


def test_state_a_weights_only_load_cannot_rebuild_is_refused_when_saved() -> None:
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    saved = payload(model, opt, 0)
    saved["optimizer"]["state"][0] = {"probe": torch.Generator()}
    with pytest.raises(TypeError, match=r"checkpoint\.optimizer\.state\.0\.probe is a torch\._C\.Generator"):
        encode(saved)
    saved["optimizer"]["state"][0] = {"__bench_type__": "object"}
    with pytest.raises(TypeError, match="which checkpoints reserve"):
        encode(saved)


def train(task, model, optimizer, batches, start: int) -> None:
    for i, batch in enumerate(batches, start):
        train_step(task, model, optimizer, batch, hessian=needs_hessian(optimizer, i), device=CPU)


@pytest.mark.parametrize("name", ZOO)
def test_each_optimizer_resumes_bit_for_bit_from_a_checkpoint_file(name: str, tmp_path: Path) -> None:
    """Train 8 steps; train 4, write the checkpoint, load it into fresh objects, train 4 more: equal weights."""
    cfg = compose_config(["task=digits", f"optimizer={name}", "trainer.batch_size=32", *SHORT.get(name, ())])
    task = build_task(cfg, CPU, Distributed.single())
    batches = list(islice(task.train_batches(0), 8))

    def fresh(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(seed)
        model = task.build_model()
        optimizer = build_optimizer(cfg.optimizer, task.param_groups(model), task.steps_per_epoch(), seed=1)
        if hasattr(optimizer, "attach"):
            optimizer.attach(model)
        return model, optimizer

    torch.manual_seed(11)
    reference = fresh(0)
    train(task, *reference, batches, 0)
    torch.manual_seed(11)
    interrupted = fresh(0)
    train(task, *interrupted, batches[:4], 0)
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(encode(payload(*interrupted, 4)))
    assert path.read_bytes().startswith(MAGIC)
    model, optimizer = fresh(1)
    loaded = decode(path.read_bytes())
    model.load_state_dict(loaded["model"])
    optimizer.load_state_dict(loaded["optimizer"])
    restore_rng_state(loaded["ranks"][0]["rng"])
    train(task, model, optimizer, batches[4:], 4)
    for got, want in zip(model.parameters(), reference[0].parameters(), strict=True):
        assert torch.equal(got, want), name


@pytest.mark.parametrize("graft", ["sgd", "rmsprop", "adagrad", "sqrt_n", "none"])
def test_shampoo_state_of_every_graft_round_trips(graft: str) -> None:
    cfg = compose_config(["optimizer=shampoo", f"optimizer.graft={graft}", *SHORT["shampoo"]])
    model = torch.nn.Linear(3, 2)
    optimizer = build_optimizer(cfg.optimizer, [{"params": list(model.parameters())}], 1, seed=0)
    for _ in range(3):
        model(torch.ones(4, 3)).square().sum().backward()
        optimizer.step()
    assert same(decode(encode(payload(model, optimizer, 3)))["optimizer"], optimizer.state_dict())


@pytest.mark.parametrize("name", SCHEDULES)
def test_each_schedule_resumes_exactly_from_a_checkpoint(name: str) -> None:
    cfg = OmegaConf.merge(compose_config([]).trainer.schedule,
                          {"name": name, "milestones": [0.5], "gamma": 0.5, "patience": 0, "warmup_steps": 2})

    def built() -> tuple[torch.optim.Optimizer, Schedule]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        return opt, Schedule(opt, cfg, epochs=4, steps_per_epoch=3, metric_mode="max")

    def advance(opt: torch.optim.Optimizer, schedule: Schedule, epochs: range) -> list[float]:
        lrs = []
        for epoch in epochs:
            for _ in range(3):
                opt.step()
                schedule.after_step()
            schedule.after_eval(np.float64(1.0 if epoch == 0 else 0.5))  # a scipy-style metric
            lrs.append(opt.param_groups[0]["lr"])
        return lrs

    expected = advance(*built(), range(4))
    opt, schedule = built()
    first = advance(opt, schedule, range(2))
    saved = payload(torch.nn.Linear(1, 1), opt, 6) | {"schedule": schedule.state_dict()}
    opt, schedule = built()
    loaded = decode(encode(saved))
    opt.load_state_dict(loaded["optimizer"])
    schedule.load_state_dict(loaded["schedule"])
    assert first + advance(opt, schedule, range(2, 4)) == expected
