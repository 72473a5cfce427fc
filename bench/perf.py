"""`bench perf step-time`: what one optimizer step costs, as ratios measured in one process.

Variants are timed round-robin (one cycle of each per round) on the same pre-built batches, so drift of a
shared machine hits all of them alike. A cycle of AdaHessian@K is K steps holding exactly one Hessian
refresh; its time per step is the cycle's mean, which is what the paper's Table 8 reports. The HVP limit is
forward + backward(create_graph=True) + one Hessian-vector product + an Adam update: the least any
Hutchinson-based optimizer can cost per refresh step.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import cycle, islice
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from packaging.version import Version

from bench import perf_loader
from bench.config import compose_config
from bench.distributed import Distributed
from bench.errors import UsageError
from bench.hvp import CurvatureBatch, resolve_mode
from bench.launch import sweep_compositions
from bench.optim_factory import build_optimizer, is_hessian_optimizer, needs_hessian
from bench.progress import console
from bench.runner import build_task, resolve_device
from bench.step import Diverged, autocast, train_step
from tasks.base import Task

PEER = "pytorch_optimizer.AdaHessian"
# Up to this release the peer drew its Rademacher probes as randint_like(p, 0, 1) * 2 - 1, which is always -1.
PEER_PROBE_BUG_LAST = "3.10.1"


def peer_caveat(installed: str | None = None) -> str:
    """What the installed peer's numbers mean: its probes were constant up to PEER_PROBE_BUG_LAST."""
    installed = installed or importlib.metadata.version("pytorch_optimizer")
    if Version(installed) <= Version(PEER_PROBE_BUG_LAST):
        return (f"{PEER} {installed} draws its Rademacher probes with randint_like(p, 0, 1) * 2 - 1, which is "
                f"always -1 (fixed after {PEER_PROBE_BUG_LAST}): its timing is comparable, its estimates are not")
    return (f"{PEER} {installed} draws real Rademacher probes (the always -1 probes of releases up to "
            f"{PEER_PROBE_BUG_LAST} are fixed): its timing and its estimates are comparable")


@dataclass
class Variant:
    """A named way of taking `cycle` steps; `run_cycle` does them and returns the items they covered."""

    name: str
    cycle: int
    run_cycle: Callable[[list[Any]], int]
    first_order: bool = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", required=True)
    p = sub.add_parser("step-time", help="median step time per optimizer, ratios vs SGD and Adam (paper Table 8)")
    p.add_argument("--task", default="cifar10_resnet20")
    p.add_argument("--data-dir", help="the task's data_dir (default: the task config's)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="timed cycles per variant")
    p.add_argument("--warmup", type=int, default=2, help="untimed cycles per variant")
    p.add_argument("--optimizers", default="sgd,adam,adahessian")
    p.add_argument("--hessian-every", default="1", help="update_each values for Hessian optimizers, e.g. 1,2,3,4,5")
    p.add_argument("--hessian-batch-fraction", default="1",
                   help="trainer.hessian_batch_fraction values, e.g. 1,0.25 (variant adahessian@1/f0.25)")
    p.add_argument("--hvp-mode", default="auto",
                   help="trainer.hvp_mode values, e.g. double_backward,forward_over_reverse (adahessian@1/fwd)")
    p.add_argument("--reuse", action="store_true",
                   help="also time Hessian optimizers on steps that only reuse the estimate (adahessian@reuse)")
    p.add_argument("--memory", action="store_true", help="also profile one cycle per variant for its peak memory")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--amp", default="none", choices=("none", "bf16"))
    p.add_argument("--peers", action="store_true", help=f"also time {PEER} (see its probe caveat)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    perf_loader.add_parser(sub)


def positive_ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise UsageError(f"{flag} {text}: expected comma-separated positive integers, e.g. 1,2,3,4,5")
    return values


def fractions(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(0 < v <= 1 for v in values):
        raise UsageError(f"--hessian-batch-fraction {text}: expected comma-separated numbers in (0, 1], e.g. 1,0.25")
    return values


def hvp_modes(text: str) -> list[str]:
    return list(dict.fromkeys(resolve_mode(m.strip()) for m in text.split(",")))


def curvature_label(fraction: float, mode: str) -> str:
    """`/f0.25` for a curvature sub-batch, `/fwd` for forward-over-reverse; nothing for today's path."""
    return (f"/f{fraction:g}" if fraction < 1 else "") + ("/fwd" if mode == "forward_over_reverse" else "")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fresh_model(task: Task, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return task.build_model().to(device).train()


def harness_variant(label: str, optimizer_cfg: DictConfig, every: int, task: Task, device: torch.device,
                    amp: str, routes: DictConfig | None = None, fraction: float = 1.0,
                    hvp_mode: str = "auto") -> Variant:
    """An optimizer from conf/ stepped by the runner's own train_step; Hessian ones refresh every `every`, with
    `Hz` from the first `fraction` of the batch by `hvp_mode` (bench/hvp.py)."""
    cfg = copy.deepcopy(optimizer_cfg)
    if "update_each" in cfg:
        cfg.update_each = every
    if "hessian_warmup_epochs" in cfg:
        cfg.hessian_warmup_epochs = 0
    model = fresh_model(task, device)
    optimizer = build_optimizer(cfg, task.param_groups(model), task.steps_per_epoch(), seed=0, routes=routes)
    attach = getattr(optimizer, "attach", None)
    if callable(attach):  # module hooks (K-FAC), as the runner installs them
        attach(model)
    steps = iter(range(1 << 62))

    def run_cycle(batches: list[Any]) -> int:
        return sum(train_step(task, model, optimizer, batch, hessian=needs_hessian(optimizer, next(steps)),
                              device=device, amp=amp, hessian_batch_fraction=fraction, hvp_mode=hvp_mode).n
                   for batch in batches)

    return Variant(label, every, run_cycle, first_order=not is_hessian_optimizer(optimizer_cfg))


def reuse_variant(name: str, optimizer_cfg: DictConfig, task: Task, device: torch.device, amp: str,
                  routes: DictConfig | None, prime: Any) -> Variant:
    """`name@reuse`: steps that only reuse the Hessian estimate (one refresh on `prime` at build time, none
    after), i.e. what the non-refresh steps of a delayed update cost; they should cost an Adam step."""
    cfg = copy.deepcopy(optimizer_cfg)
    cfg.update_each = 1 << 40
    cfg.hessian_warmup_epochs = 0
    model = fresh_model(task, device)
    optimizer = build_optimizer(cfg, task.param_groups(model), task.steps_per_epoch(), seed=0, routes=routes)
    train_step(task, model, optimizer, prime, hessian=True, device=device, amp=amp)

    def run_cycle(batches: list[Any]) -> int:
        return sum(train_step(task, model, optimizer, batch, hessian=False, device=device, amp=amp).n
                   for batch in batches)

    return Variant(f"{name}@reuse", 1, run_cycle)


def peer_variant(every: int, task: Task, device: torch.device, amp: str) -> Variant:
    """The peer's API needs backward(create_graph=True) on every step; its step() does the rest."""
    model = fresh_model(task, device)
    optimizer = get_class(PEER)(model.parameters(), lr=0.15, eps=1e-4, update_period=every)

    def run_cycle(batches: list[Any]) -> int:
        return sum(train_step(task, model, optimizer, batch, hessian=True, device=device, amp=amp).n
                   for batch in batches)

    return Variant(f"peer:pytorch_optimizer@{every}", every, run_cycle)


def fixed_probes(params: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """One Rademacher probe per parameter from a fixed seed: the HVP limits time the product, not the draw."""
    generator = torch.Generator(device=device).manual_seed(0)
    return [torch.randint(0, 2, p.shape, generator=generator, device=device).to(p.dtype) * 2 - 1 for p in params]


def hvp_limit_variant(task: Task, device: torch.device, amp: str, routes: DictConfig | None = None) -> Variant:
    """Forward, backward(create_graph=True), one HVP with a fixed Rademacher probe, then Adam's update. Routed
    parameters (bench/routing.py) get their gradient and their own optimizer's step, but no HVP, as in training."""
    model = fresh_model(task, device)
    adam_cfg = OmegaConf.create({"name": "adam", "_target_": "torch.optim.Adam", "lr": 1e-3})
    adam = build_optimizer(adam_cfg, task.param_groups(model), task.steps_per_epoch(), seed=0, routes=routes)
    curved = getattr(adam, "primary", adam)
    params = [p for group in curved.param_groups for p in group["params"] if p.requires_grad]
    curved_groups = {id(group) for group in curved.param_groups}
    others = [p for group in adam.param_groups if id(group) not in curved_groups for p in group["params"]
              if p.requires_grad]
    probes = fixed_probes(params, device)

    def run_cycle(batches: list[Any]) -> int:
        items = 0
        for batch in batches:
            with autocast(device, amp):
                loss, n = task.loss(model, batch)
            items += n
            grads = torch.autograd.grad(loss, [*params, *others], create_graph=True)
            torch.autograd.grad(grads[:len(params)], params, grad_outputs=probes)
            for p, g in zip([*params, *others], grads, strict=True):
                p.grad = g.detach()
            adam.step()
            adam.zero_grad(set_to_none=True)
        return items

    return Variant("hvp_limit", 1, run_cycle)


def hvp_limit_fwd_variant(task: Task, device: torch.device, amp: str) -> Variant:
    """The forward-over-reverse HVP limit: forward + plain backward, one JVP of the gradient (which recomputes
    forward and backward) with a fixed Rademacher probe, then Adam's update. Unrouted tasks only."""
    model = fresh_model(task, device)
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    params = [p for p in model.parameters() if p.requires_grad]
    probes = fixed_probes(params, device)

    def run_cycle(batches: list[Any]) -> int:
        items = 0
        for batch in batches:
            with autocast(device, amp):
                loss, n = task.loss(model, batch)
            items += n
            loss.backward()
            CurvatureBatch(task, model, batch, mode="forward_over_reverse", device=device,
                           autocast=autocast(device, amp))(params, probes, False)
            adam.step()
            adam.zero_grad(set_to_none=True)
        return items

    return Variant("hvp_limit/fwd", 1, run_cycle)


def peak_bytes(variant: Variant, batches: list[Any]) -> int:
    """Peak bytes of tensors allocated during one cycle, beyond what was live before it: the profiler's
    per-op self allocations minus frees (CPU and CUDA), summed in time order. The model and optimizer state
    that already exist are not counted; the double-backward graph, activations and probes are."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities, profile_memory=True) as prof:
        variant.run_cycle(batches)
    live = peak = 0
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += e.self_cpu_memory_usage + e.self_device_memory_usage
        peak = max(peak, live)
    return peak


@dataclass
class Timings:
    """Median seconds per step and items per second of each timed variant; the ones that diverged."""

    median_s: dict[str, float]
    items_per_s: dict[str, float]
    diverged: list[str]


def measure(variants: list[Variant], batches: list[Any], steps: int, warmup: int, device: torch.device) -> Timings:
    """Time each variant one cycle at a time, round-robin. A variant that stops on a NaN loss (train_step
    raises Diverged) is dropped, since NaN arithmetic would distort its timing, and listed as diverged."""
    feed = cycle(batches)
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    items: dict[str, int] = dict.fromkeys(times, 0)
    diverged: list[str] = []
    for round_index in range(warmup + steps):
        for variant in variants:
            if variant.name in diverged:
                continue
            chunk = list(islice(feed, variant.cycle))
            synchronize(device)
            start = time.perf_counter()
            try:
                n = variant.run_cycle(chunk)
            except Diverged:
                diverged.append(variant.name)
                continue
            synchronize(device)
            if round_index >= warmup:
                times[variant.name].append((time.perf_counter() - start) / variant.cycle)
                items[variant.name] += n
    kept = {name: v for name, v in times.items() if v and name not in diverged}
    return Timings({name: statistics.median(v) for name, v in kept.items()},
                   {name: items[name] / (sum(v) * variant_cycle(variants, name)) for name, v in kept.items()},
                   diverged)


def variant_cycle(variants: list[Variant], name: str) -> int:
    return next(v.cycle for v in variants if v.name == name)


def summarize(timings: Timings, variants: list[Variant], args: argparse.Namespace, task: Task,
              device: torch.device) -> dict[str, Any]:
    median_s = timings.median_s

    def ratios(base: str) -> dict[str, float]:
        if base not in median_s:
            return {}
        return {k: round(v / median_s[base], 3) for k, v in median_s.items()
                if k != base and not k.startswith("hvp_limit")}

    bases = [v.name for v in variants if v.first_order]
    result: dict[str, Any] = {
        "task": args.task, "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda"
        else None, "torch": torch.__version__, "batch_size": args.batch_size, "steps": args.steps, "amp": args.amp,
        "median_s": {k: round(v, 6) for k, v in median_s.items()},
        "throughput_unit": task.throughput_unit,
        "items_per_s": {k: round(v, 1) for k, v in timings.items_per_s.items()},
        "ratios_vs_adam": ratios("adam"), "ratios_vs_sgd": ratios("sgd"),
        "ratios_vs": {base: ratios(base) for base in bases if base in median_s},
    }
    if "adam" in median_s:
        limit = median_s["hvp_limit"] / median_s["adam"]
        result["hvp_limit_vs_adam"] = round(limit, 3)
        targets = {}
        if "adahessian@1" in median_s:
            value = median_s["adahessian@1"] / median_s["hvp_limit"]
            targets["adahessian@1_vs_hvp_limit"] = {"value": round(value, 3), "max": 1.10, "ok": value <= 1.10}
        if "adahessian@5" in median_s:
            value, bound = median_s["adahessian@5"] / median_s["adam"], 1 + (limit - 1) / 5 + 0.05
            targets["adahessian@5_vs_adam"] = {"value": round(value, 3), "max": round(bound, 3), "ok": value <= bound}
        if "adahessian@1/f0.25" in median_s:
            value = median_s["adahessian@1/f0.25"] / median_s["adam"]
            targets["adahessian@1/f0.25_vs_adam"] = {"value": round(value, 3), "max": 2.0, "ok": value <= 2.0}
        if "adahessian@reuse" in median_s:
            value = median_s["adahessian@reuse"] / median_s["adam"]
            targets["adahessian@reuse_vs_adam"] = {"value": round(value, 3), "max": 1.05, "ok": value <= 1.05}
        if "hvp_limit/fwd" in median_s:
            result["hvp_limit_fwd_vs_adam"] = round(median_s["hvp_limit/fwd"] / median_s["adam"], 3)
        result["targets"] = targets
    if args.peers:
        result["peer_caveat"] = peer_caveat()
    result["diverged"] = timings.diverged
    return result


def print_table(result: dict[str, Any]) -> None:
    from rich.table import Table

    bases = list(result["ratios_vs"])
    table = Table(title=f"step time: {result['task']}, batch {result['batch_size']}, {result['device']}")
    for column in ("variant", "median ms/step", f"{result['throughput_unit']}/s", *(f"x {b}" for b in bases)):
        table.add_column(column, justify="right" if column != "variant" else "left")
    for name, seconds in result["median_s"].items():
        table.add_row(name, f"{seconds * 1e3:.1f}", f"{result['items_per_s'][name]:.0f}",
                      *(str(result["ratios_vs"][b].get(name, "-")) for b in bases))
    console.print(table)
    if "hvp_limit_vs_adam" in result:
        console.print(f"HVP limit = {result['hvp_limit_vs_adam']}x Adam")
    if "hvp_limit_fwd_vs_adam" in result:
        console.print(f"HVP limit, forward-over-reverse = {result['hvp_limit_fwd_vs_adam']}x Adam")
    for name, peak in result.get("peak_mib", {}).items():
        console.print(f"peak memory {name}: {peak} MiB", highlight=False)
    for name, target in result.get("targets", {}).items():
        verdict = "ok" if target["ok"] else "MISSED"
        console.print(f"target {name}: {target['value']} <= {target['max']}  {verdict}", highlight=False)
    if result["diverged"]:
        console.print(f"diverged (not timed): {', '.join(result['diverged'])}", highlight=False)
    if "peer_caveat" in result:
        console.print(f"note: {result['peer_caveat']}", highlight=False)


def build_timing_task(cfg: DictConfig, device: torch.device, batch_size: int) -> tuple[Task, str]:
    """The task on its real data; if that is absent and the task can, on random tensors of its shape."""
    try:
        return build_task(cfg, device, Distributed.single()), str(cfg.task.get("data_dir", "bundled"))
    except UsageError as exc:
        if "synthetic" not in cfg.task:
            raise
        cfg.task.synthetic = 8 * batch_size  # random training items of the task's real shapes
        console.print(f"note: timing on random tensors of the task's shape ({exc})", highlight=False,
                      markup=False, soft_wrap=True)
        return build_task(cfg, device, Distributed.single()), "synthetic"


def run(args: argparse.Namespace) -> int:
    if args.benchmark == "loader":
        return perf_loader.run(args)
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    every = positive_ints(args.hessian_every, "--hessian-every")
    curvature = [(f, m) for m in hvp_modes(args.hvp_mode) for f in fractions(args.hessian_batch_fraction)]
    if min(args.batch_size, args.steps) < 1 or args.warmup < 0:
        raise UsageError("--batch-size and --steps must be >= 1 and --warmup >= 0")
    overrides = [f"task={args.task}", f"trainer.batch_size={args.batch_size}", f"trainer.device={args.device}"]
    if args.data_dir:
        overrides.append(f"task.data_dir={args.data_dir}")
    sweep_compositions([*overrides, *(f"optimizer={n}" for n in names)])
    cfg = compose_config(overrides)
    device = resolve_device(args.device)
    task, data = build_timing_task(cfg, device, args.batch_size)
    routes = cfg.task.get("routes")
    batches = list(islice(task.train_batches(0), 8))
    variants: list[Variant] = []
    for name in [*names, *(["adam"] if "adam" not in names else [])]:
        optimizer_cfg = compose_config([*overrides, f"optimizer={name}"]).optimizer
        if is_hessian_optimizer(optimizer_cfg):
            variants += [harness_variant(f"{name}@{k}{curvature_label(f, m)}", optimizer_cfg, k, task, device,
                                         args.amp, routes, f, m) for k in every for f, m in curvature]
            if args.reuse and "update_each" in optimizer_cfg:
                variants.append(reuse_variant(name, optimizer_cfg, task, device, args.amp, routes, batches[0]))
        else:
            variants.append(harness_variant(name, optimizer_cfg, 1, task, device, args.amp, routes))
    if args.peers:
        variants += [peer_variant(k, task, device, args.amp) for k in every]
    variants.append(hvp_limit_variant(task, device, args.amp, routes))
    if "forward_over_reverse" in hvp_modes(args.hvp_mode) and not routes:
        variants.append(hvp_limit_fwd_variant(task, device, args.amp))
    result = summarize(measure(variants, batches, args.steps, args.warmup, device), variants, args, task, device)
    if args.memory:
        result["peak_mib"] = {v.name: round(peak_bytes(v, batches[:v.cycle]) / 2**20, 1) for v in variants
                              if v.name not in result["diverged"]}
    result["data"] = data
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0
