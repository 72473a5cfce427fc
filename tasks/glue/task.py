"""SqueezeBERT fine-tuning on one GLUE task: `task=glue_squeezebert task.glue_task=rte`.

Examples are tokenized once (truncated to `max_length`, not padded); each batch is padded to its own longest
sequence, so short-sentence tasks do not pay for 128 tokens. The order of batches depends only on
(seed, epoch). Scores are GLUE's official metrics on the dev set(s), in percent; MNLI scores matched and
mismatched from one training run (`accuracy` is the selected one, `accuracy_<m|mm>` the other).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerBase, SqueezeBertForSequenceClassification

from tasks.base import DataError, Metric, Task
from tasks.glue import metrics
from tasks.glue.model import check_pretrained_folder, load_model, load_tokenizer, random_config, train_wordpiece
from tasks.glue.specs import GlueSpec, spec_for
from tasks.glue.tsv import Split, read_task

DEFAULT_VOCAB = 30522  # BERT's uncased vocabulary size: the WordPiece target of a random model
Batch = dict[str, torch.Tensor]


class Examples:
    """Token ids and segment ids per example, and the targets (class ids or float scores)."""

    def __init__(self, input_ids: list[list[int]], token_type_ids: list[list[int]], targets: np.ndarray) -> None:
        self.input_ids, self.token_type_ids, self.targets = input_ids, token_type_ids, targets

    def __len__(self) -> int:
        return len(self.input_ids)


def targets_of(split: Split, spec: GlueSpec) -> np.ndarray:
    assert split.labels is not None
    if spec.labels is None:
        return np.asarray([float(y) for y in split.labels], dtype=np.float32)
    index = {label: i for i, label in enumerate(spec.labels)}
    return np.asarray([index[y] for y in split.labels], dtype=np.int64)


def pad_batch(data: Examples, idx: np.ndarray | list[int], pad_id: int, device: torch.device) -> Batch:
    """Pad the chosen examples to the longest of them (dynamic padding)."""
    width = max(len(data.input_ids[i]) for i in idx)
    ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    types = torch.zeros((len(idx), width), dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    for row, i in enumerate(idx):
        n = len(data.input_ids[i])
        ids[row, :n] = torch.tensor(data.input_ids[i])
        types[row, :n] = torch.tensor(data.token_type_ids[i])
        mask[row, :n] = 1
    labels = torch.from_numpy(data.targets[np.asarray(idx)])
    return {k: v.to(device) for k, v in
            {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": labels}.items()}


def head(batch: Batch, fraction: float) -> Batch:
    """The first `fraction` of the examples (at least one), padded to their own longest: the curvature
    sub-batch (`trainer.hessian_batch_fraction`) under dynamic padding."""
    k = max(1, int(len(batch["labels"]) * fraction))
    width = int(batch["attention_mask"][:k].sum(1).max())
    return {name: t[:k] if name == "labels" else t[:k, :width] for name, t in batch.items()}


class GlueTask(Task):
    """One GLUE task on HF SqueezeBERT; `pretrained=None` trains a random model from `model_config`."""

    throughput_unit = "examples"

    def __init__(self, glue_task: str, data_dir: str | None, pretrained: str | None = None,
                 model_config: dict[str, Any] | None = None, max_length: int = 128, skip_bad_rows: bool = False,
                 max_train_examples: int = 0, synthetic: int = 0, **runtime: Any) -> None:
        super().__init__(**runtime)
        self.spec = spec_for(glue_task)
        self.metric = Metric(self.spec.primary, "max", "")
        self.max_length = max_length
        self.model_config = {k: v for k, v in (model_config or {}).items() if v is not None}
        if max_length < 8:
            raise DataError(f"task.max_length={max_length}: must be >= 8 (the paper uses 128)")
        self.skipped: dict[str, list[int]] = {}
        self.folder = check_pretrained_folder(pretrained) if pretrained else None
        self.tokenizer: PreTrainedTokenizerBase | None = None
        if synthetic > 0:
            self.vocab_size = self.model_config.get("vocab_size", DEFAULT_VOCAB)
            self.train, self.devs = self.random_data(synthetic)
        else:
            if not data_dir:
                raise DataError("task.data_dir is not set: point it at the glue_data folder (or set $GLUE_DIR)")
            train, devs = read_task(data_dir, self.spec, skip_bad_rows)
            if max_train_examples > 0:
                train = truncate(train, max_train_examples)
            self.skipped = {s.path.name: s.skipped_lines for s in (train, *devs.values()) if s.skipped_lines}
            self.tokenizer = (load_tokenizer(self.folder) if self.folder else
                              train_wordpiece(train.text_a + (train.text_b or []),
                                              self.model_config.get("vocab_size", DEFAULT_VOCAB)))
            self.vocab_size = len(self.tokenizer)
            self.train = self.encode(train)
            self.devs = {prefix: self.encode(split) for prefix, split in devs.items()}
        self.pad_id = 0 if self.tokenizer is None else self.tokenizer.pad_token_id
        if self.batch_size % self.world_size:
            raise ValueError(f"trainer.batch_size={self.batch_size} must be divisible by the "
                             f"{self.world_size} processes of the run")

    # ---- data ----------------------------------------------------------------------------------------------

    def encode(self, split: Split) -> Examples:
        enc = self.tokenizer(split.text_a, split.text_b, truncation=True, max_length=self.max_length)
        return Examples(enc["input_ids"], enc["token_type_ids"], targets_of(split, self.spec))

    def random_data(self, n: int) -> tuple[Examples, dict[str, Examples]]:
        """Random token ids of random lengths up to `max_length`: the real shapes, for bench perf only."""
        rng = np.random.default_rng(0)

        def make(count: int) -> Examples:
            lengths = rng.integers(8, self.max_length + 1, count)
            ids = [rng.integers(5, self.vocab_size, k).tolist() for k in lengths]
            types = [[0] * (k // 2) + [1] * (k - k // 2) for k in lengths]
            targets = (rng.uniform(0, 5, count).astype(np.float32) if self.spec.is_regression
                       else rng.integers(0, self.spec.num_labels, count))
            return Examples(ids, types, targets)

        return make(n), {prefix: make(max(1, n // 10)) for prefix, _ in self.spec.dev_files}

    def data_summary(self) -> dict[str, Any]:
        return {"train_examples": len(self.train), "dev_examples": {p: len(d) for p, d in self.devs.items()},
                "vocab_size": self.vocab_size, "skipped_rows": {k: len(v) for k, v in self.skipped.items()},
                "skipped_lines": {k: v[:20] for k, v in self.skipped.items()}}

    # ---- model ---------------------------------------------------------------------------------------------

    def build_model(self) -> nn.Module:
        """A fresh model each call (bench perf builds several): the checkpoint's weights, or a seeded random init."""
        torch.manual_seed(self.seed)  # the random init, and the fresh head of a checkpoint with another head
        if self.folder is not None:
            return load_model(self.folder, self.spec.num_labels, self.model_config)
        return SqueezeBertForSequenceClassification(random_config(self.model_config, self.spec.num_labels,
                                                                  self.vocab_size))

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """BERT fine-tuning's groups: no weight decay on biases and LayerNorm weights."""
        norms = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if id(p) in norms or name.endswith("bias") else decay).append(p)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    # ---- training ------------------------------------------------------------------------------------------

    def steps_per_epoch(self) -> int:
        return len(self.train) // self.batch_size  # the ragged last batch is dropped

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(self.train), generator=generator).numpy()
        local = self.batch_size // self.world_size
        for step in range(start, self.steps_per_epoch()):
            first = step * self.batch_size + self.rank * local
            yield pad_batch(self.train, order[first:first + local], self.pad_id, self.device)

    def sub_batch(self, batch: Batch, fraction: float) -> Batch:
        return head(batch, fraction)

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
        logits = model(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                       attention_mask=batch["attention_mask"]).logits
        return self.objective(logits, batch["labels"]), len(batch["labels"])

    def objective(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.spec.is_regression:
            return F.mse_loss(logits.squeeze(-1).float(), labels.float())
        return F.cross_entropy(logits.float(), labels)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        out: dict[str, float] = {}
        for i, (prefix, data) in enumerate(self.devs.items()):
            scores = self.score(model, data)
            out.update(scores if i == 0 else {f"{k}_{prefix}": v for k, v in scores.items()})
        return out

    def score(self, model: nn.Module, data: Examples) -> dict[str, float]:
        preds, total = [], 0.0
        for first in range(0, len(data), self.eval_batch_size):
            batch = pad_batch(data, list(range(first, min(first + self.eval_batch_size, len(data)))), self.pad_id,
                              self.device)
            logits = model(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                           attention_mask=batch["attention_mask"]).logits.float()
            total += self.objective(logits, batch["labels"]).item() * len(batch["labels"])
            preds.append(logits.squeeze(-1) if self.spec.is_regression else logits.argmax(-1))
        pred = torch.cat(preds).cpu().numpy()
        return metrics.score(self.spec.metrics, pred, data.targets) | {"loss": total / len(data)}


def truncate(split: Split, n: int) -> Split:
    """The first `n` training examples (quick studies and tests); dev sets are never cut."""
    return Split(split.path, split.text_a[:n], None if split.text_b is None else split.text_b[:n],
                 None if split.labels is None else split.labels[:n], split.skipped_lines)
