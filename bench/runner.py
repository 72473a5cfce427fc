"""One run: build the task, model and optimizer, resume if a checkpoint exists, train, evaluate, record.

The loop asks the optimizer what each step needs (`needs_hessian`), so Hessian-free steps cost a plain
backward. Every outcome is written to the run record; a result that did not happen is never claimed.
"""

from __future__ import annotations

import os
import random
import resource
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from bench.atomic import remove_leftovers
from bench.checkpoint import load_checkpoint, remove_checkpoints, restore_rng_state, rng_state, save_checkpoint
from bench.config import check_config
from bench.distributed import Distributed
from bench.early_stop import early_stop
from bench.errors import UsageError
from bench.hvp import resolve_mode, uses_harness_hvp
from bench.loggers import MetricsLog
from bench.optim_factory import build_optimizer, needs_hessian, state_bytes
from bench.ownership import RunBusy, RunLock
from bench.preemption import Preempted, PreemptionGuard
from bench.progress import TrainProgress
from bench.records import RECORD_NAME, SCHEMA, environment, now, read_record, run_id_of, write_record
from bench.schedules import Schedule
from bench.snapshots import average_snapshots, clear_snapshots, load_best, save_best, save_snapshot
from bench.step import Diverged, autocast, train_step
from bench.switch import OptimizerSwitch
from tasks.base import DataError, Task

# The cycle this warning is about is broken by the optimizer's `update_hessian`, which detaches p.grad.
warnings.filterwarnings("ignore", message=r"Using backward\(\) with create_graph=True")
FINAL_STATUSES = ("completed", "diverged")
# Task config keys for the harness, not the task's constructor.
TASK_HARNESS_KEYS = ("name", "target", "batch_size_unused", "routes", "model_note")


@dataclass
class TrainState:
    """Progress that a checkpoint carries, so a resumed run continues the same trajectory."""

    step: int = 0
    wall_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_loss_sum: float = 0.0  # the current epoch's partial sums, for a mid-epoch (preemption) checkpoint
    epoch_items: int = 0
    items: int = 0  # items trained on (the task's throughput unit), over all ranks
    data_wait_s: float = 0.0  # time spent waiting for the next batch
    grad_evals: int = 0  # gradient evaluations (closure calls count one each)
    stopped_early: dict[str, Any] | None = None


class StopEarly(Exception):
    """The early-stop rule fired at an epoch end: the run is complete."""


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("trainer.device=cuda: no CUDA device is visible; use trainer.device=cpu or auto")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)  # set both ways: runs of a sweep share a process
    torch.backends.cudnn.benchmark = False


def build_task(cfg: DictConfig, device: torch.device, dist: Distributed) -> Task:
    """Instantiate the task; a missing or malformed dataset becomes a one-line UsageError."""
    kwargs = OmegaConf.to_container(cfg.task, resolve=True)
    assert isinstance(kwargs, dict)
    cls = get_class(kwargs.pop("_target_"))
    for key in TASK_HARNESS_KEYS:
        kwargs.pop(key, None)
    try:
        return cls(**kwargs, device=device, batch_size=cfg.trainer.batch_size,
                   eval_batch_size=cfg.trainer.eval_batch_size, seed=cfg.seed, rank=dist.rank,
                   world_size=dist.world_size)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def timed(batches: Iterable[Any]) -> Iterator[tuple[Any, float]]:
    """Each batch with the seconds spent waiting for it (the data pipeline's share of the step)."""
    iterator = iter(batches)
    while True:
        start = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            return
        yield batch, time.perf_counter() - start


def final_value(record: dict[str, Any]) -> float:
    """The run's result: the final test evaluation where the task has one, else the last evaluation."""
    metric = record["metric"]
    return metric["test"] if metric.get("test") is not None else metric["final"]


def peak_memory_bytes(device: torch.device) -> int:
    """CUDA: the allocator's peak during this run. CPU: the process's peak resident set (Linux reports KiB),
    which in a sweep run in one process is the peak of all its runs so far."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Runner:
    """Owns one run's objects and writes its record; `run()` returns the final status."""

    def __init__(self, cfg: DictConfig, dist: Distributed | None = None) -> None:
        check_config(cfg)
        self.cfg = cfg
        self.dist = dist or Distributed.single()
        self.run_id = run_id_of(cfg)
        self.run_dir = Path(cfg.paths.runs) / cfg.study / self.run_id
        self.label = f"{cfg.task.name}/{cfg.optimizer.name}/seed{cfg.seed}"
        self.device = resolve_device(cfg.trainer.device, self.dist.local_rank)
        self.lock = RunLock(self.run_dir, cfg.trainer.heartbeat_s, cfg.trainer.lease_ttl_s)

    def previous_status(self) -> str | None:
        record = read_record(self.run_dir / RECORD_NAME)
        if record is None and (self.run_dir / RECORD_NAME).exists():
            self.dist.print(f"{self.run_dir / RECORD_NAME} is unreadable; it is rebuilt from the checkpoint")
        return record.get("status") if record else None

    def run(self) -> str:
        """Own the run folder (or skip a run another live process owns), then run. Returns the status."""
        lock = self.lock
        busy = None
        if self.dist.is_main:
            try:
                lock.acquire()
            except RunBusy as exc:
                busy = str(exc)
        if self.dist.any(busy is not None, self.device):
            self.dist.print(f"skip {self.label}: run {self.run_id} is in progress elsewhere ({busy}) "
                            f"in {self.run_dir}")
            return "running"
        try:
            if self.dist.is_main:
                remove_leftovers(self.run_dir)
            return self.run_owned()
        finally:
            lock.release()

    def run_owned(self) -> str:
        cfg = self.cfg
        previous = self.previous_status()
        if previous in FINAL_STATUSES and not cfg.force:
            self.dist.print(f"skip {self.label}: run {self.run_id} is already {previous} "
                            f"in {self.run_dir} (force=true reruns it)")
            return previous
        seed_everything(cfg.seed, cfg.trainer.deterministic)
        torch.backends.cudnn.allow_tf32 = cfg.trainer.conv_tf32  # set both ways: runs of a sweep share a process
        task = build_task(cfg, self.device, self.dist)
        try:
            return self.run_task(task)
        finally:
            task.close()

    def run_task(self, task: Task) -> str:
        cfg = self.cfg
        if cfg.trainer.test_on == "best" and type(task).test is Task.test:
            raise UsageError(f"trainer.test_on=best: task {cfg.task.name} has no final test (Task.test) to run on "
                             "the best epoch's weights; its result is its last evaluation. Use trainer.test_on=last")
        if self.device.type == "cuda":  # only once the allocator has been used on the device, else it raises
            torch.cuda.reset_peak_memory_stats(self.device)
        model = self.dist.prepare_model(task.build_model().to(self.device), cfg.trainer.sync_bn)
        steps_per_epoch = task.steps_per_epoch()
        if steps_per_epoch < 1:
            raise UsageError(f"trainer.batch_size={cfg.trainer.batch_size}: larger than the training set; "
                             "lower it")
        optimizer = build_optimizer(cfg.optimizer, task.param_groups(self.dist.unwrap(model)),
                                    steps_per_epoch, seed=cfg.seed + 1_000_003 * self.dist.rank,
                                    routes=cfg.task.get("routes"))
        self.dist.install_hessian_reduce(optimizer)
        schedule = Schedule(optimizer, cfg.trainer.schedule, cfg.trainer.epochs, steps_per_epoch,
                            task.metric.mode)
        state = TrainState()
        checkpoint, restarted = self.resume_point()
        self.switch = OptimizerSwitch(cfg, task, self.dist.unwrap(model), steps_per_epoch, self.dist)
        optimizer, schedule = self.switch.at(checkpoint["state"]["step"] if checkpoint else 0, optimizer, schedule)
        if checkpoint is not None:
            self.dist.unwrap(model).load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            schedule.load_state_dict(checkpoint["schedule"])
            state = TrainState(**checkpoint["state"])
            self.restore_rank_state(checkpoint["ranks"][self.dist.rank], optimizer, state)
            self.dist.print(f"resume {self.label} from step {state.step} ({self.run_dir})")
        if cfg.force and self.dist.is_main:
            remove_checkpoints(self.run_dir)
        if (cfg.force or checkpoint is None) and self.dist.is_main:
            clear_snapshots(self.run_dir)  # a run that starts over keeps no weights of an earlier attempt
        attach = getattr(optimizer, "attach", None)
        if callable(attach):
            attach(self.dist.unwrap(model))
        record = self.new_record(task, resumed=checkpoint is not None)
        if state.history:  # a resumed run's results so far (all of them when it had finished training)
            record["history"] = state.history
            self.update_metric(record, task, state)
        if restarted:
            record["restarted"] = restarted
        if hasattr(optimizer, "param_routing"):
            record["param_routing"] = optimizer.param_routing
        log = MetricsLog(self.run_dir, cfg, self.run_id, state.history) if self.dist.is_main else None
        self.write(record)
        guard = PreemptionGuard()
        preempted = False
        try:
            with guard:
                self.train(task, model, optimizer, schedule, state, steps_per_epoch, record, log, guard)
            self.final_test(task, model, record)
            record["status"] = "completed"
        except Preempted as exc:
            preempted = True
            record["interrupted"] = (f"stopped by {exc} at step {state.step}; checkpoint saved, rerun the same "
                                     "command to resume")
        except Diverged as exc:
            record.update(status="diverged", error=str(exc))
        except KeyboardInterrupt:
            record.update(status="failed", error="interrupted; rerun the same command to resume from the "
                                                  "last checkpoint")
            raise
        except DataError as exc:  # a bad file met mid-run (ImageNet decodes lazily): one line, exit 2
            record.update(status="failed", error=f"DataError: {exc}")
            raise UsageError(str(exc)) from None
        except BaseException as exc:
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self.finish(record, task, optimizer, state, log)
        if preempted:
            guard.hand_over()
        return record["status"]

    def train(self, task: Task, model: torch.nn.Module, optimizer: torch.optim.Optimizer, schedule: Schedule,
              state: TrainState, steps_per_epoch: int, record: dict[str, Any], log: MetricsLog | None,
              guard: PreemptionGuard) -> None:
        cfg = self.cfg.trainer
        uses_harness_hvp(cfg.hessian_batch_fraction, cfg.hvp_mode)  # a bad value stops here, before any step
        scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
        total = cfg.epochs * steps_per_epoch
        model.train()
        with TrainProgress(cfg.progress, total, state.step, self.label, quiet=not self.dist.is_main) as bar:
            while state.step < total and state.stopped_early is None:
                epoch, done_in_epoch = divmod(state.step, steps_per_epoch)
                loss_sum = torch.tensor(state.epoch_loss_sum, device=self.device)
                items = state.epoch_items
                start = time.perf_counter()
                for batch, waited in timed(task.train_batches(epoch, done_in_epoch)):
                    state.data_wait_s += waited
                    # Checked before a step, so a stop never falls between an epoch's last step and its eval.
                    if self.dist.any(guard.requested, self.device):
                        state.wall_s += time.perf_counter() - start
                        state.epoch_loss_sum, state.epoch_items = loss_sum.item(), items
                        self.save_checkpoint(model, optimizer, schedule, state)
                        raise Preempted(guard.describe())
                    try:
                        result = train_step(task, model, optimizer, batch, device=self.device, amp=cfg.amp,
                                            hessian=needs_hessian(optimizer, state.step), scaler=scaler,
                                            grad_clip=cfg.grad_clip, dist=self.dist,
                                            hessian_batch_fraction=cfg.hessian_batch_fraction,
                                            hvp_mode=cfg.hvp_mode)
                    except Diverged as exc:
                        raise Diverged(f"{exc} at step {state.step}") from None
                    schedule.after_step()
                    loss_sum += result.loss * result.n
                    items += result.n
                    state.items += result.n * self.dist.world_size
                    state.grad_evals += result.grad_evals
                    state.step += 1
                    optimizer, schedule = self.switch.at(state.step, optimizer, schedule, running=True)
                    self.lock.step = state.step
                    elapsed = time.perf_counter() - start
                    bar.update(1, result.loss.item(), optimizer.param_groups[0]["lr"],
                               items * self.dist.world_size / max(elapsed, 1e-9))
                state.wall_s += time.perf_counter() - start
                state.epoch_loss_sum, state.epoch_items = 0.0, 0
                self.end_epoch(task, model, optimizer, schedule, state, epoch + 1, loss_sum, items, record, log, bar)

    def end_epoch(self, task: Task, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                  schedule: Schedule, state: TrainState, epoch: int, loss_sum: torch.Tensor, items: int,
                  record: dict[str, Any], log: MetricsLog | None, bar: TrainProgress) -> None:
        """Evaluate, append to the history, step a plateau schedule, apply early stopping, checkpoint."""
        train_loss = self.dist.mean(loss_sum / max(items, 1))
        model.eval()
        with torch.no_grad(), autocast(self.device, self.cfg.trainer.amp):
            metrics = self.dist.broadcast_metrics(lambda: task.evaluate(self.dist.unwrap(model)))
        model.train()
        name = task.metric.name
        if not np.isfinite(metrics[name]):
            raise Diverged(f"{name} became {metrics[name]} at epoch {epoch}")
        row = {"step": state.step, "epoch": epoch, "train_loss": train_loss, "metrics": metrics,
               "lr": optimizer.param_groups[0]["lr"], "wall_s": round(state.wall_s, 4)}
        state.history.append(row)
        schedule.after_eval(metrics[name])
        bar.epoch_done(epoch, self.cfg.trainer.epochs, train_loss, name, metrics[name], row["lr"])
        self.update_metric(record, task, state)
        state.stopped_early = early_stop(self.cfg.trainer.early_stop, task.metric, state.history)
        record["history"] = state.history
        if log is not None:
            log.log(row)
        if self.cfg.trainer.average_last and self.dist.is_main:
            save_snapshot(self.run_dir, epoch, self.dist.unwrap(model), self.cfg.trainer.average_last)
        if self.cfg.trainer.test_on == "best" and self.dist.is_main and record["metric"]["best_step"] == state.step:
            save_best(self.run_dir, epoch, self.dist.unwrap(model))
        if self.cfg.trainer.checkpoint:
            self.save_checkpoint(model, optimizer, schedule, state)
        self.write(record)

    def final_test(self, task: Task, model: torch.nn.Module, record: dict[str, Any]) -> None:
        """The task's final evaluation, on the average of the last `trainer.average_last` epochs' weights
        when asked (fairseq's average_checkpoints), on the best validation epoch's with `trainer.test_on: best`,
        else on the trained model."""
        model = self.dist.unwrap(model)
        if self.cfg.trainer.average_last and self.dist.is_main:
            record["test_model"] = average_snapshots(self.run_dir, model)
        elif self.cfg.trainer.test_on == "best" and self.dist.is_main:
            best = next(row for row in record["history"] if row["step"] == record["metric"]["best_step"])
            record["test_model"] = load_best(self.run_dir, best, task.metric.name, model)
        model.eval()
        with torch.no_grad(), autocast(self.device, self.cfg.trainer.amp):
            test = self.dist.broadcast_metrics(lambda: task.test(model))
        if test is not None:
            record["test"] = test
            record["metric"]["test"] = test.get(task.metric.name)

    def resume_point(self) -> tuple[dict[str, Any] | None, str | None]:
        """The checkpoint to resume from, agreed by all ranks (rank 0's files), and, when checkpoints existed but
        none was usable, why the run starts over. Each unusable file is reported in one line."""
        if self.cfg.force:
            return None, None
        loaded = load_checkpoint(self.run_dir)
        for problem in loaded.problems:
            fallback = f"resuming from {loaded.source} (step {loaded.payload['state']['step']})" if loaded.payload \
                else "no usable checkpoint is left, so the run starts over"
            self.dist.print(f"{problem}; {fallback}")
        restarted = None
        if loaded.problems and loaded.payload is None:
            restarted = f"started over at {now()}: " + "; ".join(loaded.problems)
        return loaded.payload, restarted

    def save_checkpoint(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, schedule: Schedule,
                        state: TrainState) -> None:
        """Collective: every rank contributes what is its own (RNG streams, partial sums), rank 0 writes."""
        estimator = getattr(optimizer, "estimator", None)
        mine = {"rng": rng_state(), "epoch_loss_sum": state.epoch_loss_sum,
                "estimator": estimator.state_dict() if estimator is not None else None}
        ranks = self.dist.gather(mine)
        if self.dist.is_main:
            save_checkpoint(self.run_dir, {
                "model": self.dist.unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "state": asdict(state), "ranks": ranks})

    @staticmethod
    def restore_rank_state(mine: dict[str, Any], optimizer: torch.optim.Optimizer, state: TrainState) -> None:
        """Undo what rank 0's copy overwrote: this rank's RNG streams, probe generator and partial sums."""
        restore_rng_state(mine["rng"])
        state.epoch_loss_sum = mine["epoch_loss_sum"]
        if mine["estimator"] is not None:
            optimizer.estimator.load_state_dict(mine["estimator"])

    def new_record(self, task: Task, resumed: bool) -> dict[str, Any]:
        cfg = self.cfg
        previous = read_record(self.run_dir / RECORD_NAME) if resumed else None
        return {
            "schema": SCHEMA, "run_id": self.run_id, "study": cfg.study, "task": cfg.task.name,
            "optimizer": cfg.optimizer.name, "seed": cfg.seed, "status": "running", "error": None,
            "metric": {"name": task.metric.name, "mode": task.metric.mode, "final": None, "best": None,
                       "best_step": None, "test": None},
            "history": [],
            "cost": {"steps": 0, "wall_s": 0.0, "s_per_step": None, "hvp_count": 0, "grad_evals": 0,
                     "peak_mem_bytes": None, "optimizer_state_bytes": None},
            "env": environment(self.device, self.dist.world_size) | {"hessian_reduction": self.dist.describe()},
            "config": OmegaConf.to_container(cfg, resolve=True),
            "started_at": previous["started_at"] if previous else now(),
            "finished_at": None,
            "resumed": (previous or {}).get("resumed", 0) + int(resumed),
        }

    @staticmethod
    def update_metric(record: dict[str, Any], task: Task, state: TrainState) -> None:
        name = task.metric.name
        best = None
        for row in state.history:
            if best is None or task.metric.better(row["metrics"][name], best["metrics"][name]):
                best = row
        record["metric"].update(final=state.history[-1]["metrics"][name], best=best["metrics"][name],
                                best_step=best["step"])

    def finish(self, record: dict[str, Any], task: Task, optimizer: torch.optim.Optimizer, state: TrainState,
               log: MetricsLog | None) -> None:
        optimizer = self.switch.live(optimizer)
        detach = getattr(optimizer, "detach", None)
        if callable(detach):
            detach()
        record["history"] = state.history
        precond_s = getattr(optimizer, "precond_time_s", None)
        record["cost"] = {
            "steps": state.step,
            "wall_s": round(state.wall_s, 4),
            "s_per_step": state.wall_s / state.step if state.step else None,
            "hvp_count": int(getattr(optimizer, "hvp_count", 0)),
            "hvp_mode": resolve_mode(self.cfg.trainer.hvp_mode) if hasattr(optimizer, "needs_hessian") else None,
            "grad_evals": state.grad_evals,
            "peak_mem_bytes": peak_memory_bytes(self.device),
            "optimizer_state_bytes": state_bytes(optimizer),
            "items_per_s": state.items / state.wall_s if state.wall_s else None,
            "throughput_unit": task.throughput_unit,
            "data_wait_frac": state.data_wait_s / state.wall_s if state.wall_s else None,
            "precond_time_frac": precond_s / state.wall_s if precond_s is not None and state.wall_s else None,
        }
        self.switch.annotate(record, state.step)
        record["data"] = task.data_summary()
        if state.stopped_early is not None:
            record["stopped_early"] = state.stopped_early
        if record["status"] != "completed":
            record["metric"]["final"] = None  # a run that did not finish has no final result; `best` is real
            record["metric"]["test"] = None
        record["finished_at"] = now()
        self.write(record)
        if log is not None:
            log.close(record["status"])
        if self.dist.is_main:
            outcome = record["status"] if record["status"] != "completed" else (
                f"completed: {task.metric.name} {final_value(record):.2f}")
            self.dist.print(f"{self.label} {outcome} -> {self.run_dir / 'record.json'}")

    def write(self, record: dict[str, Any]) -> None:
        if self.dist.is_main:
            write_record(self.run_dir, record)
