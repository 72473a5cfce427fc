"""Run state as plain data, the only kind `torch.load(weights_only=True)` reads back: tensors, numbers, strings,
None, dtypes, devices, sizes, and lists, tuples and dicts of them. A checkpoint made of these loads
without running code from the file, whoever wrote it.

What a run's state holds that is not plain is tagged on save and rebuilt on load: NumPy arrays and scalars
(NumPy's RNG state; metrics that scipy or sklearn return as np.float64), as their dtype string and their raw bytes
in a uint8 tensor, so they come back bit for bit and with their type. Anything else is refused on save with the
path to the value, so a state that could not be resumed exactly is never written; on load, an unknown tag is
refused.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch

TAG = "__bench_type__"
# Classes whose instances optimizer state may hold (module.qualname). Loading one imports only its module.
SCALARS = (int, float, bool, str, type(None))  # not bytes: torch.save pickles them through a global
KEPT = (torch.Tensor, torch.nn.Parameter, torch.Size, torch.dtype, torch.device)


def class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def plain_key(key: Any) -> bool:
    """A dict key a weights-only load rebuilds as it was: a scalar, a device or dtype, or a tuple of these."""
    if type(key) is tuple:
        return all(plain_key(k) for k in key)
    return type(key) in SCALARS or type(key) in (torch.device, torch.dtype)


def to_plain(value: Any, where: str = "state") -> Any:
    """`value` with every non-plain part tagged; TypeError naming the path of a part that cannot be stored."""
    kind = type(value)
    if kind in SCALARS or kind in KEPT:
        return value
    if kind in (dict, OrderedDict):
        if TAG in value:
            raise TypeError(f"{where}: a dict with the key {TAG!r}, which checkpoints reserve")
        for key in value:
            if not plain_key(key):
                raise TypeError(f"{where}: a dict key of type {class_name(type(key))}; use str or int keys")
        plain = kind((k, to_plain(v, f"{where}.{k}")) for k, v in value.items())
        if kind is OrderedDict:  # a module state_dict's `_metadata` (module versions, used by load_state_dict)
            plain.__dict__.update(to_plain(vars(value), f"{where}.<attributes>"))
        return plain
    if kind in (list, tuple):
        return kind(to_plain(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, np.ndarray | np.generic) and not value.dtype.hasobject:
        return {TAG: "ndarray" if isinstance(value, np.ndarray) else "numpy_scalar", "dtype": value.dtype.str,
                "shape": list(np.shape(value)),
                "data": torch.from_numpy(np.frombuffer(value.tobytes(), dtype=np.uint8).copy())}
    raise TypeError(f"{where} is a {class_name(kind)}, which a weights-only checkpoint cannot hold; store it as "
                    "tensors, numbers and strings in the optimizer's state_dict")


def from_plain(value: Any) -> Any:
    """Inverse of `to_plain`; ValueError for a tag it would not write."""
    kind = type(value)
    if kind in (list, tuple):
        return kind(from_plain(v) for v in value)
    if kind not in (dict, OrderedDict):
        return value
    if TAG not in value:
        rebuilt = kind((k, from_plain(v)) for k, v in value.items())
        if kind is OrderedDict:
            rebuilt.__dict__.update(from_plain(vars(value)))
        return rebuilt
    tag = value[TAG]
    if tag in ("ndarray", "numpy_scalar"):
        dtype = np.dtype(value["dtype"])
        if dtype.hasobject:
            raise ValueError(f"it holds a NumPy array of Python objects ({dtype})")
        array = np.frombuffer(value["data"].numpy().tobytes(), dtype=dtype).reshape(value["shape"]).copy()
        return array if tag == "ndarray" else array[()]
    raise ValueError(f"it holds an unknown {TAG} tag {tag!r}")
