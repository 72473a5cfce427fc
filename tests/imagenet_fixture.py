"""A tiny ImageNet in both published layouts, cut from the real photos scikit-learn ships (china.jpg, flower.jpg).

Each class is one region of one photo, so a few steps of training can learn it. ImageNet's oddities are planted
in train: a CMYK JPEG, a PNG named .JPEG, a grayscale JPEG and a progressive JPEG.
"""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images

WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361"]  # ImageNet's first four classes
TRAIN_PER_CLASS = 12
VAL_PER_CLASS = 3
ODDITIES = {"cmyk": 0, "png": 1, "gray": 2, "progressive": 3}  # kind -> class whose image 0 it replaces


@dataclass
class TinyImageNet:
    """What was written: the data_dir and, per split, each file's path relative to the split folder's parent."""

    root: Path
    layout: str
    train: dict[str, str] = field(default_factory=dict)  # path -> wnid
    val: dict[str, str] = field(default_factory=dict)  # val image stem -> wnid
    oddities: dict[str, Path] = field(default_factory=dict)


def tiles(count: int, seed: int) -> list[Image.Image]:
    """`count` crops per class of varied size (40-96 px sides) from the class's region of its photo."""
    photos = load_sample_images().images  # china.jpg, flower.jpg: 427 x 640 x 3 uint8
    rng = np.random.default_rng(seed)
    out = []
    for c in range(len(WNIDS)):
        photo = photos[c % 2]
        half = photo[:, :320] if c < 2 else photo[:, 320:]
        for _ in range(count):
            h, w = rng.integers(40, 97, size=2)
            top, left = rng.integers(0, half.shape[0] - h), rng.integers(0, half.shape[1] - w)
            out.append(Image.fromarray(np.ascontiguousarray(half[top:top + h, left:left + w])))
    return out


def save(image: Image.Image, path: Path, kind: str = "rgb") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "cmyk":
        image.convert("CMYK").save(path, format="JPEG", quality=95)
    elif kind == "png":
        image.save(path, format="PNG")
    elif kind == "gray":
        image.convert("L").save(path, format="JPEG", quality=90)
    elif kind == "progressive":
        image.save(path, format="JPEG", quality=90, progressive=True)
    else:
        image.save(path, format="JPEG", quality=90)


def write_imagenet(root: Path, layout: str = "class-folders") -> TinyImageNet:
    """Write 4 classes x (12 train, 3 val) images under `root` in `layout` ("class-folders" or "kaggle")."""
    out = TinyImageNet(root, layout)
    base = root / "ILSVRC" / "Data" / "CLS-LOC" if layout == "kaggle" else root
    train_images = tiles(TRAIN_PER_CLASS, seed=0)
    for c, wnid in enumerate(WNIDS):
        for k in range(TRAIN_PER_CLASS):
            relative = f"train/{wnid}/{wnid}_{k + 1}.JPEG"
            kind = next((name for name, cls in ODDITIES.items() if cls == c and k == 0), "rgb")
            save(train_images[c * TRAIN_PER_CLASS + k], base / relative, kind)
            out.train[relative] = wnid
            if kind != "rgb":
                out.oddities[kind] = base / relative
    val_images = tiles(VAL_PER_CLASS, seed=1)
    rng = np.random.default_rng(2)
    numbers = rng.permutation(len(val_images)) + 1  # val ids are not grouped by class, as in ILSVRC
    for i, image in enumerate(val_images):
        wnid, stem = WNIDS[i // VAL_PER_CLASS], f"ILSVRC2012_val_{numbers[i]:08d}"
        folder = base / "val" if layout == "kaggle" else base / "val" / wnid
        save(image, folder / f"{stem}.JPEG")
        out.val[stem] = wnid
    if layout == "kaggle":
        write_kaggle_extras(root, base, out.val, rng)
    return out


def write_kaggle_extras(root: Path, base: Path, val: dict[str, str], rng: np.random.Generator) -> None:
    """LOC_val_solution.csv (boxes included, rows unsorted), LOC_synset_mapping.txt and an unlabelled test/."""
    rows = []
    for stem, wnid in val.items():
        boxes = [f"{wnid} {x} {y} {x + 20} {y + 30}" for x, y in rng.integers(0, 20, size=(2, 2))]
        rows.append([stem, " ".join(boxes) + " "])  # Kaggle's strings end with a space
    with (root / "LOC_val_solution.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ImageId", "PredictionString"])
        writer.writerows(rows[i] for i in rng.permutation(len(rows)))
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} class {i}\n" for i, w in enumerate(WNIDS)))
    (root / "ILSVRC" / "Annotations" / "CLS-LOC").mkdir(parents=True)
    save(tiles(1, seed=3)[0], base / "test" / "ILSVRC2012_test_00000001.JPEG")


def truncated_jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()[: len(buf.getvalue()) // 2]


def main(argv: list[str]) -> int:
    """`python -m tests.imagenet_fixture DIR [class-folders|kaggle]`: write the fixture (for trying the CLI)."""
    if len(argv) not in (1, 2):
        print("usage: python -m tests.imagenet_fixture DIR [class-folders|kaggle]", file=sys.stderr)
        return 2
    print(write_imagenet(Path(argv[0]), *argv[1:]).root)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
