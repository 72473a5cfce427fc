"""The CIFAR-10 loader on a fixture in the exact python-pickle format, and its errors."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
import torch

from tasks.base import DataError
from tasks.cifar10 import Cifar10Task, load_cifar10, random_crop_flip
from tasks.resnet_cifar import CifarResNet


def test_loader_reads_the_pickle_layout(cifar_dir: Path) -> None:
    train_x, train_y, test_x, test_y = load_cifar10(cifar_dir)
    assert train_x.shape == (200, 3, 32, 32) and train_x.dtype.name == "uint8"
    assert test_x.shape == (100, 3, 32, 32)
    assert set(train_y.tolist()) <= set(range(10)) and len(test_y) == 100
    # Accept the batches folder itself as well as its parent (torchvision's root).
    assert load_cifar10(cifar_dir / "cifar-10-batches-py")[0].shape == train_x.shape


def test_missing_and_malformed_files_name_the_path(cifar_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(cifar_dir, broken)
    (broken / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3: file missing"):
        load_cifar10(broken)
    (broken / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3: not a CIFAR-10 python pickle"):
        load_cifar10(broken)
    with (broken / "cifar-10-batches-py" / "data_batch_3").open("wb") as f:
        pickle.dump({b"data": [1, 2, 3]}, f)
    with pytest.raises(DataError, match="expected keys"):
        load_cifar10(broken)
    with pytest.raises(DataError, match="no CIFAR-10 data there"):
        load_cifar10(tmp_path / "nowhere")


def test_batches_depend_only_on_seed_and_epoch(cifar_dir: Path) -> None:
    runtime = dict(device=torch.device("cpu"), batch_size=32, eval_batch_size=64, seed=3)
    a, b = Cifar10Task(str(cifar_dir), **runtime), Cifar10Task(str(cifar_dir), **runtime)
    assert a.steps_per_epoch() == 200 // 32
    first = [x for x, _ in a.train_batches(1)]
    again = [x for x, _ in b.train_batches(1)]
    assert all(torch.equal(u, v) for u, v in zip(first, again, strict=True))
    assert not torch.equal(first[0], next(iter(a.train_batches(2)))[0])


def test_augmentation_is_a_shifted_crop_or_its_mirror() -> None:
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32)
    out = random_crop_flip(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for n in range(2):
        windows = [padded[n, :, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(out[n], w) or torch.equal(out[n], w.flip(2)) for w in windows)


@pytest.mark.parametrize(("depth", "params"), [(20, 272_474), (32, 466_906)])
def test_cifar_resnets_have_the_papers_size(depth: int, params: int) -> None:
    model = CifarResNet(depth)
    assert sum(p.numel() for p in model.parameters()) == params
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
