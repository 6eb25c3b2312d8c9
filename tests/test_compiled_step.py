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
so it is copied once per step (O(n^2) beside the O(n^3) decomposition). Moments in 8-bit codes
(``adaptix.quantized``) are updated in place too: no buffer of the parameter's size (codes, or a
float32 temporary of a reshaped leaf) is copied; XLA:CPU copies only the old scales, 4 bytes per
block of 256 entries, which the new scales overwrite before the new codes are computed from them.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptix

from optimizers import OPTIMIZER_PARAMS

SHAPE = (96, 80)  # a shape nothing else in the step has
SMALL_SHAPE = (12, 10)  # for an O(n^2) state: a (120, 120) matrix
# vsgd keeps this step's gradient and parameters for the next secant: two copies into state buffers are
# inherent (neither input is one); XLA orders the overwrite of the two previous-value buffers with four more.
KNOWN_COPIES = {"lion": 1, "rprop": 2, "full_matrix_adagrad": 1, "vsgd": 6}


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


def large_copies(opt, shape) -> list[str]:
    """Every buffer of at least the parameter's number of entries, of any shape and dtype, that the compiled
    donated step copies (a reshaped leaf, ``(blocks, entries per block)``, would escape a test by shape)."""
    params = jnp.zeros(shape)
    state = opt.init(params)

    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    hlo = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, jnp.full(shape, 1e-3)).compile().as_text()
    entry = hlo[hlo.index("ENTRY"):]
    copies = re.findall(r"= (\w+\[[\d,]*\])\S* copy\(", entry)
    size = int(np.prod(shape))
    return [c for c in copies if int(np.prod([int(d) for d in re.findall(r"\d+", c.split("[")[1])] or [1])) >= size]


_Q = adaptix.quantized()  # blocks of 256; the leaves below have 7,680 and 7,857 entries (>= min_size 4096)


@pytest.mark.parametrize("shape", [SHAPE, (97, 81)], ids=["whole-blocks", "padded-block"])
@pytest.mark.parametrize("make", [
    lambda: adaptix.adam(1e-3, mu_dtype=_Q, nu_dtype=_Q),
    lambda: adaptix.nadamw(1e-3, mu_dtype=_Q, nu_dtype=_Q),
    lambda: adaptix.adam(1e-3, nu_dtype=_Q),
    lambda: adaptix.sgd(1e-3, momentum=0.9, accumulator_dtype=_Q),
    lambda: adaptix.chain(adaptix.scale_by_rss(accumulator_dtype=_Q), adaptix.scale_by_learning_rate(1e-3)),
], ids=["adam", "nadamw", "adam-nu-only", "sgd-momentum", "adagrad"])
def test_quantized_moments_are_not_copied(make, shape):
    assert large_copies(make(), shape) == []


def test_large_copies_can_fail():
    """``large_copies`` finds Lion's known copy of its momentum."""
    assert large_copies(adaptix.lion(1e-3), SHAPE) == ["f32[96,80]"]
