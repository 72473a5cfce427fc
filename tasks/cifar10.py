"""CIFAR-10 from the python-pickle release (torchvision's `cifar-10-batches-py/`), augmented on device."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tasks.base import DataError
from tasks.resnet_cifar import CifarResNet
from tasks.tensor_data import TensorClassificationTask

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
LAYOUT = (f"expected DATA_DIR/{FOLDER}/ with {', '.join(TRAIN_FILES)}, {TEST_FILE} and {META_FILE} "
          "(the python version from https://www.cs.toronto.edu/~kriz/cifar.html, as torchvision unpacks it)")
# Normalisation constants of the authors' image_classification/main.py.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)


def find_batches_dir(data_dir: str | Path) -> Path:
    """Accept DATA_DIR (torchvision's root) or the cifar-10-batches-py folder itself."""
    root = Path(data_dir).expanduser()
    for candidate in (root / FOLDER, root):
        if (candidate / META_FILE).exists() or (candidate / TEST_FILE).exists():
            return candidate
    raise DataError(f"task.data_dir={root}: no CIFAR-10 data there; {LAYOUT}")


def read_pickle(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: file missing; {LAYOUT}")
    try:
        with path.open("rb") as f:
            return pickle.load(f, encoding="bytes")
    except Exception as exc:
        raise DataError(f"{path}: not a CIFAR-10 python pickle ({type(exc).__name__}); {LAYOUT}") from None


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch as (N, 3, 32, 32) uint8 images and int64 labels."""
    batch = read_pickle(path)
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (KeyError, ValueError, TypeError):
        raise DataError(f"{path}: expected keys b'data' (N x 3072 uint8) and b'labels'; {LAYOUT}") from None
    if len(data) != len(labels) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels in 0..9; {LAYOUT}")
    return data, labels


def load_cifar10(data_dir: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    folder = find_batches_dir(data_dir)
    meta = read_pickle(folder / META_FILE)
    if b"label_names" not in meta or len(meta[b"label_names"]) != 10:
        raise DataError(f"{folder / META_FILE}: expected 10 b'label_names'; {LAYOUT}")
    parts = [read_batch(folder / name) for name in TRAIN_FILES]
    test_x, test_y = read_batch(folder / TEST_FILE)
    return (np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]), test_x, test_y)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Zero-pad by `pad`, crop back to size at a random offset, flip half: the whole batch at once."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    channels = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    cropped = padded[torch.arange(n, device=x.device)[:, None, None, None], channels, rows, cols]
    flip = torch.rand(n, generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], cropped.flip(3), cropped)


def random_cifar_like(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random images of CIFAR-10's shape and dtype, for step-time measurement where pixels do not matter."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, n)
    return images, labels, images[: max(1, n // 10)], labels[: max(1, n // 10)]


class Cifar10Task(TensorClassificationTask):
    """CIFAR-10 kept as uint8 on the device; normalised and augmented per batch.

    `synthetic > 0` ignores `data_dir` and uses that many random images: for `bench perf` timings
    only, never for accuracy.
    """

    def __init__(self, data_dir: str, depth: int = 20, augment: bool = True, synthetic: int = 0,
                 **runtime: Any) -> None:
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"task.depth={depth}: a CIFAR ResNet has depth 6n+2 (20, 32, 44, 56, 110)")
        arrays = random_cifar_like(synthetic) if synthetic > 0 else load_cifar10(data_dir)
        train_x, train_y, test_x, test_y = (torch.from_numpy(a) for a in arrays)
        super().__init__(train_x, train_y, test_x, test_y, **runtime)
        self.depth = depth
        self.augment = augment
        self.mean = torch.tensor(MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(STD, device=self.device).view(1, 3, 1, 1)

    def prepare(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        x = (x.float() / 255.0 - self.mean) / self.std
        return random_crop_flip(x, generator) if self.augment and generator is not None else x

    def build_model(self) -> nn.Module:
        return CifarResNet(self.depth)
