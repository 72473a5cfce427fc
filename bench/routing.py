"""Parameter routing: a task's param group may say `"route": NAME`; `task.routes.NAME` (an optimizer config,
like conf/optimizer/*.yaml) then trains it instead of the optimizer under test. DLRM routes its sparse embedding
tables to Adagrad, as the AdaHessian paper did, while the MLPs take `optimizer=...`.

`RoutedOptimizer` steps them together and looks like one `torch.optim.Optimizer` to the runner, the schedule
and checkpoints. Curvature belongs to the primary optimizer alone: `needs_hessian`, `update_hessian`,
`hvp_count`, `estimator` and `hessian_reduce` are the primary's, so Hutchinson probes only ever see the
primary's parameters (an `nn.EmbeddingBag` has no double backward).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

ROUTE_KEY = "route"
PRIMARY = "primary"


def split_routes(param_groups: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The groups without a route, and the routed ones by route name (the `route` key removed)."""
    primary: list[dict[str, Any]] = []
    routed: dict[str, list[dict[str, Any]]] = {}
    for group in param_groups:
        name = group.get(ROUTE_KEY)
        if name is None:
            primary.append(group)
        else:
            routed.setdefault(name, []).append({k: v for k, v in group.items() if k != ROUTE_KEY})
    return primary, routed


def describe(label: str, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return {"optimizer": label, "n_tensors": len(params), "n_params": sum(p.numel() for p in params)}


class RoutedOptimizer(torch.optim.Optimizer):
    """The optimizer under test (`primary`) plus one optimizer per route, stepped and saved together.

    `param_groups` lists the primary's groups first, then each route's, so a schedule scales every group
    relative to its own initial lr and `param_groups[0]["lr"]` is the primary's.
    """

    def __init__(self, primary: torch.optim.Optimizer, routes: dict[str, torch.optim.Optimizer],
                 labels: dict[str, str]) -> None:
        # torch.optim.Optimizer.__init__ is not called: the groups and state live in the wrapped optimizers.
        self.primary = primary
        self.routes = routes
        self.param_routing = {PRIMARY: describe(labels[PRIMARY], primary)} | {
            name: describe(labels[name], opt) for name, opt in routes.items()}
        self.defaults = primary.defaults
        self._optimizer_step_pre_hooks: dict[int, Callable] = {}
        self._optimizer_step_post_hooks: dict[int, Callable] = {}

    def _all(self) -> list[torch.optim.Optimizer]:
        return [self.primary, *self.routes.values()]

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return [group for opt in self._all() for group in opt.param_groups]

    @property
    def state(self) -> dict[Any, Any]:  # type: ignore[override]
        merged: dict[Any, Any] = {}
        for opt in self._all():
            merged.update(opt.state)
        return merged

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = self.primary.step(closure)
        for opt in self.routes.values():
            opt.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self._all():
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        return {PRIMARY: self.primary.state_dict(), "routes": {n: o.state_dict() for n, o in self.routes.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        self.primary.load_state_dict(state_dict[PRIMARY])
        for name, opt in self.routes.items():
            opt.load_state_dict(state_dict["routes"][name])

    def extra_state_bytes(self) -> int:
        return sum(int(opt.extra_state_bytes()) for opt in self._all() if hasattr(opt, "extra_state_bytes"))

    # Curvature is the primary's: these exist only when the primary has them (so `hasattr` tells the truth).
    def __getattr__(self, name: str) -> Any:
        if name in ("primary", "routes") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.primary, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "hessian_reduce":
            self.primary.hessian_reduce = value
        else:
            super().__setattr__(name, value)

    def __repr__(self) -> str:
        return f"RoutedOptimizer(primary={self.primary!r}, routes={self.routes!r})"


def build_routed(cfg: Any, primary_groups: list[dict[str, Any]], routed: dict[str, list[dict[str, Any]]],
                 routes: Any, build: Callable[..., torch.optim.Optimizer], steps_per_epoch: int,
                 seed: int) -> RoutedOptimizer:
    """The primary optimizer on the unrouted groups and `routes[name]` on each route's groups."""
    from bench.errors import UsageError

    optimizers: dict[str, torch.optim.Optimizer] = {}
    labels = {PRIMARY: str(cfg.name)}
    for name, groups in routed.items():
        route_cfg = (routes or {}).get(name)
        if route_cfg is None or "_target_" not in route_cfg:
            raise UsageError(f"task.routes.{name}: the task sends parameters to route '{name}' but the config "
                             f"gives no optimizer for it; set e.g. task.routes.{name}={{name: adagrad, _target_: "
                             "torch.optim.Adagrad, lr: 0.01}")
        optimizers[name] = build(route_cfg, groups, steps_per_epoch, seed)
        labels[name] = str(route_cfg.get("name", route_cfg["_target_"]))
    return RoutedOptimizer(build(cfg, primary_groups, steps_per_epoch, seed), optimizers, labels)
