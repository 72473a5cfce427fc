"""Measure AdaHessian's Hessian-vector product through the Burgers PINN loss, two ways, in one process:

* double backward (what AdaHessian does): ``g = autograd.grad(loss, params, create_graph=True)``, then
  ``autograd.grad(g, params, z)``; the loss already holds u_x, u_t, u_xx, so this is a 4th-order pass;
* torch.func: ``jvp(grad(loss), (params,), (z,))`` with the residual written in torch.func (per-point ``grad``
  under ``vmap``), forward-over-reverse.

It checks that both give the same vector (float64) and prints the median seconds of each (float32, the
task's dtype), and of a plain gradient for scale. A measurement, not a test:

    python -m tasks.pinn.hvp_compare [--points 2000] [--width 32] [--depth 4] [--repeats 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import functional_call, grad, jvp, vmap

from tasks.pinn.model import mlp
from tasks.pinn.problems import make_problem
from tasks.pinn.residual import loss_terms, total
from tasks.pinn.sampling import Points, draw

NU = 0.01 / math.pi


def double_backward_hvp(model: torch.nn.Module, batch: Points, z: list[Tensor]) -> list[Tensor]:
    params = list(model.parameters())
    loss = total(loss_terms(make_problem("burgers"), model, batch), {"bc": 1.0, "ic": 1.0})
    g = torch.autograd.grad(loss, params, create_graph=True)
    return list(torch.autograd.grad(g, params, z))


def func_loss(model: torch.nn.Module, batch: Points) -> Callable[[dict[str, Tensor]], Tensor]:
    def u(params: dict[str, Tensor], xt: Tensor) -> Tensor:
        return functional_call(model, params, (xt.unsqueeze(0),)).squeeze()

    def residual(params: dict[str, Tensor], xt: Tensor) -> Tensor:
        du = grad(u, argnums=1)(params, xt)
        u_xx = grad(lambda p, q: grad(u, argnums=1)(p, q)[0], argnums=1)(params, xt)[0]
        return du[1] + u(params, xt) * du[0] - NU * u_xx

    def loss(params: dict[str, Tensor]) -> Tensor:
        pde = vmap(residual, in_dims=(None, 0))(params, batch.interior).pow(2).mean()
        bc = (functional_call(model, params, (batch.boundary,)).squeeze(-1) - batch.boundary_target).pow(2).mean()
        ic = (functional_call(model, params, (batch.initial,)).squeeze(-1) - batch.initial_target).pow(2).mean()
        return pde + bc + ic

    return loss


def func_hvp(model: torch.nn.Module, batch: Points, z: list[Tensor]) -> list[Tensor]:
    params = {k: v.detach() for k, v in model.named_parameters()}
    tangents = dict(zip(params, z, strict=True))
    return list(jvp(grad(func_loss(model, batch)), (params,), (tangents,))[1].values())


def plain_gradient(model: torch.nn.Module, batch: Points, z: list[Tensor]) -> list[Tensor]:
    loss = total(loss_terms(make_problem("burgers"), model, batch), {"bc": 1.0, "ic": 1.0})
    return list(torch.autograd.grad(loss, list(model.parameters())))


def setup(points: int, width: int, depth: int, dtype: torch.dtype) -> tuple[torch.nn.Module, Points, list[Tensor]]:
    torch.manual_seed(0)
    problem = make_problem("burgers")
    model = mlp(problem.box.lows, problem.box.highs, width, depth).to(dtype)
    batch = draw(problem, points, 100, 100, seed=0, epoch=0, device=torch.device("cpu"), dtype=dtype)
    z = [torch.randint(0, 2, p.shape, dtype=dtype) * 2 - 1 for p in model.parameters()]
    return model, batch, z


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tasks.pinn.hvp_compare", description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, batch, z = setup(256, args.width, args.depth, torch.float64)
    a, b = double_backward_hvp(model, batch, z), func_hvp(model, batch, z)
    error = max(float((x - y).abs().max() / y.abs().max().clamp_min(1e-300)) for x, y in zip(a, b, strict=True))
    print(f"max relative difference double backward vs torch.func (float64, 256 points): {error:.2e}")
    model, batch, z = setup(args.points, args.width, args.depth, torch.float32)
    variants = (("gradient", plain_gradient), ("hvp double backward", double_backward_hvp),
                ("hvp torch.func", func_hvp))
    timings = {name: median_seconds(lambda fn=fn: fn(model, batch, z), args.repeats) for name, fn in variants}
    print(f"{args.points} points, width {args.width}, depth {args.depth}, {args.threads} thread(s), "
          f"median of {args.repeats}:")
    for name, seconds in timings.items():
        print(f"  {name:20s} {seconds * 1e3:8.2f} ms  ({seconds / timings['gradient']:.2f}x gradient)")


if __name__ == "__main__":
    main()
