"""Tiny data sets in the exact on-disk formats the tasks read, written by the tests themselves."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

LABEL_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def digits_as_cifar_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's real 8x8 digits, upsampled 4x to 32x32 and repeated over 3 channels (uint8, N x 3072)."""
    digits = load_digits()
    images = np.kron(digits.images / 16.0 * 255.0, np.ones((4, 4))).astype(np.uint8)  # N x 32 x 32
    rgb = np.repeat(images[:, None], 3, axis=1)  # N x 3 x 32 x 32, CIFAR's channel-major row order
    return rgb.reshape(len(rgb), 3072), digits.target.astype(np.int64)


def write_batch(path: Path, data: np.ndarray, labels: np.ndarray, name: str) -> None:
    """One batch file exactly as the CIFAR-10 python release pickles it (bytes keys, list labels)."""
    batch = {b"batch_label": name.encode(), b"labels": [int(y) for y in labels], b"data": data,
             b"filenames": [f"{name}_{i}.png".encode() for i in range(len(labels))]}
    with path.open("wb") as f:
        pickle.dump(batch, f, protocol=2)


def write_cifar10(root: Path, n_train_per_batch: int = 40, n_test: int = 100, seed: int = 0) -> Path:
    """Write root/cifar-10-batches-py/ with 5 train batches, a test batch and batches.meta; return root."""
    data, labels = digits_as_cifar_images()
    order = np.random.default_rng(seed).permutation(len(labels))
    needed = 5 * n_train_per_batch + n_test
    if needed > len(order):
        raise ValueError(f"at most {len(order)} images available, {needed} asked for")
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(5):
        idx = order[i * n_train_per_batch:(i + 1) * n_train_per_batch]
        write_batch(folder / f"data_batch_{i + 1}", data[idx], labels[idx], f"training batch {i + 1} of 5")
    test_idx = order[5 * n_train_per_batch:needed]
    write_batch(folder / "test_batch", data[test_idx], labels[test_idx], "testing batch 1 of 1")
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({b"label_names": LABEL_NAMES, b"num_cases_per_batch": n_train_per_batch, b"num_vis": 3072}, f)
    return root


def main(argv: list[str]) -> int:
    """`python -m tests.fixtures cifar10 DIR [TRAIN_PER_BATCH TEST]`: write the fixture for `make ci`."""
    if len(argv) not in (2, 4) or argv[0] != "cifar10":
        print("usage: python -m tests.fixtures cifar10 DIR [TRAIN_PER_BATCH TEST]", file=sys.stderr)
        return 2
    sizes = [int(v) for v in argv[2:]] or [100, 200]
    print(write_cifar10(Path(argv[1]), *sizes) / "cifar-10-batches-py")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
