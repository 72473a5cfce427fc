"""AdaHessian (Yao et al., AAAI 2021, arXiv:2006.00719): Adam with the squared gradient replaced by the
squared (smoothed) Hutchinson estimate of the Hessian diagonal.

Update per parameter, with ``t`` the parameter's step count (Algorithm 1; the authors'
``image_classification/optim_adahessian.py`` in amirgholami/adahessian)::

    D     = smooth(|Hutchinson estimate|)                  # see optimizers.hutchinson
    m     = β1·m + (1 − β1)·g
    v     = β2·v + (1 − β2)·D²
    denom = (sqrt(v) / sqrt(1 − β2^t))^k + eps             # k = hessian_power
    p     = p − lr·(m / (1 − β1^t) / denom + wd·p)         # weight_decay_mode="decoupled"

Defaults (lr=0.15, betas=(0.9, 0.999), eps=1e-4, hessian_power=1, decoupled weight decay applied as
``lr·wd·p``) are the authors'. Their CIFAR script divides its weight decay by lr before passing it in
(``--weight-decay 5e-4`` becomes ``wd = 5e-4 / lr``), so a recipe that quotes "wd 5e-4" means that.

Weight decay modes:

* ``"decoupled"`` (default, the authors' code and AdamW): ``p −= lr·wd·p`` outside the moments.
* ``"l2"``: the penalty ``½·wd·‖p‖²`` is treated as part of the loss. Its gradient ``wd·p`` is added to
  ``g`` before the moments, and its exact Hessian diagonal ``wd`` is added to the signed Hutchinson
  estimate before ``|·|`` and averaging, so ``D`` sees it too. With Rademacher probes this is the same
  update as putting the penalty in the loss yourself (up to rounding), which is what users of Adam's
  ``weight_decay`` (an L2 penalty) expect.

Delayed Hessian update (paper Table 8: Hessian computed every ``update_each`` steps). The estimate is
refreshed on steps where :meth:`AdaHessian.needs_hessian` is True (every step during
``hessian_warmup_steps``, then every ``update_each``-th step); only those steps need
``loss.backward(create_graph=True)``, the others take a plain ``backward()`` and reuse the last ``D``.
What ``v`` does between refreshes is selectable with ``v_update``:

* ``"every_step"`` (default): ``v`` keeps its EMA update every step with the last (stale) ``D``, i.e.
  Algorithm 1 unchanged except that ``D_t`` is the latest estimate; the bias correction ``1 − β2^t`` stays
  exact because ``v`` received exactly ``t`` updates. This is what davda54/ada-hessian does (its
  ``update_each``: ``p.hess`` is zeroed and recomputed only every ``update_each`` steps, while
  ``exp_hessian_diag_sq.mul_(β2).addcmul_(p.hess, p.hess, 1 − β2)`` runs on every step), and the
  AdaHessian authors' README (amirgholami/adahessian, "External implementations" table) lists exactly
  that repository as the one that "Support[s] Delayed Hessian Update"; the authors' own optimizer files
  (image_classification/ and transformer/fairseq/optim/) compute the Hessian on every step, and the
  paper's text around Table 8, as far as we could consult it, does not say what happens to ``v`` between
  refreshes. We therefore take the authors-endorsed implementation as the variant behind Table 8.
* ``"on_refresh"``: ``v`` is updated only when a fresh ``D`` arrives and its bias correction counts
  refreshes, so the preconditioner is frozen between refreshes. pytorch_optimizer's
  ``AdaHessian(update_period=k)`` updates ``v`` this way (but bias-corrects with the total step count,
  which under-corrects ``v``; we do not copy that).

Usage (drop-in for Adam)::

    opt = AdaHessian(model.parameters(), lr=0.15, weight_decay=5e-4 / 0.15)
    for step, (x, y) in enumerate(loader):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward(create_graph=opt.needs_hessian(opt.step_count))
        opt.step()

With gradient clipping, call ``opt.update_hessian()`` after ``backward`` and before clipping: it takes
the estimate (when due) and detaches ``p.grad`` so that clipping acts on plain tensors.

Adam compatibility (so that ``torch.optim.Adam(...)`` can be swapped for ``AdaHessian(...)`` with only the
``backward`` change): every keyword of ``torch.optim.Adam`` is accepted.

* ``maximize``: ascends; the gradient is negated and the Hessian estimate is that of ``−f`` (it only
  matters with ``weight_decay_mode="l2"``, where ``wd`` is added before ``|·|``).
* ``amsgrad``: AMSGrad on the Hessian moment: the denominator uses the running maximum of ``v``.
* ``foreach``: ``None``/``True`` update each (device, dtype) bucket with ``torch._foreach_*`` ops,
  ``False`` one tensor at a time (the same arithmetic).
* ``decoupled_weight_decay``: Adam's switch between L2 (``False``) and AdamW decay (``True``); it sets
  ``weight_decay_mode`` (giving both, in disagreement, is an error). Unset, the mode is the authors'
  decoupled decay, so ``AdaHessian(params, weight_decay=wd)`` is the authors' optimizer; pass
  ``decoupled_weight_decay=False`` for the L2 penalty Adam's ``weight_decay`` means.
* ``capturable``, ``differentiable``, ``fused``: only their off values; ``True`` is refused with a
  ``ValueError`` that says why (a step that runs a Hessian-vector product cannot be graph-captured, is
  not itself differentiable, and has no fused kernel).

Warm start from an Adam run (PINN users switch optimizers mid-training): :meth:`AdaHessian.load_adam_state`
takes the first moment and step count from ``torch.optim.Adam.state_dict()``. Adam's second moment is a
moment of squared gradients, not of ``D²``, so ``v`` starts at zero and its bias correction counts only the
steps taken since the warm start.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from torch import Tensor
from torch.optim import Optimizer

from optimizers.hutchinson import EstimatorHooks, HutchinsonEstimator, HvpFn, Probe, ReduceFn, smooth_

WeightDecayMode = Literal["decoupled", "l2"]
VUpdate = Literal["every_step", "on_refresh"]

WEIGHT_DECAY_MODES: tuple[str, ...] = ("decoupled", "l2")
V_UPDATES: tuple[str, ...] = ("every_step", "on_refresh")


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _weight_decay_mode(mode: str | None, decoupled_weight_decay: bool | None) -> str:
    """Resolve ``weight_decay_mode`` and Adam's ``decoupled_weight_decay`` into one mode."""
    if decoupled_weight_decay is None:
        return "decoupled" if mode is None else mode
    implied = "decoupled" if decoupled_weight_decay else "l2"
    if mode is not None and mode != implied:
        raise ValueError(f"decoupled_weight_decay={decoupled_weight_decay} means weight_decay_mode={implied!r}, "
                         f"but weight_decay_mode={mode!r} was given; pass only one of them")
    return implied


def _refuse_unsupported(capturable: bool, differentiable: bool, fused: bool | None) -> None:
    """Adam keywords whose True value AdaHessian cannot honour: one clear line each."""
    if capturable:
        raise ValueError("capturable=True is not supported by AdaHessian: its step takes a Hessian-vector "
                         "product (a backward pass), which CUDA-graph capture cannot hold; leave capturable=False")
    if differentiable:
        raise ValueError("differentiable=True is not supported by AdaHessian: its step is not differentiable "
                         "(it differentiates through the gradient for its Hessian estimate); leave "
                         "differentiable=False")
    if fused:
        raise ValueError("fused=True is not supported by AdaHessian: there is no fused AdaHessian kernel; leave "
                         "fused unset (the foreach implementation is the default)")


def _check_group_hparams(h: dict[str, Any]) -> None:
    """Validate the per-group hyperparameters (constructor defaults and every param group)."""
    lr, betas, eps = h["lr"], h["betas"], h["eps"]
    if isinstance(lr, Tensor) or not lr > 0.0:
        raise ValueError(f"lr must be a float > 0, got {lr!r}")
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"betas must be two floats in [0, 1), got {betas!r}")
    if not eps > 0.0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    if not h["weight_decay"] >= 0.0:
        raise ValueError(f"weight_decay must be >= 0, got {h['weight_decay']!r}")
    if not 0.0 <= h["hessian_power"] <= 1.0:
        raise ValueError(f"hessian_power must be in [0, 1], got {h['hessian_power']!r}")
    if h["weight_decay_mode"] not in WEIGHT_DECAY_MODES:
        raise ValueError(f"weight_decay_mode must be one of {WEIGHT_DECAY_MODES}, got {h['weight_decay_mode']!r}")


class AdaHessian(EstimatorHooks, Optimizer):
    """AdaHessian; see the module docstring for the update, weight decay and delayed-update semantics.

    Args:
        params: parameters or param groups (groups may override lr, betas, eps, weight_decay,
            hessian_power, weight_decay_mode).
        lr, betas, eps, weight_decay, hessian_power: as in the update above; defaults are the authors'.
        weight_decay_mode: ``"decoupled"`` (``p −= lr·wd·p``, the default) or ``"l2"`` (penalty in gradient
            and ``D``).
        amsgrad, foreach, maximize, capturable, differentiable, fused, decoupled_weight_decay: Adam's
            keywords; see "Adam compatibility" in the module docstring.
        update_each: refresh the Hessian estimate every this many steps (1 = every step).
        hessian_warmup_steps: refresh on every step while fewer than this many steps were taken.
        v_update: ``"every_step"`` (EMA of the stale ``D`` between refreshes) or ``"on_refresh"``.
        n_samples: Hutchinson probes per refresh (each is one Hessian-vector product).
        probe: ``"rademacher"`` or ``"gaussian"``.
        spatial_average: average ``D`` over the spatial dims of 3-/4-/5-D (conv) weights.
        block_size: average ``D`` over blocks of this many input elements of 2-D weights and of pointwise
            (kernel size 1) conv weights, which are Linear layers over channels; 1-D tensors stay element-wise.
        seed: probe seed; ``None`` draws one from torch's global RNG. Give each data-parallel rank its own.
        hessian_reduce: in-place hook on the raw estimate list, e.g. an all-reduce mean across ranks;
            also settable later as ``opt.hessian_reduce = fn``.

    Attributes:
        step_count: steps taken (0-based index of the next step); persisted in ``state_dict``.
        hvp_count: Hessian-vector products computed so far; persisted in ``state_dict``.
        estimator: the shared :class:`~optimizers.hutchinson.HutchinsonEstimator`.
    """

    # Runner contract (DESIGN.md): no closure needed, only create_graph on needs_hessian steps.
    needs_closure: bool = False

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.15,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-4,
        weight_decay: float = 0.0,
        hessian_power: float = 1.0,
        *,
        amsgrad: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool | None = None,
        weight_decay_mode: WeightDecayMode | None = None,
        update_each: int = 1,
        hessian_warmup_steps: int = 0,
        v_update: VUpdate = "every_step",
        n_samples: int = 1,
        probe: Probe = "rademacher",
        spatial_average: bool = True,
        block_size: int = 1,
        seed: int | None = None,
        hessian_reduce: ReduceFn | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "hessian_power": hessian_power,
            "weight_decay_mode": _weight_decay_mode(weight_decay_mode, decoupled_weight_decay),
            "amsgrad": amsgrad,
            "maximize": maximize,
        }
        _refuse_unsupported(capturable, differentiable, fused)
        _check_group_hparams(defaults)
        _check_int("update_each", update_each, 1)
        _check_int("hessian_warmup_steps", hessian_warmup_steps, 0)
        if v_update not in V_UPDATES:
            raise ValueError(f"v_update must be one of {V_UPDATES}, got {v_update!r}")
        self.estimator = HutchinsonEstimator(
            n_samples=n_samples,
            probe=probe,
            spatial_average=spatial_average,
            block_size=block_size,
            seed=seed,
            reduce=hessian_reduce,
        )
        super().__init__(params, defaults)
        self.update_each = update_each
        self.hessian_warmup_steps = hessian_warmup_steps
        self.v_update = v_update
        self.foreach = foreach
        self.step_count = 0
        # Per-step flags: update_hessian() ran this step / it took a fresh estimate.
        self._hessian_taken = False
        self._refreshed = False

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Validate a group's (possibly overridden) hyperparameters, then add it."""
        _check_group_hparams({**self.defaults, **param_group})
        super().add_param_group(param_group)

    def needs_hessian(self, step: int) -> bool:
        """Whether the step with 0-based index ``step`` refreshes the Hessian estimate (and so needs
        ``backward(create_graph=True)``). A pure function of ``step`` and the constructor arguments."""
        return step < self.hessian_warmup_steps or step % self.update_each == 0

    def _params_with_grad(self) -> list[Tensor]:
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        for p in params:
            if p.grad.is_sparse:
                raise RuntimeError("AdaHessian does not support sparse gradients")
        return params

    @torch.no_grad()
    def update_hessian(self, hvp: HvpFn | None = None) -> bool:
        """Take the Hutchinson estimate if this step is due one, then detach every ``p.grad``.

        Call it after ``backward`` and before anything that modifies ``p.grad`` (gradient clipping,
        unscaling); :meth:`step` calls it itself otherwise. It takes at most one estimate per step.
        Detaching (``p.grad = p.grad.detach()``) frees the double-backward graph and breaks the
        parameter↔gradient reference cycle that ``create_graph=True`` creates.

        ``hvp`` (optional): takes the Hessian-vector products itself, ``hvp(params, probes, more) -> Hz``
        (:meth:`HutchinsonEstimator.raw_from_hvp`), e.g. forward-over-reverse or on a sub-batch; ``p.grad``
        then needs no graph. The probes, l2 term, smoothing and state are as without it.

        Returns:
            True if a fresh estimate was taken by this call.

        Raises:
            RuntimeError: an estimate is due but the gradients carry no graph (plain ``backward()``).
        """
        params = self._params_with_grad()
        refreshed = False
        if params and not self._hessian_taken and self.needs_hessian(self.step_count):
            if hvp is None:
                est = self.estimator.raw(params, [p.grad for p in params])
            else:
                with torch.enable_grad():
                    est = self.estimator.raw_from_hvp(params, hvp)
            by_param = dict(zip(params, est, strict=True))
            for group in self.param_groups:
                mine = [by_param[p] for p in group["params"] if p in by_param]
                if not mine:
                    continue
                if group["maximize"]:  # the curvature of −f, which is what the step descends
                    torch._foreach_neg_(mine)
                if group["weight_decay_mode"] == "l2" and group["weight_decay"] != 0.0:
                    torch._foreach_add_(mine, group["weight_decay"])
            smooth_(est, spatial_average=self.estimator.spatial_average, block_size=self.estimator.block_size)
            for p, d in by_param.items():
                state = self.state[p]
                state["hessian_diag"] = d
                state["hessian_step"] = state.get("hessian_step", 0) + 1
            refreshed = True
            self._refreshed = True
        self._hessian_taken = True
        for p in params:
            if p.grad.requires_grad:
                p.grad = p.grad.detach()
        return refreshed

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One AdaHessian step; refreshes the Hessian estimate first when due (see :meth:`update_hessian`)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.update_hessian()
        for group in self.param_groups:
            buckets: dict[tuple[Any, ...], dict[str, list[Any]]] = {}
            for i, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                state = self.state[p]
                if "hessian_diag" not in state:
                    raise RuntimeError(
                        "AdaHessian: a parameter has a gradient but no Hessian estimate yet (it had no "
                        "gradient on the last refresh step); give it a gradient on a step where "
                        "needs_hessian(step) is True"
                    )
                if "exp_avg" not in state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_hessian_diag_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["amsgrad"] and "max_exp_hessian_diag_sq" not in state:
                    state["max_exp_hessian_diag_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                key = (p.device, p.dtype) if self.foreach is not False else (i,)  # foreach=False: one tensor each
                b = buckets.setdefault(key, {"p": [], "g": [], "m": [], "v": [], "vmax": [], "d": [], "t1": [],
                                             "t2": []})
                b["p"].append(p)
                b["g"].append(p.grad)
                b["m"].append(state["exp_avg"])
                b["v"].append(state["exp_hessian_diag_sq"])
                if group["amsgrad"]:
                    b["vmax"].append(state["max_exp_hessian_diag_sq"])
                b["d"].append(state["hessian_diag"])
                b["t1"].append(state["step"])
                # v's own update count: after an Adam warm start v began at zero at step `v_offset`.
                v_steps = state["step"] - state.get("v_offset", 0)
                b["t2"].append(v_steps if self.v_update == "every_step" else state["hessian_step"])
            for b in buckets.values():
                self._update(group, b, update_v=self.v_update == "every_step" or self._refreshed)
        self.step_count += 1
        self._hessian_taken = False
        self._refreshed = False
        return loss

    @staticmethod
    def _update(group: dict[str, Any], b: dict[str, list[Any]], update_v: bool) -> None:
        """The moment and parameter update for one (device, dtype) bucket, in ``torch._foreach_*`` ops."""
        lr, eps, wd, k = group["lr"], group["eps"], group["weight_decay"], group["hessian_power"]
        beta1, beta2 = group["betas"]
        params, grads, ms, vs = b["p"], b["g"], b["m"], b["v"]
        if group["maximize"]:
            grads = torch._foreach_neg(grads)
        if group["weight_decay_mode"] == "l2" and wd != 0.0:
            grads = torch._foreach_add(grads, params, alpha=wd)
        torch._foreach_lerp_(ms, grads, 1.0 - beta1)
        if update_v:
            torch._foreach_mul_(vs, beta2)
            torch._foreach_addcmul_(vs, b["d"], b["d"], value=1.0 - beta2)
        if group["amsgrad"]:
            torch._foreach_maximum_(b["vmax"], vs)
            vs = b["vmax"]
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, [math.sqrt(1.0 - beta2**t) for t in b["t2"]])
        if k != 1.0:
            torch._foreach_pow_(denom, k)
        torch._foreach_add_(denom, eps)
        if group["weight_decay_mode"] == "decoupled" and wd != 0.0:
            torch._foreach_mul_(params, 1.0 - lr * wd)
        torch._foreach_addcdiv_(params, ms, denom, [-lr / (1.0 - beta1**t) for t in b["t1"]])

    def state_dict(self) -> dict[str, Any]:
        """Torch's optimizer state plus the step counter, HVP count and probe generator states."""
        sd = super().state_dict()
        sd["adahessian"] = {"step_count": self.step_count, "estimator": self.estimator.state_dict()}
        return sd

    def load_adam_state(self, adam_state: dict[str, Any]) -> None:
        """Warm start from ``torch.optim.Adam(...).state_dict()`` over the same parameters in the same order:
        take Adam's first moment and step count; ``v`` (a moment of ``D²``, not of ``g²``) starts at zero
        with its own bias correction. ``step_count`` continues from Adam's, so ``needs_hessian`` keeps the
        run's global step numbering.
        """
        if not isinstance(adam_state, dict) or not {"state", "param_groups"} <= set(adam_state):
            raise ValueError("load_adam_state: expected torch.optim.Adam(...).state_dict(), a dict with "
                             "'state' and 'param_groups'")
        mine = [p for g in self.param_groups for p in g["params"]]
        theirs = [i for g in adam_state["param_groups"] for i in g["params"]]
        if len(mine) != len(theirs):
            raise ValueError(f"load_adam_state: the Adam state covers {len(theirs)} parameters, this optimizer "
                             f"has {len(mine)}; build both over the same parameters")
        steps = [0]
        for p, index in zip(mine, theirs, strict=True):
            adam = adam_state["state"].get(index)
            if not adam:
                continue
            if adam["exp_avg"].shape != p.shape:
                raise ValueError(f"load_adam_state: Adam's exp_avg for parameter {index} has shape "
                                 f"{tuple(adam['exp_avg'].shape)}, the parameter {tuple(p.shape)}")
            step = int(adam["step"])
            state = self.state[p]
            state["step"] = step
            state["v_offset"] = step
            state["exp_avg"] = adam["exp_avg"].to(device=p.device, dtype=p.dtype, copy=True)
            state["exp_hessian_diag_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state.pop("max_exp_hessian_diag_sq", None)
            steps.append(step)
        self.step_count = max(steps)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`; a resumed run continues bitwise like the uninterrupted one."""
        sd = dict(state_dict)
        extra = sd.pop("adahessian", None)
        if extra is None:
            raise ValueError("not an AdaHessian state_dict: it has no 'adahessian' entry")
        super().load_state_dict(sd)
        for group in self.param_groups:  # checkpoints from before the Adam keywords
            group.setdefault("amsgrad", False)
            group.setdefault("maximize", False)
        self.step_count = int(extra["step_count"])
        self.estimator.load_state_dict(extra["estimator"])
        self._hessian_taken = False
        self._refreshed = False
