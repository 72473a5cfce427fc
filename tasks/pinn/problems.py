"""The PDE problems: domain, parameters, conditions and a reference solution each, with its source.

Every problem's reference is exact or computed to quadrature accuracy by the project itself, so rel-L2 is
measured against the true solution and not against another network:

* ``burgers``: u_t + u·u_x = ν·u_xx on x ∈ [−1, 1], t ∈ [0, 1], u(x, 0) = −sin(πx), u(±1, t) = 0, ν = 0.01/π
  (Raissi, Perdikaris, Karniadakis, J. Comput. Phys. 378, 2019, Sec. 3.1). Reference: the exact Cole–Hopf
  solution (Basdevant et al., Computers & Fluids 14, 1986, Eq. 3), whose two integrals are evaluated by
  Gauss–Hermite quadrature after the substitution η = √(4νt)·z, as in Basdevant et al.; on Raissi's grid
  (256 x × 100 t) and cached.
* ``poisson``: −Δu = f on [0, 1]², f = 2k²π²·sin(kπx)·sin(kπy), so u = sin(kπx)·sin(kπy) (a manufactured
  solution; Dirichlet values from it). k = 1 by default.
* ``convection``: u_t + β·u_x = 0 on x ∈ [0, 2π], t ∈ [0, 1], u(x, 0) = sin x, periodic in x; u = sin(x − βt)
  (Krishnapriyan et al., NeurIPS 2021, Sec. 3.1; β = 30 is their failure case, Rathore et al., ICML 2024,
  use β = 40).

Off the standard domain, Dirichlet and initial values come from the same reference solution.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tasks.base import DataError

# Gauss-Hermite nodes: 100 and 200 agree to 3e-15 on Raissi's grid; numpy's hermgauss overflows past ~350.
BURGERS_NODES = 200


@dataclass(frozen=True)
class Box:
    """The domain: one [low, high] interval per input variable, in the model's input order."""

    names: tuple[str, ...]
    lows: tuple[float, ...]
    highs: tuple[float, ...]

    def interval(self, name: str) -> tuple[float, float]:
        i = self.names.index(name)
        return self.lows[i], self.highs[i]


class Problem(ABC):
    """A PDE with its conditions and reference solution; the residual lives in `tasks.pinn.residual`."""

    name: str
    variables: tuple[str, ...]
    default_domain: ClassVar[dict[str, tuple[float, float]]]
    default_params: ClassVar[dict[str, float]]
    grid: tuple[int, ...]  # reference grid points per variable
    periodic: tuple[str, ...] = ()  # variables with periodic boundaries (paired points, no target values)

    def __init__(self, params: dict[str, Any] | None, domain: dict[str, Any] | None) -> None:
        self.params = self._params(dict(params or {}))
        self.box = self._box(dict(domain or {}))
        self.check()

    @property
    def time_dependent(self) -> bool:
        return "t" in self.variables

    @property
    def spatial(self) -> tuple[str, ...]:
        return tuple(v for v in self.variables if v != "t")

    def _params(self, given: dict[str, Any]) -> dict[str, float]:
        unknown = sorted(set(given) - set(self.default_params))
        if unknown:
            raise DataError(f"task.params.{unknown[0]}: {self.name} has no parameter {unknown[0]!r}; its parameters "
                            f"are {', '.join(self.default_params) or 'none'}")
        out = dict(self.default_params)
        for key, value in given.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise DataError(f"task.params.{key}={value}: expected a finite number")
            out[key] = float(value)
        return out

    def _box(self, given: dict[str, Any]) -> Box:
        unknown = sorted(set(given) - set(self.variables))
        if unknown:
            raise DataError(f"task.domain.{unknown[0]}: {self.name} has no variable {unknown[0]!r}; its variables "
                            f"are {', '.join(self.variables)}")
        lows, highs = [], []
        for name in self.variables:
            interval = given.get(name, self.default_domain[name])
            try:
                low, high = (float(v) for v in interval)
            except (TypeError, ValueError):
                raise DataError(f"task.domain.{name}={interval}: expected [low, high], two numbers") from None
            if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
                raise DataError(f"task.domain.{name}=[{low}, {high}]: the interval has zero or negative width; "
                                f"give [low, high] with high > low, e.g. {list(self.default_domain[name])}")
            lows.append(low)
            highs.append(high)
        return Box(self.variables, tuple(lows), tuple(highs))

    @abstractmethod
    def check(self) -> None:
        """Problem-specific constraints on parameters and domain (a DataError when violated)."""

    def reference_points(self) -> np.ndarray:
        """The evaluation grid, (N, d) float64, variables in model input order (the first varies slowest)."""
        axes = [np.linspace(lo, hi, n) for lo, hi, n in zip(self.box.lows, self.box.highs, self.grid, strict=True)]
        return np.stack([a.ravel() for a in np.meshgrid(*axes, indexing="ij")], axis=1)

    def reference(self, cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
        """Grid points and reference values; problems whose reference is costly cache it under `cache_dir`."""
        points = self.reference_points()
        return points, self.solution(points)

    @abstractmethod
    def solution(self, points: np.ndarray) -> np.ndarray:
        """The exact (or quadrature-exact) solution at (N, d) float64 points."""

    def source(self, points: np.ndarray) -> np.ndarray:
        """The PDE's right-hand side f at the points (zero unless a problem says otherwise)."""
        return np.zeros(len(points))


class Burgers(Problem):
    name = "burgers"
    variables = ("x", "t")
    default_domain: ClassVar[dict[str, tuple[float, float]]] = {"x": (-1.0, 1.0), "t": (0.0, 1.0)}
    default_params: ClassVar[dict[str, float]] = {"nu": 0.01 / math.pi}
    grid = (256, 100)

    def check(self) -> None:
        if self.params["nu"] <= 0:
            raise DataError(f"task.params.nu={self.params['nu']}: the viscosity must be > 0; Raissi et al. use "
                            "0.01/pi = 0.0031831")
        if self.box.interval("t")[0] < 0:
            raise DataError(f"task.domain.t={list(self.box.interval('t'))}: the Cole-Hopf reference starts at "
                            "t = 0; give t >= 0")

    def reference_points(self) -> np.ndarray:
        # Raissi's burgers_shock.mat grid: 256 x in [-1, 1] and 100 t = 0, 0.01, ..., 0.99.
        lo_t, hi_t = self.box.interval("t")
        x = np.linspace(*self.box.interval("x"), self.grid[0])
        t = lo_t + (hi_t - lo_t) * np.arange(self.grid[1]) / self.grid[1]
        xx, tt = np.meshgrid(x, t, indexing="ij")
        return np.stack([xx.ravel(), tt.ravel()], axis=1)

    def solution(self, points: np.ndarray) -> np.ndarray:
        return cole_hopf(points[:, 0], points[:, 1], self.params["nu"])

    def reference(self, cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
        points = self.reference_points()
        key = {"problem": self.name, "params": self.params, "lows": self.box.lows, "highs": self.box.highs,
               "grid": self.grid, "nodes": BURGERS_NODES, "version": 1}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        path = Path(cache_dir).expanduser() / f"burgers_cole_hopf_{digest}.npy"
        if path.exists():
            values = np.load(path)
            if values.shape == (len(points),):
                return points, values
        values = self.solution(points)
        save_atomic(path, values)
        return points, values


def cole_hopf(x: np.ndarray, t: np.ndarray, nu: float, nodes: int = BURGERS_NODES) -> np.ndarray:
    """Viscous Burgers with u(x, 0) = −sin(πx), exactly (Cole–Hopf), by Gauss–Hermite quadrature:

        u = −∫ sin(π(x−η)) f(x−η) e^{−η²/4νt} dη / ∫ f(x−η) e^{−η²/4νt} dη,  f(y) = exp(−cos(πy)/(2πν)),

    with η = √(4νt)·z. The exponents reach 1/(2πν) ≈ 50, so both sums are scaled by their largest term.
    """
    x, t = np.asarray(x, dtype=np.float64), np.asarray(t, dtype=np.float64)
    z, w = np.polynomial.hermite.hermgauss(nodes)
    y = x[:, None] - np.sqrt(4.0 * nu * t)[:, None] * z[None, :]
    exponent = -np.cos(np.pi * y) / (2.0 * np.pi * nu)
    weight = w[None, :] * np.exp(exponent - exponent.max(axis=1, keepdims=True))
    u = -(weight * np.sin(np.pi * y)).sum(axis=1) / weight.sum(axis=1)
    return np.where(t == 0.0, -np.sin(np.pi * x), u)


class Poisson(Problem):
    name = "poisson"
    variables = ("x", "y")
    default_domain: ClassVar[dict[str, tuple[float, float]]] = {"x": (0.0, 1.0), "y": (0.0, 1.0)}
    default_params: ClassVar[dict[str, float]] = {"k": 1.0}
    grid = (101, 101)

    def check(self) -> None:
        if self.params["k"] <= 0:
            raise DataError(f"task.params.k={self.params['k']}: the frequency must be > 0, e.g. 1")

    def solution(self, points: np.ndarray) -> np.ndarray:
        k = self.params["k"]
        return np.sin(k * np.pi * points[:, 0]) * np.sin(k * np.pi * points[:, 1])

    def source(self, points: np.ndarray) -> np.ndarray:
        return 2.0 * (self.params["k"] * np.pi) ** 2 * self.solution(points)


class Convection(Problem):
    name = "convection"
    variables = ("x", "t")
    default_domain: ClassVar[dict[str, tuple[float, float]]] = {"x": (0.0, 2.0 * math.pi), "t": (0.0, 1.0)}
    default_params: ClassVar[dict[str, float]] = {"beta": 30.0}
    grid = (256, 100)
    periodic = ("x",)

    def check(self) -> None:
        width = self.box.highs[0] - self.box.lows[0]
        periods = width / (2.0 * math.pi)
        if abs(periods - round(periods)) > 1e-9:
            raise DataError(f"task.domain.x=[{self.box.lows[0]}, {self.box.highs[0]}]: the periodic boundary of "
                            "convection needs a width that is a multiple of 2*pi, e.g. [0, 6.283185307179586]")

    def reference_points(self) -> np.ndarray:
        # Krishnapriyan et al.'s rel-L2 grid (pbc_examples/main_pbc.py): 256 x in [0, 2 pi) without its end, which
        # is x = 0 again on a periodic domain, times 100 t in [0, 1] with both ends.
        x = np.linspace(*self.box.interval("x"), self.grid[0], endpoint=False)
        t = np.linspace(*self.box.interval("t"), self.grid[1])
        xx, tt = np.meshgrid(x, t, indexing="ij")
        return np.stack([xx.ravel(), tt.ravel()], axis=1)

    def solution(self, points: np.ndarray) -> np.ndarray:
        return np.sin(points[:, 0] - self.params["beta"] * points[:, 1])


PROBLEMS: dict[str, type[Problem]] = {cls.name: cls for cls in (Burgers, Poisson, Convection)}


def make_problem(name: str, params: dict[str, Any] | None = None, domain: dict[str, Any] | None = None) -> Problem:
    if name not in PROBLEMS:
        raise DataError(f"task.problem={name}: unknown; choose one of {', '.join(PROBLEMS)}")
    return PROBLEMS[name](params, domain)


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "adahessian-bench" / "pinn"


def save_atomic(path: Path, values: np.ndarray) -> None:
    """Write to a temporary file beside `path`, then rename, so a reader never sees half a cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, values)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
