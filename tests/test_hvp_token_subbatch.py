"""Curvature sub-batches of the tasks whose batches are not plain tensors (NMT token buckets, GLUE's dynamically
padded dicts), and the scale that makes a token-summed loss's sub-batch estimate the full batch's curvature."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from bench.hvp import CurvatureBatch
from tasks.glue.task import head as glue_head
from tasks.glue.task import pad_batch
from tasks.nmt.batching import collate
from tasks.nmt.batching import head as nmt_head
from tasks.tensor_data import TensorClassificationTask

CPU = torch.device("cpu")


def test_nmt_sub_batch_equals_the_bucket_collated_from_its_strided_sentences() -> None:
    rng = np.random.default_rng(0)
    src = [rng.integers(4, 40, size=n) for n in (3, 9, 5, 7, 2, 4)]
    tgt = [rng.integers(4, 40, size=n) for n in (8, 2, 4, 6, 3, 5)]
    ids = np.arange(6)
    got, want = nmt_head(collate(src, tgt, ids, CPU), 0.5), collate(src, tgt, ids[[0, 2, 5]], CPU)
    for name in ("src", "prev", "target", "ids", "src_lens", "tgt_lens"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name  # rows 0, 2, 5; padding trimmed
    assert got.ntokens == want.ntokens == 17
    assert nmt_head(collate(src, tgt, ids, CPU), 0.01).ids.tolist() == [0]  # never empty


def test_glue_sub_batch_equals_the_dynamic_padding_of_its_first_examples() -> None:
    data = SimpleNamespace(input_ids=[[101, 7, 102], [101, 5, 6, 8, 9, 102], [101, 4, 102, 3, 102]],
                           token_type_ids=[[0, 0, 0], [0] * 6, [0, 0, 0, 1, 1]], targets=np.array([1, 0, 1]))
    full = pad_batch(data, [0, 2, 1], pad_id=0, device=CPU)
    got, want = glue_head(full, 0.67), pad_batch(data, [0, 2], pad_id=0, device=CPU)
    assert got.keys() == want.keys()
    for name in want:
        assert torch.equal(got[name], want[name]), name


class SummedLoss(TensorClassificationTask):
    loss_reduction = "sum"

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int]:
        x, y = batch
        return nn.functional.cross_entropy(model(x), y, reduction="sum"), len(y)


def test_a_summed_loss_sub_batch_is_scaled_to_the_full_batch_curvature() -> None:
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 5, generator=generator), torch.randint(0, 3, (4,), generator=generator)
    x, y = torch.cat([x, x]), torch.cat([y, y])  # two identical halves: the full batch's sum is twice the half's
    task = SummedLoss(x, y, x, y, device=CPU, batch_size=8, eval_batch_size=8, seed=0)
    torch.manual_seed(0)
    model = task.build_model()
    batch = (x.double(), y)
    params = list(model.parameters())
    probes = [torch.randn(p.shape, dtype=p.dtype, generator=generator) for p in params]
    full = CurvatureBatch(task, model, batch, mode="double_backward", device=CPU, items=8)(params, probes, False)
    half = task.sub_batch(batch, 0.5)
    scaled = CurvatureBatch(task, model, half, mode="double_backward", device=CPU, items=8)(params, probes, False)
    unscaled = CurvatureBatch(task, model, half, mode="double_backward", device=CPU)(params, probes, False)
    for f, s, u in zip(full, scaled, unscaled, strict=True):
        torch.testing.assert_close(s, f, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(2 * u, f, rtol=1e-12, atol=1e-12)
