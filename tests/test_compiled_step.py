"""The compiled, donated training step copies no parameter-sized buffer.

A full-size ``copy`` in the compiled step is a hidden extra pass over memory (and,
without a free buffer to reuse, fresh pages every step). XLA inserts one when a
step reads an old state buffer after another part of the step has overwritten it
in place. This checks the compiled HLO of every optimizer of the table; no
timing is involved. Lion and Rprop read an old buffer in two places (Lion's
update interpolates with the *old* momentum, Rprop compares signs with the old
gradient), and XLA:CPU, which has no multi-output fusion, copies it: known and
documented in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import optax
import pytest

import adaptix

try:
    from optimizers import OPTIMIZER_PARAMS
except ImportError:  # tests/ imported as a package
    from tests.optimizers import OPTIMIZER_PARAMS

SHAPE = (96, 80)  # a shape nothing else in the step has
KNOWN_COPIES = {"lion": 1, "rprop": 2}


def full_size_copies(opt, dtype=jnp.float32) -> int:
    params = jnp.zeros(SHAPE, dtype)
    grads = jnp.full(SHAPE, 1e-3, dtype)

    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    hlo = jax.jit(step, donate_argnums=(0, 1)).lower(params, opt.init(params), grads).compile().as_text()
    entry = hlo[hlo.index("ENTRY"):]
    return len(re.findall(r"= \w+\[96,80\]\S* copy\(", entry))


@pytest.mark.parametrize("case", OPTIMIZER_PARAMS)
def test_donated_step_copies_no_state_buffer(case):
    assert full_size_copies(case.make()) == KNOWN_COPIES.get(case.id, 0)


@pytest.mark.parametrize("kwargs", [dict(mu_dtype=jnp.bfloat16), dict(mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)])
def test_narrow_moments_are_not_copied(kwargs):
    """Optax's ``adam(mu_dtype=bfloat16)`` copies its first moment every step; adaptix's uses it as stored."""
    assert full_size_copies(adaptix.adam(1e-3, **kwargs)) == 0
    assert full_size_copies(adaptix.nadamw(1e-3, **kwargs)) == 0
