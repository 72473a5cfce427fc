"""Hutchinson estimator of the Hessian diagonal, shared by AdaHessian, SophiaH and OASIS.

For a probe ``z`` with ``E[z zᵀ] = I`` (Rademacher ±1 or standard Gaussian), ``E[z ⊙ Hz] = diag(H)``
(Bekas et al. 2007; AdaHessian, Yao et al. 2021, Eq. 8). ``Hz`` is one extra backward pass through the
gradient graph that ``loss.backward(create_graph=True)`` left on ``p.grad``.

The estimate is produced in two stages so that every optimizer can take what it needs:

1. :meth:`HutchinsonEstimator.raw`: the signed mean of ``z ⊙ Hz`` over ``n_samples`` probes (unbiased),
   then the ``reduce`` hook (in place). Under data parallelism the hook all-reduces it as a mean across
   ranks; each rank draws its own probes, so N ranks average N·n_samples Hutchinson samples.
2. :func:`smooth_`: ``|·|`` and AdaHessian's variance reduction (Yao et al. 2021, Eq. 10), in that order, as in
   all of the authors' code (``abs(hv * v)`` first, then the mean; for one Rademacher probe ``|z ⊙ Hz| = |Hz|``):
   - 0-D and 1-D tensors (biases, LayerNorm/BatchNorm) stay element-wise whatever ``block_size``, as in the
     authors' fairseq optimizer (``transformer/fairseq/optim/adahessian.py``: ``len(param_size) <= 1``);
   - 2-D weights ``[out, in]`` are averaged over blocks of ``block_size`` consecutive input elements of each row
     (the fairseq rule, ``abs(hv * v).view(-1, b)``, row-major; the paper's Fig. 5: "consecutive elements along
     the rows"). Eq. 10 assumes the size is divisible by b. When ``in`` is not a multiple of ``block_size`` the
     authors' flat view would let blocks run across rows (and fails unless ``numel`` is a multiple); here every
     row keeps its own blocks and a shorter final one (our WikiText-103 width 410 with b 4 is such a case);
   - a pointwise conv weight ``[out, in, 1]`` (``1, 1`` / ``1, 1, 1``; SqueezeBERT's 1x1 Conv1d) is a Linear
     over channels and gets the 2-D rule on its ``[out, in]`` view, exactly as the equivalent Linear weight (the
     authors' ``instruction/adahessian.py`` with a 3-D block size gives the same);
   - other conv weights (3-, 4-, 5-D, ``spatial_average``) get one value per kernel: the mean over their spatial
     dims, as ``image_classification/optim_adahessian.py`` does for 4-D kernels (``mean(dim=[2, 3])``);
   - any other tensor of 2+ dims is averaged over blocks of its last dim.

Probes come from a ``torch.Generator`` per device that the estimator owns and seeds itself, and whose
state is part of :meth:`HutchinsonEstimator.state_dict`: same seed, same probes; a resumed run draws the
probes the uninterrupted one would have drawn.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

Probe = Literal["rademacher", "gaussian"]
ReduceFn = Callable[[list[Tensor]], None]
# (params, probes, more probes follow) -> Hz per parameter
HvpFn = Callable[[list[Tensor], list[Tensor], bool], Sequence[Tensor]]

PROBES: tuple[str, ...] = ("rademacher", "gaussian")

NO_GRAPH_MESSAGE = (
    "the gradients carry no autograd graph, so no Hessian-vector product can be taken: "
    "call loss.backward(create_graph=True) on steps where needs_hessian(step) is True "
    "(and do not modify or clip p.grad before the Hessian estimate is taken)"
)

# Spatial dims of conv1d / conv2d / conv3d weights (out, in/groups, *kernel).
_SPATIAL_DIMS: dict[int, tuple[int, ...]] = {3: (2,), 4: (2, 3), 5: (2, 3, 4)}


def draw_seed() -> int:
    """A seed drawn from torch's global RNG, so ``torch.manual_seed`` upstream fixes the probes."""
    return int(torch.randint(0, 2**62, ()).item())


def _spatial_mean_(t: Tensor) -> None:
    t.copy_(t.mean(dim=_SPATIAL_DIMS[t.dim()], keepdim=True).expand_as(t))


def _block_mean_(t: Tensor, block_size: int) -> None:
    """Mean over blocks of ``block_size`` consecutive elements of the last dim; a shorter final block
    when the last dim is not a multiple of ``block_size``."""
    n = t.shape[-1]
    full = n - n % block_size
    if full:
        head = t[..., :full].unflatten(-1, (full // block_size, block_size))
        head.copy_(head.mean(dim=-1, keepdim=True).expand_as(head))
    if full < n:
        tail = t[..., full:]
        tail.copy_(tail.mean(dim=-1, keepdim=True).expand_as(tail))


def _is_pointwise_conv(t: Tensor) -> bool:
    """A conv weight whose kernel is one position (``[out, in, 1]``, ``[out, in, 1, 1]``, ...)."""
    return t.dim() in _SPATIAL_DIMS and all(s == 1 for s in t.shape[2:])


def smooth_(tensors: Sequence[Tensor], *, spatial_average: bool = True, block_size: int = 1) -> None:
    """In place: ``|·|``, then the authors' averaging rule by tensor kind (module docstring): 0-/1-D stay
    element-wise; 2-D weights and pointwise conv weights (as their ``[out, in]`` view) are block-averaged along
    the input dim when ``block_size > 1``; other 3-/4-/5-D tensors get one value per conv kernel when
    ``spatial_average`` is True, else blocks along their last dim.
    """
    if not tensors:
        return
    torch._foreach_abs_(list(tensors))
    for t in tensors:
        if t.dim() <= 1:
            continue
        if _is_pointwise_conv(t):
            if block_size > 1:
                # Dropping size-1 dims is always a view, so the in-place mean writes through to t.
                _block_mean_(t.view(t.shape[0], t.shape[1]), block_size)
        elif spatial_average and t.dim() in _SPATIAL_DIMS:
            _spatial_mean_(t)
        elif block_size > 1:
            _block_mean_(t, block_size)


class HutchinsonEstimator:
    """Diagonal-Hessian estimates from Hessian-vector products through ``p.grad``'s graph.

    Args:
        n_samples: probes averaged per estimate (each costs one Hessian-vector product).
        probe: ``"rademacher"`` (±1, the lower-variance default) or ``"gaussian"``.
        spatial_average: :func:`smooth_` averages conv kernels over their spatial dims.
        block_size: :func:`smooth_` block size along the input dim of 2-D and pointwise conv weights
            (1 = no block averaging; 1-D tensors are never block-averaged).
        seed: seed of the probe generators; ``None`` draws one from torch's global RNG.
        reduce: called in place on the raw estimate (e.g. an all-reduce mean across ranks).
            May also be set later through the ``reduce`` attribute.
    """

    def __init__(
        self,
        n_samples: int = 1,
        probe: Probe = "rademacher",
        spatial_average: bool = True,
        block_size: int = 1,
        seed: int | None = None,
        reduce: ReduceFn | None = None,
    ) -> None:
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}")
        if probe not in PROBES:
            raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be an int >= 1 (1 = no block averaging), got {block_size!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        if reduce is not None and not callable(reduce):
            raise ValueError(f"reduce must be a callable taking a list of tensors, got {reduce!r}")
        self.n_samples = n_samples
        self.probe = probe
        self.spatial_average = spatial_average
        self.block_size = block_size
        self.reduce = reduce
        self.seed = draw_seed() if seed is None else int(seed)
        self.hvp_count = 0
        self._generators: dict[str, torch.Generator] = {}
        # Generator states loaded from a checkpoint, applied when that device's generator is first used.
        self._pending_states: dict[str, Tensor] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        gen = self._generators.get(key)
        if gen is None:
            gen = torch.Generator(device=device)
            gen.manual_seed(self.seed)
            pending = self._pending_states.pop(key, None)
            if pending is not None:
                gen.set_state(pending.cpu())
            self._generators[key] = gen
        return gen

    def probes(self, params: Sequence[Tensor]) -> list[Tensor]:
        """One probe per parameter, drawn as one flat tensor per (device, dtype) and split into views,
        so drawing costs a few kernel launches however many parameters there are."""
        buckets: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for i, p in enumerate(params):
            buckets.setdefault((p.device, p.dtype), []).append(i)
        views: dict[int, Tensor] = {}
        for (device, dtype), idx in buckets.items():
            gen = self._generator(device)
            total = sum(params[i].numel() for i in idx)
            if self.probe == "rademacher":
                flat = torch.randint(0, 2, (total,), generator=gen, device=device, dtype=dtype)
                flat.mul_(2).sub_(1)
            else:
                flat = torch.randn((total,), generator=gen, device=device, dtype=dtype)
            sizes = [params[i].numel() for i in idx]
            for i, chunk in zip(idx, flat.split(sizes), strict=True):
                views[i] = chunk.view_as(params[i])
        return [views[i] for i in range(len(params))]

    def raw(self, params: Sequence[Tensor], grads: Sequence[Tensor]) -> list[Tensor]:
        """Signed mean over ``n_samples`` probes of ``z ⊙ Hz``, after the ``reduce`` hook.

        ``grads[i]`` is the gradient of the loss w.r.t. ``params[i]`` carrying its autograd graph
        (``loss.backward(create_graph=True)``). Gradients without a graph are constant in the
        parameters, so they add nothing to ``Hz``; if none has a graph a RuntimeError is raised.
        The graph is kept only while more samples remain, then freed by the last backward pass.
        """
        params, grads = list(params), list(grads)
        with_graph = [i for i, g in enumerate(grads) if g.grad_fn is not None]
        if not with_graph:
            raise RuntimeError(NO_GRAPH_MESSAGE)
        outputs = [grads[i] for i in with_graph]

        def double_backward(ps: list[Tensor], zs: list[Tensor], more: bool) -> Sequence[Tensor]:
            return torch.autograd.grad(outputs, ps, grad_outputs=[zs[i] for i in with_graph], retain_graph=more,
                                       allow_unused=True, materialize_grads=True)

        return self.raw_from_hvp(params, double_backward)

    def raw_from_hvp(self, params: Sequence[Tensor], hvp: HvpFn) -> list[Tensor]:
        """:meth:`raw` with the Hessian-vector products taken by ``hvp(params, probes, more)``, which returns
        ``Hz`` per parameter (``more``: further probes follow, so keep what they need). This lets a caller
        that owns the model and the loss take ``Hz`` its own way (forward-over-reverse, a sub-batch) with
        this estimator's probes, sample count, ``reduce`` hook and HVP count."""
        params = list(params)
        est: list[Tensor] = []
        for s in range(self.n_samples):
            zs = self.probes(params)
            hzs = list(hvp(params, zs, s + 1 < self.n_samples))
            # Out of place first: autograd may hand back a probe itself (identity/view backward).
            if s == 0:
                est = torch._foreach_mul(hzs, zs)
            else:
                torch._foreach_addcmul_(est, hzs, zs)
        if self.n_samples > 1:
            torch._foreach_div_(est, float(self.n_samples))
        self.hvp_count += self.n_samples
        if self.reduce is not None:
            self.reduce(est)
        return est

    def estimate(self, params: Sequence[Tensor], grads: Sequence[Tensor]) -> list[Tensor]:
        """AdaHessian's ``D``: :meth:`raw` followed by :func:`smooth_` with this estimator's settings."""
        est = self.raw(params, grads)
        smooth_(est, spatial_average=self.spatial_average, block_size=self.block_size)
        return est

    def state_dict(self) -> dict[str, Any]:
        """Seed, HVP count and every generator's state (loaded-but-unused states included)."""
        states = {k: v.clone() for k, v in self._pending_states.items()}
        states.update({k: g.get_state() for k, g in self._generators.items()})
        return {"seed": self.seed, "hvp_count": self.hvp_count, "generator_states": states}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore seed, HVP count and generator states; a generator is rebuilt lazily on its device."""
        self.seed = int(state["seed"])
        self.hvp_count = int(state["hvp_count"])
        self._generators = {}
        self._pending_states = {k: v.detach().cpu().clone() for k, v in state["generator_states"].items()}


class EstimatorHooks:
    """The runner-facing hooks of an optimizer that owns a :class:`HutchinsonEstimator` as ``self.estimator``:
    its HVP count (the record's ``cost.hvp_count``) and its distributed reduction (``hessian_reduce``)."""

    estimator: HutchinsonEstimator

    @property
    def hvp_count(self) -> int:
        """Hessian-vector products computed so far (n_samples per refresh), for the cost record."""
        return self.estimator.hvp_count

    @property
    def hessian_reduce(self) -> ReduceFn | None:
        """In-place hook on the raw estimate (e.g. all-reduce mean across ranks); None = no-op."""
        return self.estimator.reduce

    @hessian_reduce.setter
    def hessian_reduce(self, fn: ReduceFn | None) -> None:
        if fn is not None and not callable(fn):
            raise ValueError(f"hessian_reduce must be a callable taking a list of tensors, got {fn!r}")
        self.estimator.reduce = fn
