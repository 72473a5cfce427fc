"""DLRM on Criteo Kaggle (the AdaHessian paper's recommendation result): data, model, hybrid routing, metrics.

Training reads the prepared memory maps a batch at a time (numpy gathers, no per-example Python). The
embedding tables form the param group routed to `task.routes.embeddings` (sparse Adagrad, as the paper);
everything else trains with the optimizer under test. Metrics as the reference's `inference`: accuracy (%)
with `round(p)`, sklearn's ROC AUC and log loss; the validation rows per epoch, the test rows in `test()`.
`task.test_split` picks them: the paper's whole day 7 (validation = test) or the reference code's two halves.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import log_loss, roc_auc_score
from torch import nn

from tasks.base import Metric, Task
from tasks.dlrm.model import DLRM
from tasks.dlrm.parse import N_DENSE, N_SPARSE
from tasks.dlrm.prepare import TEST_SPLITS, ensure_prepared, split_ranges, split_summary
from tasks.dlrm.torchrec import find_torchrec, load_torchrec

# torch's sparse Adagrad builds its COO updates unchecked and says so on every run; nothing to act on.
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
EMBEDDINGS_ROUTE = "embeddings"
SHUFFLES = ("total", "batches", "none")
# Dictionary sizes of the full Kaggle train.txt under the reference's preprocessing (--max-ind-range=-1, an empty
# id read as id 0; ours keep missing apart, at most one more per column), as widely quoted with it;
# the table shapes `synthetic` uses when the data is absent.
KAGGLE_TABLE_SIZES = (1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194, 27, 14992,
                      5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572)
# Synthetic tables are capped: a step's cost depends on the batch (sparse updates touch only its rows), while
# Kaggle's full tables take 2 GB per model copy and `bench perf` builds one per optimizer variant.
SYNTHETIC_TABLE_CAP = 100_000
DEFAULT_MODEL = {"embedding_dim": 16, "bottom_mlp": [13, 512, 256, 64, 16], "top_mlp": [512, 256, 1]}


@dataclass
class CriteoArrays:
    """Rows (possibly memory-mapped) and where each split lies: rows [start, stop) of every array."""

    labels: np.ndarray
    dense: np.ndarray
    sparse: np.ndarray
    table_sizes: list[int]
    splits: dict[str, tuple[int, int]]
    summary: dict[str, Any]


def kaggle_arrays(data_dir: str, cache_dir: str | None, max_ind_range: int, skip_bad_lines: bool,
                  workers: int, test_split: str) -> CriteoArrays:
    prepared = ensure_prepared(data_dir, cache_dir, max_ind_range, skip_bad_lines, workers=workers)
    m = prepared.manifest
    rows = m["rows"]
    ranges = split_ranges(m["split"], test_split)
    open_ = {name: np.load(prepared.folder / f"{name}.npy", mmap_mode="r")[:rows]
             for name in ("labels", "dense", "sparse")}
    summary = {"layout": "kaggle", "source": m["source"], "cache": str(prepared.folder), "rows": rows,
               "skipped_lines": m["skipped_lines"], **split_summary(ranges, test_split),
               "table_sizes": m["table_sizes"], "prepare_seconds": m["seconds"],
               "prepare_lines_per_s": m["lines_per_s"]}
    return CriteoArrays(open_["labels"], open_["dense"], open_["sparse"], m["table_sizes"], ranges, summary)


def synthetic_arrays(n: int, table_sizes: Sequence[int]) -> CriteoArrays:
    """Random rows of the real shapes, for `bench perf` timings only (never for accuracy)."""
    rng = np.random.default_rng(0)
    held = max(1, n // 10)
    total = n + 2 * held
    sparse = (rng.random((total, N_SPARSE)) * np.asarray(table_sizes)).astype(np.int32)
    dense = np.log(rng.integers(0, 1000, (total, N_DENSE)).astype(np.float32) + 1)
    labels = (rng.random(total) < 0.25).astype(np.float32)
    return CriteoArrays(labels, dense, sparse, list(table_sizes),
                        {"train": (0, n), "test": (n, n + held), "val": (n + held, total)},
                        {"layout": "synthetic", "rows": total, "table_sizes": list(table_sizes)})


class CriteoDLRMTask(Task):
    """The reference Kaggle DLRM; `task.model.*` shrinks it for tests."""

    metric = Metric("accuracy", "max", "%")
    throughput_unit = "examples"

    def __init__(self, data_dir: str, cache_dir: str | None = None, max_ind_range: int = -1,
                 skip_bad_lines: bool = False, shuffle: str = "total", synthetic: int = 0,
                 prepare_workers: int = 0, model: dict[str, Any] | None = None, test_split: str = "paper_day7",
                 **runtime: Any) -> None:
        super().__init__(**runtime)
        if self.world_size > 1:
            raise ValueError(f"task=criteo_dlrm with {self.world_size} processes: not supported yet (the sparse "
                             "embedding gradients are not reduced across ranks, so runs would be wrong); "
                             "use trainer.devices=1")
        if shuffle not in SHUFFLES:
            raise ValueError(f"task.shuffle={shuffle}: expected one of {', '.join(SHUFFLES)}")
        if test_split not in TEST_SPLITS:
            raise ValueError(f"task.test_split={test_split}: expected one of {', '.join(TEST_SPLITS)} (the paper's "
                             "whole day 7, or the dlrm reference code's first half of day 7)")
        self.model_cfg = {**DEFAULT_MODEL, **(model or {})}
        if self.model_cfg["bottom_mlp"][0] != N_DENSE:
            raise ValueError(f"task.model.bottom_mlp={list(self.model_cfg['bottom_mlp'])}: must start with "
                             f"{N_DENSE} (the dense features)")
        self.shuffle = shuffle
        if synthetic > 0:
            cap = min(SYNTHETIC_TABLE_CAP, max_ind_range) if max_ind_range > 0 else SYNTHETIC_TABLE_CAP
            self.data = synthetic_arrays(synthetic, [min(s, cap) for s in KAGGLE_TABLE_SIZES])
        elif find_torchrec(data_dir) is not None:
            self.data = load_torchrec(data_dir, max_ind_range, test_split)
        else:
            self.data = kaggle_arrays(data_dir, cache_dir, max_ind_range, skip_bad_lines, prepare_workers,
                                      test_split)
        start, stop = self.data.splits["train"]
        self.n_train = stop - start
        if self.n_train < 1:
            raise ValueError(f"task.data_dir={data_dir}: no training rows (the split gives train 6/7 of the rows)")

    def build_model(self) -> nn.Module:
        cfg = self.model_cfg
        return DLRM(self.data.table_sizes, cfg["bottom_mlp"], cfg["top_mlp"], cfg["embedding_dim"])

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        assert isinstance(model, DLRM)
        return [{"params": model.mlp_parameters()},
                {"params": list(model.embeddings.parameters()), "route": EMBEDDINGS_ROUTE}]

    def steps_per_epoch(self) -> int:
        return -(-self.n_train // self.batch_size)  # the reference keeps the last, shorter batch

    def batch(self, rows: np.ndarray | slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Model inputs for the given rows: dense float32, sparse int64 codes, labels float32."""
        d = self.data
        return (torch.from_numpy(np.array(d.dense[rows], dtype=np.float32)).to(self.device),
                torch.from_numpy(np.array(d.sparse[rows], dtype=np.int64)).to(self.device),
                torch.from_numpy(np.array(d.labels[rows], dtype=np.float32)).to(self.device))

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        """`shuffle=total` permutes all training rows per (seed, epoch), as the reference's
        `--data-randomize=total`; `batches` permutes the order of contiguous batch slices; `none` keeps file
        order. Each rank takes its share of every batch."""
        rng = np.random.default_rng([self.seed, epoch])
        steps = self.steps_per_epoch()
        order = rng.permutation(self.n_train) if self.shuffle == "total" else None
        batch_order = rng.permutation(steps) if self.shuffle == "batches" else np.arange(steps)
        for step in range(start, steps):
            lo = int(batch_order[step]) * self.batch_size
            hi = min(lo + self.batch_size, self.n_train)
            bounds = np.linspace(lo, hi, self.world_size + 1).astype(np.int64)
            lo, hi = int(bounds[self.rank]), int(bounds[self.rank + 1])
            rows = np.sort(order[lo:hi]) if order is not None else slice(lo, hi)
            yield self.batch(rows)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, int]:
        dense, sparse, labels = batch
        return F.binary_cross_entropy_with_logits(model(dense, sparse).float(), labels), len(labels)

    @torch.no_grad()
    def score(self, model: nn.Module, split: str) -> dict[str, float]:
        lo, hi = self.data.splits[split]
        probabilities = []
        for start in range(lo, hi, self.eval_batch_size):
            dense, sparse, _ = self.batch(slice(start, min(start + self.eval_batch_size, hi)))
            probabilities.append(torch.sigmoid(model(dense, sparse).float()).cpu().numpy())
        p = np.concatenate(probabilities).astype(np.float64) if probabilities else np.zeros(0)
        y = np.asarray(self.data.labels[lo:hi], dtype=np.float64)
        if len(y) == 0:
            raise ValueError(f"the {split} split is empty: the data has too few rows for the 7-day split")
        metrics = {"accuracy": 100.0 * float(np.mean(np.round(p) == y)),
                   "logloss": float(log_loss(y, p, labels=[0, 1]))}
        if 0 < y.sum() < len(y):  # AUC needs both classes
            metrics["roc_auc"] = float(roc_auc_score(y, p))
        return metrics

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return self.score(model, "val")

    def test(self, model: nn.Module) -> dict[str, float]:
        return self.score(model, "test")

    def data_summary(self) -> dict[str, Any]:
        return {**self.data.summary, "splits": {k: list(v) for k, v in self.data.splits.items()}}

    def close(self) -> None:
        self.data = None  # type: ignore[assignment]  # drop the memory maps
