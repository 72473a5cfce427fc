"""ImageNet layouts: ImageFolder's labels in the class-folder layout, Kaggle's CSV labels, the index cache, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torchvision

from tasks.base import DataError
from tasks.imagenet import layout
from tasks.imagenet.layout import load_index
from tests.imagenet_fixture import WNIDS, write_imagenet


def absolute(index: layout.ImageIndex, items: list[tuple[str, int]]) -> list[tuple[str, int]]:
    return [(str(index.path(p)), y) for p, y in items]


def test_class_folder_labels_match_imagefolder(tmp_path: Path) -> None:
    data = write_imagenet(tmp_path / "imagenet")
    index = load_index(data.root, quiet=True)
    assert index.layout == "class-folders" and index.classes == WNIDS
    for split, items in (("train", index.train), ("val", index.val)):
        folder = torchvision.datasets.ImageFolder(str(data.root / split))
        assert folder.classes == index.classes
        assert absolute(index, items) == folder.samples
    assert len(index.train) == len(data.train) and len(index.val) == len(data.val)


def test_kaggle_layout_reads_the_val_solution_csv(tmp_path: Path) -> None:
    data = write_imagenet(tmp_path / "kaggle", "kaggle")
    index = load_index(data.root, quiet=True)
    assert index.layout == "kaggle" and index.classes == WNIDS
    train = torchvision.datasets.ImageFolder(str(data.root / "ILSVRC/Data/CLS-LOC/train"))
    assert absolute(index, index.train) == train.samples
    assert {Path(p).stem: index.classes[y] for p, y in index.val} == data.val  # test/ is not read
    assert [Path(p).name for p, _ in index.val] == sorted(f"{stem}.JPEG" for stem in data.val)


def test_index_is_cached_and_rebuilt_when_a_folder_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_imagenet(tmp_path / "imagenet")
    first = load_index(data.root, quiet=True)
    assert first.cache_path == data.root / layout.CACHE_NAME and first.cache_path.is_file()

    def must_not_list(_: layout.Location) -> layout.ImageIndex:
        raise AssertionError("the index was rebuilt although nothing changed")

    with monkeypatch.context() as m:
        m.setattr(layout, "build_index", must_not_list)
        assert load_index(data.root, quiet=True) == first
    shutil.copy(data.root / first.train[0][0], data.root / "train" / WNIDS[1] / "added.JPEG")
    rebuilt = load_index(data.root, quiet=True)
    assert ("train/n01443537/added.JPEG", 1) in rebuilt.train and len(rebuilt.train) == len(first.train) + 1


def test_cache_dir_holds_the_index_when_given(tmp_path: Path) -> None:
    data = write_imagenet(tmp_path / "imagenet")
    index = load_index(data.root, cache_dir=str(tmp_path / "cache"), quiet=True)
    assert index.cache_path is not None and index.cache_path.parent == tmp_path / "cache"
    assert not (data.root / layout.CACHE_NAME).exists()


def test_unrecognised_or_inconsistent_folders_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no train/ or ILSVRC/Data/CLS-LOC/ folder there; expected"):
        load_index(tmp_path / "empty", quiet=True)
    data = write_imagenet(tmp_path / "imagenet")
    shutil.rmtree(data.root / "val" / WNIDS[2])
    with pytest.raises(DataError, match=f"different class folders \\(only in train: {WNIDS[2]}; only in val: -\\)"):
        load_index(data.root, quiet=True)
    kaggle = write_imagenet(tmp_path / "kaggle", "kaggle")
    val_dir = kaggle.root / "ILSVRC/Data/CLS-LOC/val"
    stray = val_dir / "ILSVRC2012_val_00000099.JPEG"
    shutil.copy(next(val_dir.iterdir()), stray)
    with pytest.raises(DataError, match=r"ILSVRC2012_val_00000099\.JPEG: no row in .*LOC_val_solution\.csv"):
        load_index(kaggle.root, quiet=True)
    stray.unlink()
    (val_dir / f"{next(iter(kaggle.val))}.JPEG").unlink()
    with pytest.raises(DataError, match=r"listed in .*LOC_val_solution\.csv but missing"):
        load_index(kaggle.root, quiet=True)
    (kaggle.root / "LOC_val_solution.csv").unlink()
    with pytest.raises(DataError, match=r"a flat val folder needs LOC_val_solution\.csv"):
        load_index(kaggle.root, quiet=True)
