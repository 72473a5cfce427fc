"""The default ImageNet pipeline: torch DataLoader workers decode with PIL and augment; the device normalises.

Resume is exact because nothing depends on worker scheduling: the epoch's order is a permutation drawn from
(seed, epoch), rank r takes its slice of each global batch, and each image's crop and flip come from a generator
seeded by (seed, epoch, index). A batch sampler that starts at batch `start` never decodes the skipped batches.
Train and val share one DataLoader (and so one pool of persistent workers); the sampler says which split.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from tasks.imagenet.decode import BadImage, load_rgb
from tasks.imagenet.layout import ImageIndex

SCALE = (0.08, 1.0)  # torchvision RandomResizedCrop's defaults, as pytorch/examples uses them
RATIO = (3 / 4, 4 / 3)
VAL_RESIZE_RATIO = 256 / 224  # Resize(256) + CenterCrop(224), kept in proportion for other image sizes

TrainKey = tuple[str, int, int]  # ("train", index, epoch)
ValKey = tuple[str, int]  # ("val", index)


@dataclass(frozen=True)
class Augmentation:
    """One training view: the crop box in source pixels and whether to mirror it."""

    top: int
    left: int
    height: int
    width: int
    flip: bool


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 10_000_019 + index) % (1 << 63))


def draw_augmentation(width: int, height: int, seed: int, epoch: int, index: int) -> Augmentation:
    """torchvision's RandomResizedCrop.get_params (10 tries, then the central crop of the clamped ratio) and a
    coin for the flip, drawn from this image's own generator, so both loaders and a resumed run agree."""
    g = sample_generator(seed, epoch, index)
    area = width * height
    log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
    box = None
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(SCALE[0], SCALE[1], generator=g).item()
        aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=g).item())
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=g).item())
            left = int(torch.randint(0, width - w + 1, (1,), generator=g).item())
            box = (top, left, h, w)
            break
    if box is None:
        in_ratio = width / height
        if in_ratio < RATIO[0]:
            w, h = width, round(width / RATIO[0])
        elif in_ratio > RATIO[1]:
            h, w = height, round(height * RATIO[1])
        else:
            w, h = width, height
        box = ((height - h) // 2, (width - w) // 2, h, w)
    flip = bool(torch.rand(1, generator=g).item() < 0.5)
    return Augmentation(*box, flip=flip)


def train_view(image: Image.Image, size: int, aug: Augmentation) -> torch.Tensor:
    """RandomResizedCrop(size) + RandomHorizontalFlip with the given draw, as a uint8 CHW tensor."""
    view = TF.resized_crop(image, aug.top, aug.left, aug.height, aug.width, [size, size],
                           interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    if aug.flip:
        view = TF.hflip(view)
    return TF.pil_to_tensor(view)


def val_resize(size: int) -> int:
    return round(size * VAL_RESIZE_RATIO)


def val_view(image: Image.Image, size: int) -> torch.Tensor:
    """Resize(256) + CenterCrop(224) (scaled with `size`), as a uint8 CHW tensor."""
    view = TF.resize(image, val_resize(size), interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return TF.pil_to_tensor(TF.center_crop(view, size))


class ImageFiles(Dataset):
    """Maps ("train", i, epoch) or ("val", i) to (uint8 image or None, label, (path, reason) or None).

    A bad file comes back as a value rather than an exception, so the main process can name it in one line
    (or skip and count it) whether or not the decoding happened in a worker."""

    def __init__(self, index: ImageIndex, image_size: int, seed: int) -> None:
        self.index = index
        self.image_size = image_size
        self.seed = seed

    def __len__(self) -> int:
        return len(self.index.train)

    def __getitem__(self, key: TrainKey | ValKey) -> tuple[torch.Tensor | None, int, tuple[str, str] | None]:
        split, i = key[0], key[1]
        relative, label = (self.index.train if split == "train" else self.index.val)[i]
        path = self.index.path(relative)
        try:
            image = load_rgb(path)
        except BadImage as exc:
            return None, label, (str(path), str(exc))
        if split == "train":
            aug = draw_augmentation(image.width, image.height, self.seed, key[2], i)
            return train_view(image, self.image_size, aug), label, None
        return val_view(image, self.image_size), label, None


def collate(samples: list[tuple[torch.Tensor | None, int, tuple[str, str] | None]]
            ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
    """Stack the decoded images; bad files are returned beside the batch, not in it."""
    images = [s[0] for s in samples if s[0] is not None]
    labels = [s[1] for s in samples if s[0] is not None]
    bad = [s[2] for s in samples if s[2] is not None]
    stacked = torch.stack(images) if images else torch.empty(0, dtype=torch.uint8)
    return stacked, torch.tensor(labels, dtype=torch.long), bad


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


class SplitBatchSampler(Sampler):
    """Batches of dataset keys: this rank's slice of each global train batch from `start` on, or val in order.

    Set the mode (`train(epoch, start)` / `val()`) before iterating; the DataLoader's persistent workers stay.
    The ragged last train batch is dropped, as pytorch/examples' DistributedSampler + drop_last do."""

    def __init__(self, n_train: int, n_val: int, batch_size: int, eval_batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1) -> None:
        self.n_train, self.n_val = n_train, n_val
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.mode: tuple[str, int, int] = ("train", 0, 0)

    def steps_per_epoch(self) -> int:
        return self.n_train // self.batch_size

    def train(self, epoch: int, start: int = 0) -> None:
        self.mode = ("train", epoch, start)

    def val(self) -> None:
        self.mode = ("val", 0, 0)

    def batches(self, epoch: int, start: int = 0) -> Iterator[list[int]]:
        """This rank's image indices of the epoch's batches `start`, `start + 1`, ..."""
        order = epoch_permutation(self.n_train, self.seed, epoch)
        local = self.batch_size // self.world_size
        for step in range(start, self.steps_per_epoch()):
            first = step * self.batch_size + self.rank * local
            yield order[first:first + local].tolist()

    def __iter__(self) -> Iterator[list[Any]]:
        split, epoch, start = self.mode
        if split == "val":
            for first in range(0, self.n_val, self.eval_batch_size):
                yield [("val", i) for i in range(first, min(first + self.eval_batch_size, self.n_val))]
            return
        for indices in self.batches(epoch, start):
            yield [("train", i, epoch) for i in indices]

    def __len__(self) -> int:
        split, _, start = self.mode
        if split == "val":
            return math.ceil(self.n_val / self.eval_batch_size)
        return max(0, self.steps_per_epoch() - start)


def default_workers() -> int:
    """The cores this process may use, shared among the ranks torchrun started on this node."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def build_dataloader(dataset: ImageFiles, sampler: SplitBatchSampler, workers: int, prefetch: int,
                     pin_memory: bool) -> DataLoader:
    extra: dict[str, Any] = {"persistent_workers": True, "prefetch_factor": prefetch} if workers > 0 else {}
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate,
                      pin_memory=pin_memory, **extra)


class FolderLoader:
    """The DataLoader pipeline behind the task: (uint8 NCHW images, labels, bad files) per batch."""

    name = "dataloader"

    def __init__(self, index: ImageIndex, image_size: int, batch_size: int, eval_batch_size: int, seed: int,
                 rank: int, world_size: int, workers: int, prefetch: int, pin_memory: bool) -> None:
        self.sampler = SplitBatchSampler(len(index.train), len(index.val), batch_size, eval_batch_size, seed, rank,
                                         world_size)
        self.workers = workers
        self.loader: DataLoader | None = build_dataloader(ImageFiles(index, image_size, seed), self.sampler, workers,
                                                          prefetch, pin_memory)

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor, list]]:
        self.sampler.train(epoch, start)
        yield from self.loader

    def val_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, list]]:
        self.sampler.val()
        yield from self.loader

    def close(self) -> None:
        self.loader = None  # the last reference to the iterator: its persistent workers shut down
