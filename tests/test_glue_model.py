"""HF SqueezeBERT on GLUE: Hessian-vector products, training with adamw and adahessian, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import SqueezeBertConfig, SqueezeBertForSequenceClassification

from tasks.glue.task import GlueTask
from tests.glue_data import one_thread, real_task_dir  # noqa: F401 (fixture)
from tests.runs import run

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
        "vocab_size": 1000}
TINY_OVERRIDES = [f"task.model_config.{k}={v}" for k, v in TINY.items()]


def tiny_task(data_dir: Path, glue_task: str = "sst2", **kwargs: object) -> GlueTask:
    return GlueTask(glue_task=glue_task, data_dir=str(data_dir), model_config=dict(TINY), max_train_examples=64,
                    device=torch.device("cpu"), batch_size=16, eval_batch_size=64, seed=0, **kwargs)


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


@pytest.mark.parametrize("optimizer,lr", [("adamw", "3e-3"), ("adahessian", "0.05")])
def test_tiny_random_squeezebert_learns_sst2(tmp_path: Path, optimizer: str, lr: str) -> None:
    """200 steps of a 2-layer, hidden-64 model with a WordPiece vocabulary built from the data: loss falls."""
    record = run(tmp_path, "task=glue_squeezebert", "task.glue_task=sst2", f"task.data_dir={real_task_dir('SST-2')}",
                 f"optimizer={optimizer}", f"optimizer.lr={lr}", "task.max_train_examples=640", "task.max_length=48",
                 "trainer.epochs=5", "trainer.device=cpu", "trainer.schedule.name=constant", *TINY_OVERRIDES)
    assert record["status"] == "completed", record["error"]
    assert record["task"] == "glue_sst2" and record["metric"]["name"] == "accuracy"
    assert record["cost"]["steps"] == 200
    losses = [row["train_loss"] for row in record["history"]]
    assert losses[-1] < 0.9 * losses[0], losses
    assert 0 <= record["metric"]["final"] <= 100
    if optimizer == "adahessian":
        assert record["cost"]["hvp_count"] == 200
