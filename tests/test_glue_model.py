"""HF SqueezeBERT on GLUE: Hessian-vector products, training with adamw and adahessian, checkpoints."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import SqueezeBertConfig, SqueezeBertForSequenceClassification

from bench.checkpoint import load_checkpoint
from tasks.glue.task import GlueTask
from tests.glue_data import real_task_dir
from tests.runs import run
from tests.threads import one_intraop_thread


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with one_intraop_thread():
        yield


TINY = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
        "vocab_size": 1000}
TINY_OVERRIDES = [f"task.model_config.{k}={v}" for k, v in TINY.items()]


def tiny_task(data_dir: Path, glue_task: str = "sst2", **kwargs: object) -> GlueTask:
    options = {"model_config": dict(TINY), "max_train_examples": 64} | kwargs
    return GlueTask(glue_task=glue_task, data_dir=str(data_dir), device=torch.device("cpu"), batch_size=16,
                    eval_batch_size=64, seed=0, **options)


def test_hessian_vector_product_runs_on_hf_squeezebert() -> None:
    """Double backward through the conv1d attention: Hv from autograd equals a central difference of gradients."""
    torch.manual_seed(0)
    config = SqueezeBertConfig(**TINY, embedding_size=64, num_labels=2, hidden_dropout_prob=0.0,
                               attention_probs_dropout_prob=0.0)
    model = SqueezeBertForSequenceClassification(config).double().eval()
    ids = torch.randint(5, 1000, (4, 12))
    labels = torch.tensor([0, 1, 1, 0])
    params = [p for p in model.parameters()]

    def grads() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(model(input_ids=ids, labels=labels).loss, params, create_graph=True)

    g = grads()
    v = [torch.randint_like(p, 0, 2) * 2 - 1 for p in params]  # a Rademacher probe
    hv = torch.autograd.grad(g, params, v)
    eps = 1e-5
    with torch.no_grad():
        for p, d in zip(params, v, strict=True):
            p.add_(eps * d)
    g_plus = [t.detach() for t in grads()]
    with torch.no_grad():
        for p, d in zip(params, v, strict=True):
            p.sub_(2 * eps * d)
    g_minus = [t.detach() for t in grads()]
    for name, h, gp, gm in zip([n for n, _ in model.named_parameters()], hv, g_plus, g_minus, strict=True):
        torch.testing.assert_close(h, (gp - gm) / (2 * eps), rtol=1e-4, atol=1e-6, msg=name)
    conv = dict(zip([n for n, _ in model.named_parameters()], hv, strict=True))
    assert conv["transformer.encoder.layers.0.attention.query.weight"].abs().sum() > 0  # the conv1d attention


SST2_SUBSET = ["task=glue_squeezebert", "task.glue_task=sst2", "task.max_train_examples=640", "task.max_length=48",
               "trainer.device=cpu", "trainer.schedule.name=constant", "trainer.deterministic=true", *TINY_OVERRIDES]


def train_losses(record: dict) -> list[float]:
    assert record["status"] == "completed", record["error"]
    return [row["train_loss"] for row in record["history"]]


@pytest.fixture(scope="module")
def adamw_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """160 AdamW steps of a random 2-layer, hidden-64 SqueezeBERT whose WordPiece vocabulary is built from SST-2,
    through the runner; returns the record and the model saved in HF layout from the run's checkpoint."""
    runs = tmp_path_factory.mktemp("runs")
    record = run(runs, *SST2_SUBSET, f"task.data_dir={real_task_dir('SST-2')}", "optimizer=adamw",
                 "optimizer.lr=3e-3", "trainer.epochs=4")
    task = tiny_task(real_task_dir("SST-2"), max_train_examples=640, max_length=48)
    assert task.vocab_size == record["data"]["vocab_size"]  # the same vocabulary, rebuilt from the same split
    model = task.build_model()
    model.load_state_dict(load_checkpoint(runs / record["study"] / record["run_id"]).payload["model"])
    folder = tmp_path_factory.mktemp("warm-squeezebert")
    model.save_pretrained(folder)
    task.tokenizer.save_pretrained(folder)
    return record, folder


def test_adamw_trains_a_tiny_random_squeezebert(adamw_run: tuple[dict, Path]) -> None:
    record = adamw_run[0]
    assert record["task"] == "glue_sst2" and record["metric"]["name"] == "accuracy"
    assert record["cost"]["steps"] == 160 and record["cost"]["throughput_unit"] == "examples"
    losses = train_losses(record)
    assert losses[-1] < 0.75 * losses[0], losses
    assert record["data"]["train_examples"] == 640 and record["data"]["dev_examples"] == {"dev": 872}


def test_adahessian_fine_tunes_the_saved_model(adamw_run: tuple[dict, Path], tmp_path: Path) -> None:
    """AdaHessian fine-tunes, as in the paper: from a checkpoint (here the AdamW one) through task.pretrained.
    From a random init it sits on the initial plateau far longer than AdamW (a Newton-like step is small where
    the gradient is small), which is why the paper's setting, and this test, start from trained weights."""
    record = run(tmp_path, *SST2_SUBSET, f"task.data_dir={real_task_dir('SST-2')}", "optimizer=adahessian",
                 "optimizer.lr=0.05", "trainer.epochs=3", f"task.pretrained={adamw_run[1]}")
    losses = train_losses(record)
    assert record["cost"]["steps"] == 120 and record["cost"]["hvp_count"] == 120
    assert losses[-1] < 0.9 * losses[0], losses
    assert record["config"]["optimizer"]["block_size"] == 4  # the GLUE recipe


def test_batches_are_padded_to_their_longest_example() -> None:
    task = tiny_task(real_task_dir("SST-2"), max_train_examples=160)
    batches = list(task.train_batches(0))
    assert len(batches) == task.steps_per_epoch() == 10
    widths = {b["input_ids"].shape[1] for b in batches}
    assert max(widths) < 128 and len(widths) > 1  # short SST-2 phrases: no batch pays for 128 tokens
    for b in batches:
        assert (b["attention_mask"].sum(1).max() == b["input_ids"].shape[1]).item()
    assert [b["labels"].tolist() for b in task.train_batches(0, start=7)] == [b["labels"].tolist() for b in batches[7:]]
    assert [b["labels"].tolist() for b in task.train_batches(1)] != [b["labels"].tolist() for b in batches]


def test_synthetic_batches_have_the_real_shapes() -> None:
    """bench perf's path: random token sequences up to max_length, no data folder needed."""
    task = GlueTask(glue_task="stsb", data_dir=None, synthetic=64, model_config=dict(TINY), device=torch.device("cpu"),
                    batch_size=16, eval_batch_size=64, seed=0)
    batch = next(iter(task.train_batches(0)))
    assert batch["input_ids"].shape[0] == 16 and batch["input_ids"].shape[1] <= 128
    assert batch["labels"].dtype == torch.float32  # STS-B regresses a score
    model = task.build_model()
    loss, n = task.loss(model, batch)
    assert n == 16 and torch.isfinite(loss)
    assert set(task.evaluate(model.eval())) == {"pearson", "spearman", "loss"}
