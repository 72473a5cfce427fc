"""Multi-process runs on CPU with gloo: DDP equivalence, the Hessian reduction, preemption and resume."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
from torch import nn

from bench.checkpoint import load_checkpoint
from bench.distributed import Distributed
from optimizers import AdaHessian
from optimizers.hutchinson import smooth_
from tests.conftest import REPO, bench
from tests.runs import comparable, run

TORCHRUN = ("launcher=torchrun", "trainer.devices=2", "trainer.device=cpu")


def final_parameters(runs: Path, record: dict) -> dict[str, torch.Tensor]:
    return load_checkpoint(runs / record["study"] / record["run_id"]).payload["model"]


def test_two_process_sgd_equals_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    overrides = ("task=digits", "optimizer=sgd", "trainer.epochs=1", "trainer.deterministic=true")
    single = run(tmp_path / "one", *overrides)
    bench("run", *overrides, *TORCHRUN, f"paths.runs={tmp_path / 'two'}", check=True)
    study = tmp_path / "two" / "default"
    (two_dir,) = [p for p in study.iterdir() if (p / "record.json").exists()]
    double = json.loads((two_dir / "record.json").read_text())
    assert double["env"]["world_size"] == 2 and double["status"] == "completed"
    assert "DistributedDataParallel" in double["env"]["hessian_reduction"]
    assert double["cost"]["steps"] == single["cost"]["steps"]
    one, two = final_parameters(tmp_path / "one", single), final_parameters(tmp_path / "two", double)
    for name, tensor in one.items():
        torch.testing.assert_close(two[name], tensor, atol=1e-5, rtol=0, msg=name)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def shard(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(123)
    x = torch.randn(8, 1, 8, 8, generator=generator)
    y = torch.randint(0, 3, (8,), generator=generator)
    return x[4 * rank:4 * rank + 4], y[4 * rank:4 * rank + 4]


def local_gradient_and_estimate(model: nn.Module, optimizer: AdaHessian, rank: int) -> None:
    x, y = shard(rank)
    nn.functional.cross_entropy(model(x), y).backward(create_graph=True)
    optimizer.update_hessian()


def snapshot(model: nn.Module, optimizer: AdaHessian) -> dict[str, list[torch.Tensor]]:
    params = list(model.parameters())
    return {"grad": [p.grad.detach().clone() for p in params],
            "hessian": [optimizer.state[p]["hessian_diag"].clone() for p in params]}


def reduction_worker(rank: int, port: int, out: str) -> None:
    torch_dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    dist = Distributed(rank=rank, local_rank=rank, world_size=2, manual=True)
    model = dist.prepare_model(small_net(), sync_bn=False)
    optimizer = AdaHessian(model.parameters(), seed=100 + rank)
    dist.install_hessian_reduce(optimizer)
    local_gradient_and_estimate(model, optimizer, rank)
    dist.after_backward(model)
    torch.save(snapshot(model, optimizer), f"{out}/rank{rank}.pt")
    dist.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_adahessian_averages_gradients_and_hessian_estimates(tmp_path: Path) -> None:
    """Each rank's D must be the estimate of the two ranks' probes together: the mean of the signed
    z * Hz over ranks (as n_samples=2 would average them in one process), then |.| and kernel averaging."""
    mp.spawn(reduction_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    grads, raws = [], []
    for rank in range(2):  # the same probes (same seeds), one process, no reduction
        model = small_net()
        optimizer = AdaHessian(model.parameters(), seed=100 + rank,
                               hessian_reduce=lambda est: raws.append([t.clone() for t in est]))
        local_gradient_and_estimate(model, optimizer, rank)
        grads.append(snapshot(model, optimizer)["grad"])
    expected_grad = [(a + b) / 2 for a, b in zip(*grads, strict=True)]
    expected_hessian = [(a + b) / 2 for a, b in zip(*raws, strict=True)]
    smooth_(expected_hessian, spatial_average=True, block_size=1)
    assert not torch.allclose(raws[0][0], raws[1][0]), "ranks must draw their own probes"
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for g, e in zip([*got["grad"], *got["hessian"]], [*expected_grad, *expected_hessian], strict=True):
            torch.testing.assert_close(g, e, atol=1e-6, rtol=1e-5)


def test_adahessian_over_two_processes_records_the_reduction(tmp_path: Path) -> None:
    bench("run", "task=digits", "optimizer=adahessian", "trainer.epochs=1", *TORCHRUN, f"paths.runs={tmp_path}",
          check=True)
    (record_path,) = tmp_path.glob("default/*/record.json")
    record = json.loads(record_path.read_text())
    assert record["status"] == "completed" and record["env"]["world_size"] == 2
    assert "each refresh averages 2 samples" in record["env"]["hessian_reduction"]
    assert record["cost"]["hvp_count"] == record["cost"]["steps"]


@pytest.mark.parametrize(("optimizer", "epochs"), [("sgd", 30), ("adahessian", 8)])
def test_preempted_distributed_run_resumes_mid_epoch(tmp_path: Path, optimizer: str, epochs: int) -> None:
    """SIGTERM to the whole job: every rank checkpoints at the same step (its own RNG and probe streams
    included); the rerun resumes there and ends with the record of an uninterrupted run."""
    overrides = ["task=digits", f"optimizer={optimizer}", f"trainer.epochs={epochs}", "trainer.deterministic=true",
                 *TORCHRUN]
    reference_runs, runs = tmp_path / "reference", tmp_path / "preempted"
    bench("run", *overrides, f"paths.runs={reference_runs}", check=True)
    (reference_path,) = reference_runs.glob("default/*/record.json")
    reference = json.loads(reference_path.read_text())
    record_path = runs / "default" / reference["run_id"] / "record.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", *overrides, f"paths.runs={runs}"], cwd=REPO,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (record_path.parent / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGTERM)  # what a scheduler does: signal the whole job
    proc.wait(timeout=120)
    while time.monotonic() < deadline:  # the workers checkpoint after the launcher has gone
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    interrupted = json.loads(record_path.read_text())
    assert interrupted["status"] == "running", "the run finished before it could be preempted"
    assert "checkpoint saved" in interrupted["interrupted"]
    assert 0 < interrupted["cost"]["steps"] < reference["cost"]["steps"]
    bench("run", *overrides, f"paths.runs={runs}", check=True)
    resumed = json.loads(record_path.read_text())
    assert resumed["resumed"] == 1
    assert comparable(resumed) == comparable(reference)


def test_rerunning_a_finished_sweep_skips_completed_runs(tmp_path: Path) -> None:
    sweep = ("run", "-m", "task=digits", "optimizer=sgd,adam", "trainer.epochs=1", f"paths.runs={tmp_path}")
    bench(*sweep, check=True)
    finished = {p: json.loads(p.read_text())["finished_at"] for p in tmp_path.glob("default/*/record.json")}
    assert len(finished) == 2
    again = bench(*sweep, check=True)
    assert again.stderr.count("is already completed") == 2
    assert {p: json.loads(p.read_text())["finished_at"] for p in finished} == finished
    forced = bench(*sweep, "force=true", check=True)
    assert "is already completed" not in forced.stderr


@pytest.mark.parametrize("launcher", ["gpus", "slurm", "slurm_local", "torchrun"])
def test_launchers_compose(launcher: str) -> None:
    from hydra import compose, initialize_config_dir

    from bench.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"launcher={launcher}", "trainer.devices=8", "trainer.nodes=2"],
                      return_hydra_config=True)
    assert cfg.launcher.name in launcher
    target = cfg.hydra.launcher._target_
    if launcher == "gpus":
        assert target.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs >= 1
    if launcher == "slurm":
        assert target.endswith("SlurmLauncher")
        assert (cfg.hydra.launcher.nodes, cfg.hydra.launcher.tasks_per_node, cfg.hydra.launcher.gpus_per_node) == (
            2, 8, 8)
        assert cfg.hydra.launcher.signal_delay_s > 0


def test_gpus_launcher_pins_one_leased_gpu_per_worker(tmp_path: Path) -> None:
    """The lease-and-pin path, on CPU: GPU ids come from CUDA_VISIBLE_DEVICES, each run is a worker process
    started with one of them, and the worker runs in place instead of asking for a lease again."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "2,3"}
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "-m", "launcher=gpus", "task=digits",
                           "optimizer=sgd,adam", "trainer.epochs=1", "trainer.device=cpu", f"paths.runs={tmp_path}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(p.read_text()) for p in tmp_path.glob("default/*/record.json")]
    assert len(records) == 2 and all(r["status"] == "completed" for r in records)
    assert {r["env"]["cuda_visible_devices"] for r in records} <= {"2", "3"}


def test_submitit_local_sweep_runs_end_to_end(tmp_path: Path) -> None:
    proc = bench("run", "-m", "launcher=slurm_local", "task=digits", "optimizer=sgd,adahessian", "trainer.epochs=1",
                 "trainer.devices=2", "trainer.device=cpu", f"paths.runs={tmp_path}", check=True)
    records = [json.loads(p.read_text()) for p in tmp_path.glob("default/*/record.json")]
    assert sorted(r["optimizer"] for r in records) == ["adahessian", "sgd"], proc.stderr
    assert all(r["status"] == "completed" and r["env"]["world_size"] == 2 for r in records)
