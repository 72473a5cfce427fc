"""Build an optimizer from its config: `_target_` plus keyword defaults, and a few harness keys.

Harness keys are not constructor arguments: `name` labels the run, `weight_decay_mode` states how
`weight_decay` acts (validated against what the class really does, or passed to classes that offer both),
and `hessian_warmup_epochs` becomes `hessian_warmup_steps` once the task's epoch length is known.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from bench.errors import UsageError
from bench.routing import build_routed, split_routes

HARNESS_KEYS = ("name", "weight_decay_mode", "hessian_warmup_epochs")
DECAY_MODES = ("l2", "decoupled")
# How torch's own optimizers apply `weight_decay`; they offer no choice.
FIXED_DECAY_MODE: dict[type, str] = {
    torch.optim.SGD: "l2",
    torch.optim.Adam: "l2",
    torch.optim.Adagrad: "l2",
    torch.optim.AdamW: "decoupled",
}


def accepts(cls: type, name: str) -> bool:
    return name in inspect.signature(cls.__init__).parameters


def constructor_kwargs(cfg: DictConfig, cls: type, steps_per_epoch: int, seed: int) -> dict[str, Any]:
    kwargs = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(kwargs, dict)
    kwargs.pop("_target_")
    for key in HARNESS_KEYS:
        kwargs.pop(key, None)
    mode = cfg.get("weight_decay_mode")
    if mode is not None:
        if mode not in DECAY_MODES:
            raise UsageError(f"optimizer.weight_decay_mode={mode}: expected one of {', '.join(DECAY_MODES)}")
        if accepts(cls, "weight_decay_mode"):
            kwargs["weight_decay_mode"] = mode
        elif FIXED_DECAY_MODE.get(cls, getattr(cls, "fixed_weight_decay_mode", mode)) != mode:
            fixed = FIXED_DECAY_MODE.get(cls, getattr(cls, "fixed_weight_decay_mode", None))
            raise UsageError(f"optimizer.weight_decay_mode={mode}: {cls.__name__} applies weight_decay as "
                             f"{fixed}; pick an optimizer that implements {mode} decay "
                             "(e.g. optimizer=adamw for decoupled)")
    warmup_epochs = cfg.get("hessian_warmup_epochs")
    if warmup_epochs and accepts(cls, "hessian_warmup_steps"):
        kwargs["hessian_warmup_steps"] = int(warmup_epochs) * steps_per_epoch
    if accepts(cls, "seed"):
        kwargs["seed"] = seed
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return kwargs


def build_optimizer(cfg: DictConfig, param_groups: list[dict[str, Any]], steps_per_epoch: int,
                    seed: int, routes: DictConfig | None = None) -> torch.optim.Optimizer:
    """Instantiate `cfg._target_` on the task's parameter groups; bad values become UsageErrors.

    Groups marked `"route": NAME` go to the optimizer configured in `routes[NAME]` (bench/routing.py)."""
    primary_groups, routed = split_routes(param_groups)
    if routed:
        return build_routed(cfg, primary_groups, routed, routes, build_optimizer, steps_per_epoch, seed)
    try:
        cls = get_class(cfg._target_)
    except Exception:
        raise UsageError(f"optimizer._target_={cfg._target_}: cannot import that class; "
                         "give a dotted path such as torch.optim.Adam") from None
    kwargs = constructor_kwargs(cfg, cls, steps_per_epoch, seed)
    try:
        return cls(param_groups, **kwargs)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"optimizer={cfg.name}: {exc}") from None


# Optimizers we do not own that cannot run data-parallel, and why; ours say so in `distributed_support`.
SINGLE_PROCESS_ONLY: dict[type, str] = {
    torch.optim.LBFGS: "L-BFGS's line search and curvature pairs use each rank's own loss and are not reduced, "
                       "so the ranks would take different steps",
}


def distributed_refusal(cfg: DictConfig) -> str | None:
    """Why the configured optimizer cannot run on several processes, or None if it can."""
    try:
        cls = get_class(cfg._target_)
    except Exception:
        return None
    if cls in SINGLE_PROCESS_ONLY:
        return SINGLE_PROCESS_ONLY[cls]
    if getattr(cls, "distributed_support", True) is False:
        return getattr(cls, "distributed_reason", "it does not reduce its curvature statistics across ranks")
    return None


def is_hessian_optimizer(cfg: DictConfig) -> bool:
    """Whether the configured optimizer asks for Hessian-vector products (it defines `needs_hessian`)."""
    try:
        return hasattr(get_class(cfg._target_), "needs_hessian")
    except Exception:
        return False


def needs_hessian(optimizer: torch.optim.Optimizer, step: int) -> bool:
    """Whether this step must keep the backward graph for a Hessian-vector product (default: no)."""
    ask = getattr(optimizer, "needs_hessian", None)
    return bool(ask(step)) if ask is not None else False


def needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """Whether `step` needs a closure that recomputes the loss (L-BFGS's line search, OASIS-style steps)."""
    return bool(getattr(optimizer, "needs_closure", isinstance(optimizer, torch.optim.LBFGS)))


def _tensor_bytes(value: Any) -> int:
    if torch.is_tensor(value):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Memory held by the optimizer's state tensors (moments, Hessian diagonals, Kronecker factors, nested
    too) plus what it keeps outside `state` and reports through `extra_state_bytes()` (e.g. a gradient ring)."""
    extra = getattr(optimizer, "extra_state_bytes", None)
    return _tensor_bytes(list(optimizer.state.values())) + (int(extra()) if callable(extra) else 0)
