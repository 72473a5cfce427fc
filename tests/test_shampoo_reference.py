"""optimizers.Shampoo against the transcription of the authors' distributed_shampoo (tests/shampoo_reference.py)
in float64 on the same net, batches and 20 steps: at the reference's defaults and with the options changed
(per-dimension statistics, RMSProp graft, averaged momentum, roots every 3 steps, no Nesterov)."""

from __future__ import annotations

import pytest

from tests import shampoo_reference as ref
from tests.shampoo_case import LR, STEPS, max_difference, run_ours, run_reference

VARIANTS = {
    "reference defaults": ({}, {}),
    "per-dimension, rmsprop graft, averaged momentum": (  # lr 1e-3: RMSProp steps are lr/sqrt(1 - beta2) at first
        dict(lr=1e-3, merge_small_dims=False, graft="rmsprop", moving_average_for_momentum=True, nesterov=False,
             preconditioning_compute_steps=3, start_preconditioning_step=2, betas=(0.9, 0.99), block_size=64),
        dict(lr=1e-3, best_effort_shape_interpretation=False, graft_type=ref.RMSPROP, moving_average_for_momentum=True,
             nesterov=False, preconditioning_compute_steps=3, start_preconditioning_step=2, beta2=0.99)),
}


def reference_update(lr: float = LR, block_size: int = 128, **kwargs: object):
    init_fn, update_fn = ref.distributed_shampoo(lr, block_size, **kwargs)
    state = None

    def update(params, grads):
        nonlocal state
        state = init_fn(params) if state is None else state
        updates, state = update_fn(grads, state, params)
        return [p + u for p, u in zip(params, updates, strict=True)]

    return update


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_twenty_float64_steps_match_the_reference(variant: str) -> None:
    ours_kwargs, ref_kwargs = VARIANTS[variant]
    if "block_size" in ours_kwargs:
        ref_kwargs = {**ref_kwargs, "block_size": ours_kwargs["block_size"]}
    expected = run_reference(reference_update(**ref_kwargs))
    ours, _ = run_ours(**ours_kwargs)
    difference = max_difference(ours, expected)
    print(f"{variant}: max |ours - reference| after {STEPS} steps = {difference:.3e}")
    assert difference < 1e-10
