"""ResNet-18 on ImageNet (Yao et al. 2021, Table 2): torchvision's resnet18, top-1 and top-5, images/s.

Loaders yield uint8 NCHW batches; the device converts, normalises with ImageNet's mean/std and, on a GPU, makes
them channels_last. On a GPU the forward runs in bf16 autocast by default (`task.bf16`, `task.channels_last`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from tasks.base import DataError, Metric, Task
from tasks.imagenet.layout import ImageIndex, load_index
from tasks.imagenet.loader import FolderLoader, default_workers

MEAN = (0.485, 0.456, 0.406)  # torchvision / pytorch/examples ImageNet normalisation
STD = (0.229, 0.224, 0.225)
LOADERS = ("dataloader", "dali")
SYNTHETIC_CLASSES = 1000
MAX_LISTED_BAD = 20
SYNTHETIC_VAL_SEED = 7


def on_gpu_default(value: str | bool, device: torch.device, key: str) -> bool:
    if value == "auto":
        return device.type == "cuda"
    if isinstance(value, bool):
        return value
    raise ValueError(f"task.{key}={value}: expected auto, true or false")


class ImageNetTask(Task):
    """ImageNet classification from a folder in either layout (see tasks/imagenet/layout.py)."""

    metric = Metric("top1", "max", "%")
    throughput_unit = "images"

    def __init__(self, data_dir: str, cache_dir: str | None = None, loader: str = "dataloader",
                 workers: int | None = None, prefetch: int = 4, image_size: int = 224, skip_bad_images: bool = False,
                 synthetic: int = 0, channels_last: str | bool = "auto", bf16: str | bool = "auto",
                 **runtime: Any) -> None:
        super().__init__(**runtime)
        if loader not in LOADERS:
            raise ValueError(f"task.loader={loader}: expected one of {'|'.join(LOADERS)}")
        if image_size < 8:
            raise ValueError(f"task.image_size={image_size}: must be >= 8 (224 for the paper's setup)")
        workers = default_workers() if workers is None else workers
        if workers < 0 or prefetch < 1:
            raise ValueError(f"task.workers={workers}, task.prefetch={prefetch}: need workers >= 0 and prefetch >= 1")
        self.image_size = image_size
        self.skip_bad_images = skip_bad_images
        self.synthetic = synthetic
        self.channels_last = on_gpu_default(channels_last, self.device, "channels_last")
        self.bf16 = on_gpu_default(bf16, self.device, "bf16")
        self.mean = torch.tensor(MEAN, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(STD, device=self.device).view(1, 3, 1, 1) * 255
        self.skipped: dict[str, str] = {}
        self.local_batch = self.batch_size // self.world_size
        self.index: ImageIndex | None = None
        self.pipeline: Any = None
        if synthetic > 0:
            self.num_classes = SYNTHETIC_CLASSES
            self.n_train = synthetic
            return
        self.index = load_index(data_dir, cache_dir, quiet=self.rank != 0)
        self.num_classes, self.n_train = len(self.index.classes), len(self.index.train)
        if loader == "dali":
            from tasks.imagenet.dali import DaliLoader

            self.pipeline = DaliLoader(self.index, image_size, self.batch_size, self.eval_batch_size, self.seed,
                                       self.rank, self.world_size, workers, prefetch, self.device)
        else:
            self.pipeline = FolderLoader(self.index, image_size, self.batch_size, self.eval_batch_size, self.seed,
                                         self.rank, self.world_size, workers, prefetch,
                                         pin_memory=self.device.type == "cuda")

    def build_model(self) -> nn.Module:
        model = torchvision.models.resnet18(weights=None, num_classes=self.num_classes)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def steps_per_epoch(self) -> int:
        return self.n_train // self.batch_size

    def model_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW (any device) to normalised float on the task's device."""
        x = images.to(self.device, non_blocking=True).float().sub_(self.mean).div_(self.std)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def checked(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor, list]]
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Name the first bad file in one line, or (skip_bad_images) count it and go on without it."""
        for images, labels, bad in batches:
            for path, reason in bad:
                if not self.skip_bad_images:
                    raise DataError(f"{path}: unreadable image ({reason}); replace or delete the file, or set "
                                    "task.skip_bad_images=true to skip such files (they are counted in the record)")
                self.skipped[path] = reason
            if len(labels) == 0:
                raise DataError(f"every image of a batch was unreadable (e.g. {bad[0][0]}); check the data folder")
            yield self.model_input(images), labels.to(self.device, non_blocking=True)

    def synthetic_batches(self, seed: int, count: int, size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator(device=self.device).manual_seed(seed)
        shape = (size, 3, self.image_size, self.image_size)
        for _ in range(count):
            images = torch.randint(0, 256, shape, generator=g, device=self.device, dtype=torch.uint8)
            labels = torch.randint(0, self.num_classes, (size,), generator=g, device=self.device)
            yield self.model_input(images), labels

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.synthetic > 0:
            yield from self.synthetic_batches(self.seed * 100_003 + epoch * 1009 + self.rank, self.steps_per_epoch()
                                              - start, self.local_batch)
            return
        yield from self.checked(self.pipeline.train_batches(epoch, start))

    def val_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.synthetic > 0:
            size = min(self.eval_batch_size, max(1, self.synthetic // 10))
            return self.synthetic_batches(SYNTHETIC_VAL_SEED, 1, size)
        return self.checked(self.pipeline.val_batches())

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int]:
        x, y = batch
        with self.autocast():
            logits = model(x)
        return F.cross_entropy(logits.float(), y), len(y)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Top-1 and top-5 accuracy (%) and mean cross-entropy over the whole val split (rank 0)."""
        correct1 = correct5 = total = 0
        loss_sum = 0.0
        k = min(5, self.num_classes)
        for x, y in self.val_batches():
            with self.autocast():
                logits = model(x)
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            hits = logits.topk(k, dim=1).indices == y[:, None]
            correct1 += hits[:, 0].sum().item()
            correct5 += hits.any(dim=1).sum().item()
            total += len(y)
        return {"top1": 100.0 * correct1 / total, "top5": 100.0 * correct5 / total, "loss": loss_sum / total}

    def data_summary(self) -> dict[str, Any]:
        if self.index is None:
            return {"synthetic": self.synthetic, "image_size": self.image_size}
        return {"layout": self.index.layout, "base": str(self.index.base), "classes": len(self.index.classes),
                "train_images": len(self.index.train), "val_images": len(self.index.val),
                "index_cache": str(self.index.cache_path) if self.index.cache_path else None,
                "loader": self.pipeline.name, "workers": self.pipeline.workers, "image_size": self.image_size,
                "skipped_images": len(self.skipped),
                "skipped_files": dict(list(self.skipped.items())[:MAX_LISTED_BAD])}

    def close(self) -> None:
        if self.pipeline is not None:
            self.pipeline.close()
