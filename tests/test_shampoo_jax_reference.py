"""optimizers.Shampoo against the authors' own JAX code (``optax_shampoo.distributed_shampoo``, the PyPI package
of google-research/scalable_shampoo/optax by Rohan Anil), in float64, 20 steps at the reference's defaults.

Runs where the optional extra ``shampoo-reference`` is installed (jax, optax, chex, flax, optax-shampoo; about
470 MB, so not in ``dev``; CI checks the same case against the transcription in test_shampoo_reference.py).
Two shims let the 2022 code run on current JAX, neither touching its arithmetic: the removed aliases
``jax.tree_map``/``tree_flatten``/``tree_unflatten`` point at ``jax.tree_util``'s functions, and the
module's ``lax.while_loop`` casts the initial carry to the body's output dtypes, as JAX once did (the root
iteration starts its error-ratio slot as Python ``True`` and then carries a float, which JAX >= 0.4 refuses).
The initial statistics (``matrix_epsilon * I``) and roots (``I``), which ``init`` makes float32 whatever the
parameters' dtype, start in float64, the dtype the update gives them.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from tests.shampoo_case import LR, STEPS, max_difference, run_ours, run_reference
from tests.test_shampoo_reference import reference_update

optax_shampoo = pytest.importorskip("optax_shampoo.distributed_shampoo",
                                    reason="the shampoo-reference extra (optax-shampoo, jax) is not installed")
jax = pytest.importorskip("jax")


def _reference_module() -> types.ModuleType:
    jax.config.update("jax_enable_x64", True)
    for name in ("tree_map", "tree_flatten", "tree_unflatten"):
        if not hasattr(jax, name):
            setattr(jax, name, getattr(jax.tree_util, name))
    lax = jax.lax

    def while_loop(cond, body, init):
        out = jax.eval_shape(body, init)
        init = jax.tree_util.tree_map(lambda x, o: jax.numpy.asarray(x, o.dtype), init, out)
        return lax.while_loop(cond, body, init)

    names = {k: getattr(lax, k) for k in dir(lax) if not k.startswith("_")}
    optax_shampoo.lax = types.SimpleNamespace(**{**names, "while_loop": while_loop})
    return optax_shampoo


@pytest.mark.slow  # minutes of XLA compilation
@pytest.mark.timeout(1800)
def test_twenty_steps_match_the_authors_jax_code_at_its_defaults() -> None:
    ref = _reference_module()
    tx = ref.distributed_shampoo(LR, block_size=128)  # block_size has no default; 128 is the README's
    jnp = jax.numpy
    state = None

    def update(params, grads):
        nonlocal state
        jparams = [jnp.asarray(p.numpy()) for p in params]
        if state is None:
            state = tx.init(jparams)
            state = state._replace(stats=[s._replace(statistics=[jnp.asarray(m, jnp.float64) for m in s.statistics],
                                                     preconditioners=[jnp.asarray(m, jnp.float64)
                                                                      for m in s.preconditioners])
                                          for s in state.stats])
        updates, state = tx.update([jnp.asarray(g.numpy()) for g in grads], state, jparams)
        return [torch.from_numpy(np.array(p + u)) for p, u in zip(jparams, updates, strict=True)]

    expected = run_reference(update)
    ours, _ = run_ours()
    transcription = run_reference(reference_update())
    differences = {"optimizers.Shampoo": max_difference(ours, expected),
                   "tests/shampoo_reference.py": max_difference(transcription, expected)}
    print(f"max |x - optax_shampoo| after {STEPS} steps: {differences}")
    assert max(differences.values()) < 1e-10
