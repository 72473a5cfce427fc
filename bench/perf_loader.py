"""`bench perf loader`: can this node's data pipeline feed the model? Both rates measured in one process.

The loader alone: batches drawn from the task's training pipeline (decode, augment, collate, copy to the device)
and dropped. The model step alone: the runner's own train_step, repeated on one batch already on the device.
If the loader delivers fewer images per second than the step consumes, a run is data-bound and its step times
measure the pipeline, not the optimizer.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from itertools import count, islice
from typing import Any

import torch

from bench.config import compose_config
from bench.distributed import Distributed
from bench.errors import UsageError
from bench.optim_factory import build_optimizer, needs_hessian
from bench.progress import console
from bench.runner import build_task, resolve_device
from bench.step import train_step
from tasks.base import Task


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("loader", help="images/s of the data pipeline alone beside the model step alone")
    p.add_argument("--task", default="imagenet_resnet18")
    p.add_argument("--data-dir", help="the task's data_dir (default: the task config's)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--batches", type=int, default=20, help="timed batches for each measurement")
    p.add_argument("--warmup", type=int, default=3, help="untimed batches first (worker start-up, caches)")
    p.add_argument("--optimizer", default="sgd", help="whose step to time (e.g. adahessian: a heavier step)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--amp", default="none", choices=("none", "bf16"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="more config overrides, e.g. --set task.workers=8 --set task.loader=dali")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of a table")


def endless(task: Task) -> Iterator[Any]:
    for epoch in count():
        yield from task.train_batches(epoch)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def items_in(batch: Any) -> int:
    return len(batch[-1])


def time_loader(task: Task, batches: int, warmup: int, device: torch.device) -> tuple[float, Any]:
    """Images per second of the pipeline with nothing else running; also returns a batch for the step."""
    feed = endless(task)
    first = None
    for batch in islice(feed, warmup):
        first = batch
    synchronize(device)
    start, images = time.perf_counter(), 0
    for batch in islice(feed, batches):
        first = first if first is not None else batch
        images += items_in(batch)
    synchronize(device)
    return images / (time.perf_counter() - start), first


def time_step(task: Task, optimizer_cfg: Any, batch: Any, steps: int, warmup: int, device: torch.device,
              amp: str) -> float:
    """Images per second of forward + backward + update on one resident batch."""
    torch.manual_seed(0)
    model = task.build_model().to(device).train()
    optimizer = build_optimizer(optimizer_cfg, task.param_groups(model), task.steps_per_epoch(), seed=0)
    for step in range(warmup + steps):
        if step == warmup:
            synchronize(device)
            start = time.perf_counter()
        train_step(task, model, optimizer, batch, hessian=needs_hessian(optimizer, step), device=device, amp=amp)
    synchronize(device)
    return steps * items_in(batch) / (time.perf_counter() - start)


def run(args: argparse.Namespace) -> int:
    if min(args.batch_size, args.batches) < 1 or args.warmup < 0:
        raise UsageError("--batch-size and --batches must be >= 1 and --warmup >= 0")
    overrides = [f"task={args.task}", f"optimizer={args.optimizer}", f"trainer.batch_size={args.batch_size}",
                 f"trainer.device={args.device}", *args.set]
    if args.data_dir:
        overrides.append(f"task.data_dir={args.data_dir}")
    cfg = compose_config(overrides)
    device = resolve_device(args.device)
    task = build_task(cfg, device, Distributed.single())
    try:
        loader_rate, batch = time_loader(task, args.batches, args.warmup, device)
        step_rate = time_step(task, cfg.optimizer, batch, args.batches, max(1, args.warmup), device, args.amp)
    finally:
        getattr(task, "close", lambda: None)()
    summary = getattr(task, "data_summary", dict)()
    result = {"task": args.task, "device": str(device), "batch_size": args.batch_size, "batches": args.batches,
              "optimizer": args.optimizer, "amp": args.amp, "loader": summary.get("loader"),
              "workers": summary.get("workers"), "loader_images_per_s": round(loader_rate, 1),
              "step_images_per_s": round(step_rate, 1), "loader_vs_step": round(loader_rate / step_rate, 3),
              "data_bound": loader_rate < step_rate}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    verdict = ("data-bound: the loader is slower than the step; add workers (--set task.workers=N), use "
               "--set task.loader=dali, or move the data to a faster disk" if result["data_bound"]
               else "the loader keeps up with the step")
    console.print(f"{args.task} on {device}, batch {args.batch_size} ({result['loader']}, {result['workers']} "
                  f"workers): loader {loader_rate:.1f} images/s, {args.optimizer} step {step_rate:.1f} images/s, "
                  f"ratio {result['loader_vs_step']}: {verdict}", highlight=False, markup=False, soft_wrap=True)
    return 0
