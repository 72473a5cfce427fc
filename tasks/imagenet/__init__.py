"""ImageNet (ILSVRC-2012) classification: layouts, decoding, the DataLoader and DALI pipelines, the task."""

from tasks.imagenet.task import ImageNetTask

__all__ = ["ImageNetTask"]
