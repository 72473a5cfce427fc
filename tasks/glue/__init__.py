"""GLUE fine-tuning of HF SqueezeBERT (paper Table 5): TSV readers, task specs, official metrics, the task."""

from tasks.glue.task import GlueTask

__all__ = ["GlueTask"]
