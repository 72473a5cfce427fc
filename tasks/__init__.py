"""Tasks: data from the standard on-disk format, model, loss and metrics. Never imports `bench`."""

from tasks.base import Batch, Metric, Task

__all__ = ["Batch", "Metric", "Task"]
