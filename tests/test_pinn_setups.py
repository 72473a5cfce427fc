"""Convection's named setups: the references' grid points (re-derived from their code's numpy calls), raw inputs,
the two inits, what each `task.setup` composes to, and one-line errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench.config import compose_config
from tasks.base import DataError
from tasks.pinn.model import Normalize, mlp
from tasks.pinn.task import PinnTask

TWO_PI = 2 * math.pi


def _task(tmp_path: Path, **overrides: object) -> PinnTask:
    kwargs = {"problem": "convection", "params": {"beta": 30.0}, "n_collocation": 20, "n_boundary": None,
              "n_initial": None, "points": "grid", "grid": {"x": 16, "t": 10, "x_endpoint": False, "seed": 0},
              "input_scaling": "none", "init": "torch_default", "cache_dir": str(tmp_path),
              "device": torch.device("cpu"), "batch_size": 1, "eval_batch_size": 1, "seed": 3} | overrides
    return PinnTask(**kwargs)


def _float32(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).float()


def test_krishnapriyan_grid_points_are_their_codes() -> None:
    """main_pbc.py: x = linspace(0, 2 pi, xgrid, endpoint=False), t = linspace(0, 1, nt); collocation from the grid
    minus t = 0 and x = 0 by sample_random (set_seed(0); np.random.choice without replacement), for every run seed;
    initial points the whole t = 0 row; periodic pairs at every grid t."""
    task = _task(Path("/nonexistent"))  # convection caches nothing
    x, t = np.linspace(0, TWO_PI, 16, endpoint=False), np.linspace(0, 1, 10)
    xx, tt = np.meshgrid(x[1:], t[1:])
    mesh = np.hstack((xx.flatten()[:, None], tt.flatten()[:, None]))
    np.random.seed(0)
    expected = mesh[np.random.choice(mesh.shape[0], 20, replace=False)]
    batch = task.fixed
    torch.testing.assert_close(batch.interior, _float32(expected), rtol=0, atol=0)
    torch.testing.assert_close(batch.initial, _float32(np.stack([x, np.zeros(16)], 1)), rtol=0, atol=0)
    torch.testing.assert_close(batch.initial_target, _float32(np.sin(x)), rtol=0, atol=0)
    torch.testing.assert_close(batch.boundary, _float32(np.stack([np.zeros(10), t], 1)), rtol=0, atol=0)
    torch.testing.assert_close(batch.partner, _float32(np.stack([np.full(10, TWO_PI), t], 1)), rtol=0, atol=0)
    assert batch.boundary_target is None and batch.count() == 20 + 16 + 10 + 10
    assert torch.equal(_task(Path("/nonexistent"), seed=7).fixed.interior, batch.interior)  # seed 0 for every run


def test_rathore_grid_points_are_their_codes() -> None:
    """src/train_utils.py get_data: x = linspace(0, 2 pi, x_num) with both ends, residual points from the interior
    (x[1:-1] x t[1:]) by np.random.choice after set_random_seed(run seed); the whole t = 0 row (with x = 2 pi);
    periodic pairs at every grid t."""
    task = _task(Path("/nonexistent"), grid={"x": 17, "t": 11, "x_endpoint": True, "seed": None}, seed=5,
                 init="xavier_normal")
    x, t = np.linspace(0, TWO_PI, 17), np.linspace(0, 1, 11)
    xx, tt = np.meshgrid(x[1:-1], t[1:])
    mesh = np.hstack((xx.flatten()[:, None], tt.flatten()[:, None]))
    np.random.seed(5)
    expected = mesh[np.random.choice(mesh.shape[0], 20, replace=False)]
    torch.testing.assert_close(task.fixed.interior, _float32(expected), rtol=0, atol=0)
    torch.testing.assert_close(task.fixed.initial[:, 0], _float32(x), rtol=0, atol=0)
    assert len(task.fixed.boundary) == 11 and task.data_summary()["grid"]["seed"] == 5


def test_raw_inputs_and_the_two_inits() -> None:
    lows, highs = (0.0, 0.0), (TWO_PI, 1.0)
    raw = mlp(lows, highs, 8, 2, input_scaling="none", init="torch_default")
    assert not any(isinstance(m, Normalize) for m in raw) and isinstance(raw[0], nn.Linear)
    scaled = mlp(lows, highs, 8, 2)
    assert isinstance(scaled[0], Normalize)
    torch.manual_seed(0)
    default = mlp(lows, highs, 8, 2, input_scaling="none", init="torch_default")
    torch.manual_seed(0)
    plain = [nn.Linear(2, 8), nn.Linear(8, 8), nn.Linear(8, 1)]  # nn.Linear's own init, same draws
    linears = [m for m in default if isinstance(m, nn.Linear)]
    for ours, ref in zip(linears, plain, strict=True):
        assert torch.equal(ours.weight, ref.weight) and torch.equal(ours.bias, ref.bias)
    xavier = mlp(lows, highs, 8, 2, input_scaling="none", init="xavier_normal")
    assert all(torch.count_nonzero(m.bias) == 0 for m in xavier if isinstance(m, nn.Linear))
    with pytest.raises(ValueError, match=r"task\.init=he: expected one of xavier_normal, torch_default"):
        mlp(lows, highs, 8, 2, init="he")


def test_rel_l2_grid_leaves_out_the_periodic_end() -> None:
    """Krishnapriyan et al.'s rel-L2 grid: linspace(0, 2 pi, 256, endpoint=False) x linspace(0, 1, 100)."""
    points = _task(Path("/nonexistent")).problem.reference_points()
    np.testing.assert_array_equal(np.unique(points[:, 0]), np.linspace(0, TWO_PI, 256, endpoint=False))
    np.testing.assert_array_equal(np.unique(points[:, 1]), np.linspace(0, 1, 100))
    assert len(points) == 256 * 100


@pytest.mark.parametrize(("setup", "expected"), [
    ("krishnapriyan2021", {"params.beta": 30.0, "input_scaling": "none", "init": "torch_default", "points": "grid",
                           "grid.x": 256, "grid.t": 100, "grid.x_endpoint": False, "grid.seed": 0,
                           "n_collocation": 1000, "n_boundary": None, "n_initial": None, "model.depth": 4,
                           "model.width": 50}),
    ("rathore2024", {"params.beta": 40.0, "input_scaling": "none", "init": "xavier_normal", "points": "grid",
                     "grid.x": 257, "grid.t": 101, "grid.x_endpoint": True, "grid.seed": None,
                     "n_collocation": 10000, "model.depth": 3}),
    ("scaled_random", {"params.beta": 30.0, "input_scaling": "unit_box", "init": "xavier_normal", "points": "random",
                       "n_collocation": 2000, "n_boundary": 100, "n_initial": 100, "model.depth": 4}),
])
def test_each_named_setup_composes_and_builds(tmp_path: Path, setup: str, expected: dict) -> None:
    cfg = compose_config(["task=pinn_convection", "optimizer=adam", f"task.setup={setup}", f"paths.runs={tmp_path}"])
    for key, value in expected.items():
        node = cfg.task
        for part in key.split("."):
            node = node[part]
        assert node == value, key
    kwargs = {k: v for k, v in cfg.task.items() if k not in ("name", "_target_", "batch_size_unused")}
    task = PinnTask(**kwargs, device=torch.device("cpu"), batch_size=1, eval_batch_size=1, seed=1)
    assert task.data_summary()["setup"] == setup
    assert len(task.fixed.interior) == expected["n_collocation"]
    assert (task.fixed.initial[:, 1] == 0).all()


def test_the_default_setup_is_krishnapriyans_and_overrides_still_win(tmp_path: Path) -> None:
    cfg = compose_config(["task=pinn_convection", "optimizer=lbfgs", "task.params.beta=40", f"paths.runs={tmp_path}"])
    assert cfg.task.setup == "krishnapriyan2021" and cfg.task.params.beta == 40.0 and cfg.task.init == "torch_default"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"n_boundary": 100}, r"task\.n_boundary=100 with task\.points=grid: .* set task\.n_boundary=null"),
    ({"n_initial": 100}, r"task\.n_initial=100 with task\.points=grid"),
    ({"n_collocation": 200}, r"task\.n_collocation=200: the 16 x 10 grid has only 135 interior points"),
    ({"resample": True}, r"task\.resample=true with task\.points=grid"),
    ({"problem": "burgers", "params": None}, r"task\.points=grid: only the convection problem"),
    ({"grid": {"x": 16, "t": 10, "z": 1}}, r"task\.grid\.z: unknown key"),
    ({"points": "lhs"}, r"task\.points=lhs: expected one of random, grid"),
    ({"input_scaling": "minmax"}, r"task\.input_scaling=minmax: expected one of unit_box, none"),
])
def test_bad_setup_values_are_one_data_error(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        _task(tmp_path, **overrides)
    assert "\n" not in str(info.value)
