"""adaptix.packed: the same updates from a few flat buffers instead of many small leaves."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptix

from optimizers import OPTIMIZER_PARAMS

MAX = 16  # leaves with more than 16 entries stay unpacked


def _tree(rng, scale=1.0):
    return {
        "large": jnp.asarray(rng.normal(size=(6, 5)) * scale, jnp.float32),  # 30 > MAX
        "layer": {"bias": jnp.asarray(rng.normal(size=3) * scale, jnp.float32),
                  "kernel": jnp.asarray(rng.normal(size=(2, 2)) * scale, jnp.float32)},
        "scalar": jnp.asarray(rng.normal() * scale, jnp.float32),
        "half": jnp.asarray(rng.normal(size=4) * scale, jnp.bfloat16),
        "empty": jnp.zeros((0,), jnp.float32),
    }


def _run(opt, steps=6, seed=0, jit=True):
    rng = np.random.default_rng(seed)
    params = _tree(rng)
    state = opt.init(params)
    step = jax.jit(opt.update) if jit else opt.update
    out = []
    for _ in range(steps):
        updates, state = step(_tree(rng, 0.1), state, params)
        params = optax.apply_updates(params, updates)
        out.append(updates)
    return out, state


def _assert_same(a, b, ulps, leaf_scale=False):
    """Equal trees, to ``ulps`` units in the last place of each leaf's dtype (0: bit for bit).

    With ``leaf_scale`` a unit is one of the leaf's largest entry: the error of an entry that
    comes out of a cancellation is bounded by the size of what cancelled, not by its own."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        x32, y32 = np.asarray(x, np.float32), np.asarray(y, np.float32)
        if ulps == 0:
            np.testing.assert_array_equal(x32, y32)
        else:
            size = np.max(np.abs(x32), initial=0.0) if leaf_scale else np.abs(x32)
            spacing = np.maximum(size, np.finfo(np.float32).tiny) * float(jnp.finfo(x.dtype).eps)
            assert np.all(np.abs(x32 - y32) <= ulps * spacing), (x32, y32)


@pytest.mark.parametrize("case", OPTIMIZER_PARAMS)
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_packed_gives_the_same_updates(case, jit):
    """The packed step does the same arithmetic on every coordinate as the plain one. It is
    not always bit for bit: XLA:CPU computes a leaf of 4 and a vector of 8 in different loops
    (vectorised bodies and scalar tails, fused multiply-adds, a division by a reciprocal
    refined once), which can move a result by one unit in the last place; the plain chain
    does the same between two tree layouts. A global norm (``chain_clipped_adam``) is also
    summed in another order. AdaBayes-FP adds its weight decay to a step of about the same
    size, Adam+L2 its decay to the gradient: where the two nearly cancel, one ulp of either is
    many of the sum, so these are compared in units of the leaf's largest entry."""
    if not case.elementwise:
        pytest.skip(f"{case.id}: not elementwise: packed into one vector, leaves share one matrix: other updates")
    if case.quantized:
        pytest.skip(f"{case.id}: 8-bit blocks of the packed vector span several leaves, so they have other scales "
                    "(tests/test_quantized.py checks packed quantized moments to their quantization error)")
    ulps = {"chain_clipped_adam": 8, "adabayes_fp": 4, "chain_adam_l2": 4}.get(case.id, 2)
    cancelling = case.id in ("adabayes_fp", "chain_adam_l2")
    plain, _ = _run(case.make(), jit=jit)
    packed, state = _run(adaptix.packed(case.make(), max_leaf_size=MAX), jit=jit)
    for a, b in zip(plain, packed):
        _assert_same(a, b, ulps, leaf_scale=cancelling)
    assert isinstance(state, adaptix.PackedState)


def test_state_is_one_vector_per_dtype_for_the_small_leaves():
    opt = adaptix.packed(adaptix.adam(1e-3), max_leaf_size=MAX)
    state = opt.init(_tree(np.random.default_rng(0)))
    mu = optax.tree_utils.tree_get(state, "mu")
    assert [x.shape for x in mu["large"]] == [(6, 5)]
    # tree order: empty, half, layer/bias, layer/kernel, scalar -> float32: 0 + 3 + 4 + 1
    assert {k: v.shape for k, v in mu["small"].items()} == {"float32": (8,), "bfloat16": (4,)}
    n_plain = len(jax.tree.leaves(adaptix.adam(1e-3).init(_tree(np.random.default_rng(0)))))
    assert len(jax.tree.leaves(state)) < n_plain


def test_packed_stage_measures_the_chains_gradient():
    """Inside a chain the packed stage still gets ``grad``: RMSProp+momentum's scale measures g, not the trace."""
    rms = lambda: adaptix.scale_by_rms(0.9, 1e-8, bias_correction=True)
    plain = adaptix.chain(adaptix.trace(0.9), rms(), adaptix.scale_by_learning_rate(0.1))
    packed = adaptix.chain(adaptix.trace(0.9), adaptix.packed(rms(), max_leaf_size=MAX),
                           adaptix.scale_by_learning_rate(0.1))
    for a, b in zip(_run(plain)[0], _run(packed)[0]):
        _assert_same(a, b, 2)


def test_mismatched_trees_name_both_structures():
    opt = adaptix.packed(adaptix.adamw(1e-3))
    params = {"a": jnp.ones(2), "b": jnp.ones(3)}
    state = opt.init(params)
    with pytest.raises(ValueError, match="packed: the updates tree.*params"):
        opt.update({"a": jnp.ones(2)}, state, params)


@pytest.mark.parametrize("bad", [-1, 2.5, True, "8"])
def test_validation(bad):
    with pytest.raises(ValueError, match=r"packed: max_leaf_size must be an int in \[0, inf\), got "):
        adaptix.packed(adaptix.adam(1e-3), max_leaf_size=bad)
    with pytest.raises(TypeError, match="packed: inner must be an optax.GradientTransformation, got function"):
        adaptix.packed(lambda g: g)
