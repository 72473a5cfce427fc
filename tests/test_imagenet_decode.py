"""ImageNet's oddities decode to the right RGB pixels; unreadable files are named, or skipped and counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tasks.base import DataError
from tasks.imagenet import ImageNetTask
from tasks.imagenet.decode import BadImage, load_rgb
from tests.imagenet_fixture import TRAIN_PER_CLASS, WNIDS, tiles, truncated_jpeg, write_imagenet

RUNTIME = dict(device=torch.device("cpu"), batch_size=8, eval_batch_size=12, seed=0)


def test_cmyk_png_grayscale_and_progressive_files_decode_to_rgb(tmp_path: Path) -> None:
    data = write_imagenet(tmp_path / "imagenet")
    originals = tiles(TRAIN_PER_CLASS, seed=0)  # the tiles the fixture wrote, class-major
    for kind, path in data.oddities.items():
        with Image.open(path) as raw:
            stored = raw.format, raw.mode, raw.info.get("progressive", 0)
        expected = {"cmyk": ("JPEG", "CMYK", 0), "png": ("PNG", "RGB", 0), "gray": ("JPEG", "L", 0),
                    "progressive": ("JPEG", "RGB", 1)}[kind]
        assert stored == expected, kind
        assert path.suffix == ".JPEG"
        image = load_rgb(path)
        assert image.mode == "RGB"
        original = np.asarray(originals[WNIDS.index(path.parent.name) * TRAIN_PER_CLASS], dtype=np.float64)
        decoded = np.asarray(image, dtype=np.float64)
        assert decoded.shape == original.shape
        if kind == "gray":
            assert np.array_equal(decoded[..., 0], decoded[..., 1])
            original = original @ np.array([0.299, 0.587, 0.114])[:, None].repeat(3, 1)
        assert np.abs(decoded - original).mean() < 12, kind  # CMYK inverted or channels swapped would be ~100


def test_truncated_and_non_image_files_raise_bad_image(tmp_path: Path) -> None:
    truncated, text = tmp_path / "truncated.JPEG", tmp_path / "text.JPEG"
    truncated.write_bytes(truncated_jpeg(tiles(1, seed=0)[0]))
    text.write_text("not an image")
    for path in (truncated, text):
        with pytest.raises(BadImage):
            load_rgb(path)


def test_a_bad_image_stops_the_run_by_name_or_is_skipped_and_counted(tmp_path: Path) -> None:
    data = write_imagenet(tmp_path / "imagenet")
    bad = data.root / "train" / "n01484850" / "n01484850_5.JPEG"
    bad.write_bytes(truncated_jpeg(Image.open(bad).convert("RGB")))
    task = ImageNetTask(str(data.root), image_size=16, workers=0, **RUNTIME)
    with pytest.raises(DataError, match=r"n01484850_5.JPEG: unreadable image \(OSError: .*task.skip_bad_images=true"):
        list(task.train_batches(0))
    task = ImageNetTask(str(data.root), image_size=16, workers=0, skip_bad_images=True, **RUNTIME)
    sizes = [len(y) for _, y in task.train_batches(0)]
    assert len(sizes) == task.steps_per_epoch() and sum(sizes) == 8 * len(sizes) - 1
    summary = task.data_summary()
    assert summary["skipped_images"] == 1 and str(bad) in summary["skipped_files"]
