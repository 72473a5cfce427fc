"""The ImageNet pipelines: order and augmentation from (seed, epoch, rank, index) only, exact mid-epoch starts,
rank sharding, the torchvision transforms' geometry, and DALI agreeing with the DataLoader."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from tasks.imagenet import ImageNetTask
from tasks.imagenet.loader import RATIO, SCALE, SplitBatchSampler, draw_augmentation, val_resize
from tests.imagenet_fixture import write_imagenet

RUNTIME = dict(device=torch.device("cpu"), batch_size=8, eval_batch_size=12, seed=0)
SIZE = 24


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_imagenet(tmp_path_factory.mktemp("imagenet")).root


def batches(task: ImageNetTask, epoch: int, start: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(task.train_batches(epoch, start))


def same(a: list[tuple[torch.Tensor, torch.Tensor]], b: list[tuple[torch.Tensor, torch.Tensor]]) -> bool:
    pairs = zip(a, b, strict=True) if len(a) == len(b) else []
    return len(a) == len(b) and all(torch.equal(x, u) and torch.equal(y, v) for (x, y), (u, v) in pairs)


def test_batches_depend_only_on_seed_and_epoch_and_start_skips_exactly(imagenet: Path) -> None:
    task = ImageNetTask(str(imagenet), image_size=SIZE, workers=0, **RUNTIME)
    epoch1 = batches(task, 1)
    assert task.steps_per_epoch() == 48 // 8 == len(epoch1)
    x, y = epoch1[0]
    assert x.shape == (8, 3, SIZE, SIZE) and x.dtype == torch.float32 and y.dtype == torch.long
    assert same(epoch1, batches(ImageNetTask(str(imagenet), image_size=SIZE, workers=1, **RUNTIME), 1))
    assert same(epoch1[4:], batches(task, 1, start=4))
    assert not torch.equal(epoch1[0][0], batches(task, 2)[0][0])
    other_seed = ImageNetTask(str(imagenet), image_size=SIZE, workers=0, **{**RUNTIME, "seed": 1})
    assert not torch.equal(epoch1[0][0], batches(other_seed, 1)[0][0])


def test_ranks_split_each_global_batch(imagenet: Path) -> None:
    whole = SplitBatchSampler(48, 12, 8, 12, seed=3)
    ranks = [SplitBatchSampler(48, 12, 8, 12, seed=3, rank=r, world_size=2) for r in range(2)]
    for full, first, second in zip(whole.batches(5), ranks[0].batches(5), ranks[1].batches(5), strict=True):
        assert first + second == full and len(first) == 4
    task = ImageNetTask(str(imagenet), image_size=SIZE, workers=0, **{**RUNTIME, "rank": 1, "world_size": 2})
    assert [len(y) for _, y in task.train_batches(0)] == [4] * 6


def test_val_is_resize_and_center_crop_in_folder_order(imagenet: Path) -> None:
    task = ImageNetTask(str(imagenet), image_size=SIZE, workers=0, **RUNTIME)
    (x, y), = list(task.val_batches())
    assert x.shape == (12, 3, SIZE, SIZE)
    assert y.tolist() == [label for _, label in task.index.val] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert val_resize(224) == 256


def test_crop_draws_follow_random_resized_crop() -> None:
    for index in range(300):
        aug = draw_augmentation(64, 48, seed=0, epoch=0, index=index)
        assert aug.top >= 0 and aug.left >= 0 and aug.top + aug.height <= 48 and aug.left + aug.width <= 64
        assert SCALE[0] * 0.9 <= aug.height * aug.width / (64 * 48) <= SCALE[1]
        assert RATIO[0] * 0.9 <= aug.width / aug.height <= RATIO[1] * 1.1
    flips = sum(draw_augmentation(64, 48, 0, 0, i).flip for i in range(300))
    assert 100 < flips < 200
    assert draw_augmentation(64, 48, 0, 0, 7) == draw_augmentation(64, 48, 0, 0, 7)


@pytest.mark.skipif(importlib.util.find_spec("nvidia.dali") is None, reason="nvidia-dali-cuda130 absent: pip "
                    "install 'adahessian-bench[dali]'")
def test_dali_on_cpu_gives_the_dataloaders_labels_shapes_and_crops(imagenet: Path) -> None:
    folder = ImageNetTask(str(imagenet), image_size=SIZE, workers=0, **RUNTIME)
    dali = ImageNetTask(str(imagenet), image_size=SIZE, workers=1, loader="dali", **RUNTIME)
    for a, b in ((batches(folder, 1), batches(dali, 1)), (list(folder.val_batches()), list(dali.val_batches()))):
        assert len(a) == len(b)
        for (x, y), (u, v) in zip(a, b, strict=True):
            assert torch.equal(y, v) and x.shape == u.shape and u.dtype == torch.float32
    # The same crop boxes and flips: the pixels differ only by the two libraries' resampling.
    assert all((x - u).abs().mean() < 0.05 for (x, _), (u, _) in zip(batches(folder, 2), batches(dali, 2), strict=True))
    assert same(batches(dali, 1)[3:], batches(dali, 1, start=3))
    assert dali.data_summary()["loader"] == "dali"


def test_dali_not_importable_is_a_one_line_error(imagenet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # what `import nvidia.dali` sees without the wheel
    with pytest.raises(ValueError, match=r"task\.loader=dali: NVIDIA DALI is not importable .*task\.loader=dataloader"):
        ImageNetTask(str(imagenet), loader="dali", image_size=SIZE, **RUNTIME)
