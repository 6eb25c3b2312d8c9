"""The compiled, donated training step copies no parameter-sized buffer.

A full-size ``copy`` in the compiled step is a hidden extra pass over memory (and,
without a free buffer to reuse, fresh pages every step). XLA inserts one when a
step reads an old state buffer after another part of the step has overwritten it
in place. This checks the compiled HLO of every optimizer of the table; no
timing is involved. Lion and Rprop read an old buffer in two places (Lion's
update interpolates with the *old* momentum, Rprop compares signs with the old
gradient), and XLA:CPU, which has no multi-output fusion, copies it: known and
documented in benchmarks/RESULTS.md. A non-elementwise entry (full-matrix AdaGrad)
is checked on a smaller leaf, whose ``n x n`` state matrix is counted too: ``eigh``
overwrites its input with the eigenvectors while the matrix is also the new state,
so it is copied once per step (O(n^2) beside the O(n^3) decomposition).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import optax
import pytest

import adaptix

from optimizers import OPTIMIZER_PARAMS

SHAPE = (96, 80)  # a shape nothing else in the step has
SMALL_SHAPE = (12, 10)  # for an O(n^2) state: a (120, 120) matrix
KNOWN_COPIES = {"lion": 1, "rprop": 2, "full_matrix_adagrad": 1}


def full_size_copies(opt, dtype=jnp.float32, shape=SHAPE) -> int:
    """Copies of a parameter-sized buffer, or of a state leaf at least that large, in the compiled step."""
    params = jnp.zeros(shape, dtype)
    grads = jnp.full(shape, 1e-3, dtype)
    state = opt.init(params)

    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    hlo = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads).compile().as_text()
    entry = hlo[hlo.index("ENTRY"):]
    shapes = {shape} | {jnp.shape(x) for x in jax.tree.leaves(state) if jnp.size(x) >= params.size}
    return sum(len(re.findall(rf"= \w+\[{','.join(map(str, s))}\]\S* copy\(", entry)) for s in shapes)


@pytest.mark.parametrize("case", OPTIMIZER_PARAMS)
def test_donated_step_copies_no_state_buffer(case):
    shape = SHAPE if case.elementwise else SMALL_SHAPE
    assert full_size_copies(case.make(), shape=shape) == KNOWN_COPIES.get(case.id, 0)


@pytest.mark.parametrize("kwargs", [dict(mu_dtype=jnp.bfloat16), dict(mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)])
def test_narrow_moments_are_not_copied(kwargs):
    """Optax's ``adam(mu_dtype=bfloat16)`` copies its first moment every step; adaptix's uses it as stored."""
    assert full_size_copies(adaptix.adam(1e-3, **kwargs)) == 0
    assert full_size_copies(adaptix.nadamw(1e-3, **kwargs)) == 0
