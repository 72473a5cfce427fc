"""`task.loader=dali`: NVIDIA DALI decodes (on the GPU with its mixed decoder, on the CPU otherwise).

It reads the same index with the same sampler as the DataLoader path, so order, labels and sharding agree, and it
takes each image's crop box and flip from the same (seed, epoch, index) draw: Python reads the file bytes (a
thread pool prefetches the next batch) and the JPEG header for the size; DALI decodes only the crop window
(`decoders.image_slice`), resizes, flips and lays out CHW. Labels never pass through DALI.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from PIL import Image

from tasks.base import DataError
from tasks.imagenet.layout import ImageIndex
from tasks.imagenet.loader import SplitBatchSampler, draw_augmentation, val_resize

INSTALL = ("task.loader=dali: NVIDIA DALI is not importable ({}); install the extra (pip install "
           "'adahessian-bench[dali]', i.e. nvidia-dali-cuda130) or use task.loader=dataloader")

Batch = tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]


def import_dali() -> Any:
    try:
        import nvidia.dali as dali
        import nvidia.dali.fn
        import nvidia.dali.types  # noqa: F401
    except ImportError as exc:
        raise ValueError(INSTALL.format(exc)) from None
    return dali


def train_pipeline(dali: Any, size: int, decoder: str, **kwargs: Any) -> Any:
    fn, types = dali.fn, dali.types

    @dali.pipeline_def(**kwargs)
    def pipe() -> Any:
        encoded = fn.external_source(name="encoded", dtype=types.UINT8)
        anchor = fn.external_source(name="anchor", dtype=types.FLOAT)
        shape = fn.external_source(name="shape", dtype=types.FLOAT)
        flip = fn.external_source(name="flip", dtype=types.INT32)
        images = fn.decoders.image_slice(encoded, anchor, shape, device=decoder, output_type=types.RGB,
                                         normalized_anchor=False, normalized_shape=False, axis_names="WH")
        images = fn.resize(images, size=[size, size], antialias=True)
        images = fn.flip(images, horizontal=flip)
        return fn.transpose(images, perm=[2, 0, 1])

    return pipe()


def val_pipeline(dali: Any, size: int, decoder: str, **kwargs: Any) -> Any:
    fn, types = dali.fn, dali.types

    @dali.pipeline_def(**kwargs)
    def pipe() -> Any:
        encoded = fn.external_source(name="encoded", dtype=types.UINT8)
        images = fn.decoders.image(encoded, device=decoder, output_type=types.RGB)
        images = fn.resize(images, resize_shorter=val_resize(size), antialias=True)
        images = fn.crop(images, crop=[size, size])
        return fn.transpose(images, perm=[2, 0, 1])

    return pipe()


def read_bytes(path: str) -> np.ndarray:
    with open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8)


class DaliLoader:
    """(uint8 NCHW images on the task's device, labels, bad files) per batch, like FolderLoader."""

    name = "dali"

    def __init__(self, index: ImageIndex, image_size: int, batch_size: int, eval_batch_size: int, seed: int,
                 rank: int, world_size: int, workers: int, prefetch: int, device: torch.device) -> None:
        self.dali = import_dali()
        self.index, self.image_size, self.seed = index, image_size, seed
        self.device = device
        self.workers = max(1, workers)
        self.sampler = SplitBatchSampler(len(index.train), len(index.val), batch_size, eval_batch_size, seed, rank,
                                         world_size)
        gpu = device.type == "cuda"
        options = dict(batch_size=max(batch_size // world_size, eval_batch_size), num_threads=self.workers,
                       device_id=(device.index or 0) if gpu else None, exec_async=False, exec_pipelined=False,
                       seed=seed)
        decoder = "mixed" if gpu else "cpu"
        self.train_pipe = train_pipeline(self.dali, image_size, decoder, **options)
        self.val_pipe = val_pipeline(self.dali, image_size, decoder, **options)
        self.train_pipe.build()
        self.val_pipe.build()
        self.reader = ThreadPoolExecutor(max_workers=min(32, self.workers * 2))

    def fetch(self, split: str, indices: list[int]) -> list[tuple[int, str, Future]]:
        """Start reading a batch's files in the thread pool."""
        items = self.index.train if split == "train" else self.index.val
        paths = [str(self.index.path(items[i][0])) for i in indices]
        return [(i, p, self.reader.submit(read_bytes, p)) for i, p in zip(indices, paths, strict=True)]

    def prefetched(self, split: str, batches: Iterator[list[int]]) -> Iterator[list[tuple[int, str, np.ndarray]]]:
        """Each batch's (index, path, bytes), the next batch's reads already under way."""
        pending: list[tuple[int, str, Future]] | None = None
        for indices in batches:
            ahead = self.fetch(split, indices)
            if pending is not None:
                yield [(i, p, f.result()) for i, p, f in pending]
            pending = ahead
        if pending is not None:
            yield [(i, p, f.result()) for i, p, f in pending]

    def run(self, pipe: Any, files: list[tuple[int, str, np.ndarray]], inputs: dict[str, list[np.ndarray]]) -> Any:
        for name, data in inputs.items():
            pipe.feed_input(name, data)
        try:
            (images,) = pipe.run()
        except RuntimeError as exc:
            names = ", ".join(p for _, p, _ in files[:3])
            raise DataError(f"DALI could not decode a batch holding {names}, ... ({str(exc).splitlines()[0]}); "
                            "run with task.loader=dataloader to name the file (task.skip_bad_images=true skips it)"
                            ) from None
        return self.to_torch(images)

    def to_torch(self, images: Any) -> torch.Tensor:
        tensor = images.as_tensor()
        if self.device.type != "cuda":
            return torch.from_numpy(np.array(tensor))
        from nvidia.dali.plugin.pytorch import feed_ndarray

        out = torch.empty(tensor.shape(), dtype=torch.uint8, device=self.device)
        feed_ndarray(tensor, out, cuda_stream=torch.cuda.current_stream(self.device))
        return out

    def readable(self, files: list[tuple[int, str, np.ndarray]]
                 ) -> tuple[list[tuple[int, str, np.ndarray, tuple[int, int]]], list[tuple[str, str]]]:
        """Files whose header PIL can parse, with their (width, height); the others as (path, reason)."""
        good, bad = [], []
        for i, path, data in files:
            try:
                with Image.open(io.BytesIO(data)) as image:
                    good.append((i, path, data, image.size))
            except Exception as exc:
                bad.append((path, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'unreadable'}"))
        return good, bad

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        for files in self.prefetched("train", self.sampler.batches(epoch, start)):
            good, bad = self.readable(files)
            inputs: dict[str, list[np.ndarray]] = {"encoded": [], "anchor": [], "shape": [], "flip": []}
            for i, _, data, (width, height) in good:
                aug = draw_augmentation(width, height, self.seed, epoch, i)
                inputs["encoded"].append(data)
                inputs["anchor"].append(np.array([aug.left, aug.top], dtype=np.float32))
                inputs["shape"].append(np.array([aug.width, aug.height], dtype=np.float32))
                inputs["flip"].append(np.array(int(aug.flip), dtype=np.int32))
            labels = torch.tensor([self.index.train[i][1] for i, *_ in good], dtype=torch.long)
            images = self.run(self.train_pipe, files, inputs) if good else torch.empty(0, dtype=torch.uint8)
            yield images, labels, bad

    def val_batches(self) -> Iterator[Batch]:
        step = self.sampler.eval_batch_size
        order = (list(range(s, min(s + step, len(self.index.val)))) for s in range(0, len(self.index.val), step))
        for files in self.prefetched("val", order):
            good, bad = self.readable(files)
            labels = torch.tensor([self.index.val[i][1] for i, *_ in good], dtype=torch.long)
            images = self.run(self.val_pipe, files, {"encoded": [d for _, _, d, _ in good]}) if good else \
                torch.empty(0, dtype=torch.uint8)
            yield images, labels, bad

    def close(self) -> None:
        self.reader.shutdown(wait=False, cancel_futures=True)
        self.train_pipe = self.val_pipe = None
