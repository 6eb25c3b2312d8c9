"""Moments in 8-bit codes (``adaptix.quantized``) against an independent NumPy reference.

The reference below is written from the documented definition only (the code maps from their
exponent/fraction layout, the blocks from the partition rule, the nearest code by brute force over
the whole map), not from the module's arithmetic coder. It checks the round trip (codes and
scales; the error of every entry at most half the map's largest gap times its block's maximum),
odd sizes, 0-d and empty leaves, bf16/f16/f32 parameters, zero and non-finite blocks, Adam's step
from the stored state, and how the storage composes (jit, ``apply_if_finite``, ``packed``,
``inject_hyperparams``, ``nnx.Optimizer``, Optax's conversion). Donation is in
``tests/test_compiled_step.py``, resume in ``tests/test_resume.py``, the contract in the table.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import adaptix

#: The coder under test, compiled once per shape: ``(x, number of blocks, signed) -> QuantizedArray``.
_QUANTIZE = jax.jit(adaptix._quantized.quantize, static_argnums=(1, 2))

# ----------------------------------------------------------------------------
# The reference.
# ----------------------------------------------------------------------------


def reference_map(signed: bool) -> np.ndarray:
    """The code values, from the definition: after the sign, E zeros, an indicator one, F fraction bits,
    q = base^-E (1/base + (1 - 1/base)(k + 1)/2^F); signed: E + F = 6, base 8; unsigned: E + F = 7, base 16."""
    total, base = (6, 8.0) if signed else (7, 16.0)
    values = [0.0]
    for exponent in range(total, -1, -1):  # smallest decade first: increasing values
        fraction_bits = total - exponent
        for k in range(2 ** fraction_bits):
            values.append(base ** -exponent * (1 / base + (1 - 1 / base) * (k + 1) / 2 ** fraction_bits))
    return np.array(values)


def blocks_of(size: int, block_size: int) -> tuple[int, int]:
    """(number of blocks, entries per block): ceil(n / b) blocks of ceil(n / B) consecutive entries."""
    count = -(-size // block_size)
    return count, -(-size // count)


def reference_quantize(x: np.ndarray, block_size: int, signed: bool):
    """(codes, scales, values read back) of ``x`` (float64), by the nearest code of the whole map."""
    flat = np.asarray(x, np.float64).ravel()
    count, length = blocks_of(flat.size, block_size)
    blocks = np.pad(flat, (0, count * length - flat.size)).reshape(count, length)
    magnitude = np.abs(blocks) if signed else np.maximum(blocks, 0.0)
    with np.errstate(invalid="ignore"):
        scales = magnitude.max(axis=1)
        finite = np.isfinite(scales)
        positive = finite[:, None] & (scales[:, None] > 0)
        ratio = np.where(positive, magnitude / np.where(scales > 0, scales, 1)[:, None], 0)
    table = reference_map(signed)
    index = np.abs(ratio[..., None] - table).argmin(axis=-1)
    if not signed:
        index = np.where(ratio > 0, np.maximum(index, 1), index)  # a positive entry is never stored as 0
    codes = np.where(blocks < 0, -index, index)
    scales = np.where(finite, scales, np.nan)
    values = np.sign(codes) * table[np.abs(codes)] * scales[:, None]
    size = flat.size
    return codes.ravel()[:size].reshape(x.shape), scales, values.ravel()[:size].reshape(x.shape)


def half_largest_gap(signed: bool) -> float:
    return float(np.diff(reference_map(signed)).max()) / 2


def assert_matches_reference(stored, x, block_size, signed, rounding=0.0):
    """Scales exact; codes the reference's except at a tie (the two nearest codes within rounding of
    each other); every value within half the largest gap of its block's maximum. ``rounding``: the
    relative error of ``x`` itself (0 where ``x`` is exactly what was stored; float32's where the
    reference computed ``x`` in float64 and adaptix in float32)."""
    codes_ref, scales_ref, values_ref = reference_quantize(x, block_size, signed)
    codes, scales = np.asarray(stored.codes), np.asarray(stored.scales)
    assert codes.dtype == (np.int8 if signed else np.uint8) and codes.shape == np.shape(x)
    np.testing.assert_allclose(scales, scales_ref.astype(np.float32), rtol=rounding, atol=0)
    values = np.asarray(adaptix.dequantize(stored), np.float64)
    finite = np.isfinite(values_ref)
    differ = (codes.astype(np.int64) != codes_ref) & finite
    if differ.any():  # only at ties: both codes equally near, to float32 rounding
        np.testing.assert_allclose(np.abs(values - np.asarray(x, np.float64))[differ],
                                   np.abs(values_ref - np.asarray(x, np.float64))[differ], rtol=1e-5 + 100 * rounding,
                                   atol=1e-30)
    count, length = blocks_of(np.size(x), block_size)
    per_entry = np.repeat(scales_ref, length)[: np.size(x)].reshape(np.shape(x))
    bound = half_largest_gap(signed) * per_entry * (1 + 1e-6 + 100 * rounding)
    error = np.abs(values - np.asarray(x, np.float64))
    assert np.all(error[finite] <= bound[finite]), np.max(error[finite] / np.maximum(bound[finite], 1e-300))
    np.testing.assert_array_equal(np.isnan(values), ~finite)


# ----------------------------------------------------------------------------
# The map and the spec.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_code_map_is_the_documented_one(signed):
    table = reference_map(signed)
    assert len(table) == (128 if signed else 256)
    assert np.all(np.diff(table) > 0) and table[0] == 0 and table[-1] == 1
    assert table[1] == (2.0 ** -18 if signed else 2.0 ** -28)
    np.testing.assert_array_equal(table.astype(np.float32), table)  # dyadic: exact in float32
    # every code reads back as its value: quantize the map itself, one block whose maximum is 1
    stored = _QUANTIZE(jnp.asarray(table, jnp.float32), 1, signed)
    np.testing.assert_array_equal(np.asarray(stored.codes), np.arange(len(table)))
    np.testing.assert_array_equal(np.asarray(adaptix.dequantize(stored)), table)


def test_spec_is_static_and_checked():
    q = adaptix.quantized(block_size=64, min_size=0)
    same = adaptix.quantized(block_size=64, min_size=0)
    assert q == same and hash(q) == hash(same) and q is not same
    assert all(isinstance(v, (int, bool, type(None))) for v in dataclasses.astuple(q))
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.block_size = 8
    with pytest.raises(ValueError, match="bits must be 8, got 4.*measured"):
        adaptix.quantized(bits=4)
    with pytest.raises(ValueError, match="block_size"):
        adaptix.quantized(block_size=0)
    with pytest.raises(ValueError, match="min_size"):
        adaptix.quantized(min_size=-1)
    with pytest.raises(TypeError, match="signed"):
        adaptix.quantized(signed=1)
    with pytest.raises(ValueError, match="adam: mu_dtype is quantized\\(signed=False\\).*negative"):
        adaptix.adam(1e-3, mu_dtype=adaptix.quantized(signed=False))
    with pytest.raises(TypeError, match="adaptix.quantized"):
        adaptix.adam(1e-3, nu_dtype="8bit")
    adaptix.adam(1e-3, nu_dtype=adaptix.quantized(signed=True))  # a sign bit spent on a second moment: allowed


# ----------------------------------------------------------------------------
# Round trips against the reference (hypothesis: shapes, dtypes, block sizes).
# ----------------------------------------------------------------------------

# Shapes drawn from a fixed set, so that the compiled coder is reused between examples: sizes that the
# block sizes divide and that they do not, 0-d (one entry) and empty leaves.
SHAPES = st.sampled_from([(), (0,), (5,), (3, 3), (7, 5), (2, 3, 4), (4, 64)])
DTYPES = st.sampled_from([jnp.float32, jnp.bfloat16, jnp.float16])


def _values(data, shape, dtype):
    size = int(np.prod(shape, dtype=np.int64))
    magnitudes = data.draw(st.lists(st.floats(-8, 2), min_size=size, max_size=size))
    signs = data.draw(st.lists(st.sampled_from([-1.0, 1.0, 0.0]), min_size=size, max_size=size))
    x = np.asarray(signs, np.float64) * 10.0 ** np.asarray(magnitudes, np.float64)
    return jnp.asarray(x.reshape(shape), dtype)


@settings(max_examples=30, deadline=None)
@given(data=st.data(), shape=SHAPES, dtype=DTYPES, block_size=st.sampled_from([1, 4, 7, 256]))
def test_round_trip_matches_reference(data, shape, dtype, block_size):
    """Values over ten decades, of each sign and 0, in bf16/f16/f32, both maps."""
    g = _values(data, shape, dtype)
    x = np.asarray(g, np.float64)
    if x.size == 0:
        return  # an empty leaf is never quantized: test_small_and_empty_leaves_stay_float32
    count = blocks_of(x.size, block_size)[0]
    x32 = jnp.asarray(g, jnp.float32)  # exact: the coder reads any float dtype in float32
    assert_matches_reference(_QUANTIZE(x32, count, True), x, block_size, signed=True)
    assert_matches_reference(_QUANTIZE(jnp.abs(x32), count, False), np.abs(x), block_size, signed=False)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16], ids=["f32", "bf16", "f16"])
def test_stages_store_what_the_reference_stores(dtype):
    """A momentum stage with decay 0 stores its input (signed map); Adamax's norm with decay and eps 0 stores
    ``|g|`` (unsigned map): the stages reach the coder with the moments of bf16/f16 parameters read in float32."""
    g = jnp.asarray(np.random.default_rng(0).normal(size=(7, 5)) * 10.0 ** np.arange(-3, 2), dtype)
    q = adaptix.quantized(block_size=4, min_size=0)
    signed_stage = adaptix.trace(0.0, accumulator_dtype=q)
    unsigned_stage = adaptix.scale_by_inf_norm(0.0, eps=0.0, accumulator_dtype=q)
    _, signed_state = signed_stage.update(g, signed_stage.init(g))
    _, unsigned_state = unsigned_stage.update(g, unsigned_stage.init(g))
    assert_matches_reference(signed_state.trace, np.asarray(g, np.float64), 4, signed=True)
    assert_matches_reference(unsigned_state.nu, np.abs(np.asarray(g, np.float64)), 4, signed=False)


def test_small_and_empty_leaves_stay_float32():
    params = {"empty": jnp.zeros((2, 0), jnp.bfloat16), "small": jnp.zeros(3, jnp.bfloat16),
              "large": jnp.zeros(5, jnp.bfloat16), "z": jnp.zeros(5, jnp.complex64)}
    q = adaptix.quantized(block_size=4, min_size=5)
    mu = adaptix.trace(0.9, accumulator_dtype=q).init(params).trace
    nu = adaptix.scale_by_rms(accumulator_dtype=q).init(params).nu
    assert {k: jnp.result_type(v) for k, v in mu.items() if k != "large"} == {
        "empty": jnp.float32, "small": jnp.float32, "z": jnp.complex64}  # a complex first moment stays complex
    assert isinstance(mu["large"], adaptix.QuantizedArray) and mu["large"].scales.shape == (2,)
    assert isinstance(nu["z"], adaptix.QuantizedArray) and nu["z"].codes.dtype == jnp.uint8  # |g|^2 is real


def test_zero_blocks_are_exact_zeros():
    x = jnp.asarray(np.r_[np.zeros(8), np.linspace(-1, 1, 8)], jnp.float32)
    for signed in (True, False):
        stored = _QUANTIZE(x if signed else jnp.abs(x), 2, signed)
        assert float(stored.scales[0]) == 0.0
        values = np.asarray(adaptix.dequantize(stored))
        np.testing.assert_array_equal(values[:8], 0.0)
        assert np.all(np.isfinite(values))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_entry_poisons_its_block_only(bad):
    x = np.linspace(-1, 1, 12)
    x[5] = bad
    for signed in (True, False):
        stored = _QUANTIZE(jnp.asarray(x if signed else np.abs(x), jnp.float32), 3, signed)
        values = np.asarray(adaptix.dequantize(stored))
        assert np.isnan(float(stored.scales[1]))
        assert np.all(np.isnan(values[4:8])) and np.all(np.isfinite(values[np.r_[0:4, 8:12]]))
        assert_matches_reference(stored, x if signed else np.abs(x), 4, signed)


def test_unsigned_map_never_stores_a_positive_entry_as_zero():
    x = jnp.asarray([1.0, 1e-12, 1e-30, 0.0, -3.0], jnp.float32)
    stored = _QUANTIZE(x, 1, False)
    np.testing.assert_array_equal(np.asarray(stored.codes), [255, 1, 1, 0, 0])  # negative: stored as 0


# ----------------------------------------------------------------------------
# Adam's step from the stored state.
# ----------------------------------------------------------------------------

B1, B2, EPS, LR = 0.9, 0.999, 1e-8, 1e-2


def _adam_8bit(block_size=4, **kwargs):
    q = adaptix.quantized(block_size=block_size, min_size=0)
    return adaptix.adam(LR, b1=B1, b2=B2, eps=EPS, mu_dtype=q, nu_dtype=q, **kwargs)


def _gradient(t, shape=(5, 7)):
    rng = np.random.default_rng(t)
    return jnp.asarray(rng.normal(size=shape) * np.exp(rng.normal(size=shape)), jnp.float32)


def test_step_is_the_reference_step_from_the_stored_state():
    """Each step: the new moments are the float64 update of the moments read from the codes, quantized as the
    reference does; the update is Adam's from the moments read back from the *new* codes (the state
    alone determines the step)."""
    opt = _adam_8bit()
    params = jnp.zeros((5, 7))
    state = opt.init(params)
    step = jax.jit(opt.update)
    for t in range(1, 7):
        g = _gradient(t)
        mu, nu = (np.asarray(adaptix.dequantize(optax.tree_utils.tree_get(state, k)), np.float64) for k in ("mu", "nu"))
        gg = np.asarray(g, np.float64)
        updates, state = step(g, state, params)
        new_mu, new_nu = optax.tree_utils.tree_get(state, "mu"), optax.tree_utils.tree_get(state, "nu")
        f32 = 4 * float(np.finfo(np.float32).eps)  # adaptix computes the new moments in float32,
        b1, b2 = float(np.float32(B1)), float(np.float32(B2))  # from the decays as float32 numbers
        assert_matches_reference(new_mu, b1 * mu + (1 - b1) * gg, 4, signed=True, rounding=f32)
        assert_matches_reference(new_nu, b2 * nu + (1 - b2) * gg ** 2, 4, signed=False, rounding=f32)
        m, v = (np.asarray(adaptix.dequantize(x), np.float64) for x in (new_mu, new_nu))
        expected = -LR * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + EPS)
        # 3e-5: float32's 1 - b2^t (adaptix computes the bias corrections in float32: 6e-8 of 0.002 at t = 2)
        np.testing.assert_allclose(np.asarray(updates), expected, rtol=3e-5, atol=1e-12)
        assert int(optax.tree_utils.tree_get(state, "count")) == t


def assert_close_to_float32(u, ref_u):
    """Within the codes' precision: an entry 10x below its block's maximum is stored within 11 % (signed
    map) or 6 % (unsigned), so single updates may be off by 10 % or more. With these gradients (entries
    log-normal, spread over about a decade) blocks of 8 gave at most 12 % and on average 0.6-2 % of the
    largest update, blocks of 256 at most 16 % and 1.2-2.6 % (measured, 8 steps)."""
    error, size = np.abs(np.asarray(u) - np.asarray(ref_u)), float(np.max(np.abs(np.asarray(ref_u))))
    assert error.max() <= 0.2 * size and error.mean() <= 0.03 * size, (error.max() / size, error.mean() / size)


def test_step_is_close_to_the_float32_step():
    opt, reference = _adam_8bit(block_size=8), adaptix.adam(LR, b1=B1, b2=B2, eps=EPS)
    params = jnp.zeros((5, 7))
    state, ref_state = opt.init(params), reference.init(params)
    for t in range(8):
        g = _gradient(t)
        u, state = opt.update(g, state, params)
        ref_u, ref_state = reference.update(g, ref_state, params)
        assert_close_to_float32(u, ref_u)


def test_moments_are_found_by_name_and_keep_their_structure():
    params = {"w": jnp.zeros((64, 80)), "b": jnp.zeros(80)}
    q = adaptix.quantized()
    opt = adaptix.adam(jnp.asarray(LR), mu_dtype=q, nu_dtype=q)  # an array rate: the same structure
    state = opt.init(params)
    mu = optax.tree_utils.tree_get(state, "mu")
    assert isinstance(mu["w"], adaptix.QuantizedArray) and mu["w"].codes.dtype == jnp.int8
    assert mu["b"].dtype == jnp.float32  # 80 < min_size: float32
    assert optax.tree_utils.tree_get(state, "nu")["w"].codes.dtype == jnp.uint8
    assert jax.tree.structure(state) == jax.tree.structure(adaptix.adam(LR, mu_dtype=q, nu_dtype=q).init(params))
    _, new = jax.jit(opt.update)(jax.tree.map(jnp.ones_like, params), state, params)
    assert jax.tree.structure(new) == jax.tree.structure(state)
    large = [optax.tree_utils.tree_get(new, k)["w"] for k in ("mu", "nu")]
    assert sum(x.nbytes for x in jax.tree.leaves(large)) / params["w"].size == 2 + 8 / 256  # codes, one scale a block


def test_bfloat16_parameters():
    """bf16 parameters: the moments are read in float32, so the updates are float32 (Optax's rule, as with a
    float32 mu_dtype); small leaves stay in float32."""
    params = {"w": jnp.zeros((5, 7), jnp.bfloat16), "s": jnp.zeros((), jnp.bfloat16)}
    q = adaptix.quantized(block_size=4, min_size=2)
    opt = adaptix.adam(LR, mu_dtype=q, nu_dtype=q)
    state = opt.init(params)
    assert optax.tree_utils.tree_get(state, "mu")["s"].dtype == jnp.float32
    g = {"w": _gradient(0).astype(jnp.bfloat16), "s": jnp.asarray(0.5, jnp.bfloat16)}
    updates, state = opt.update(g, state, params)
    assert updates["w"].dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(updates["w"])))
    assert optax.apply_updates(params, updates)["w"].dtype == jnp.bfloat16


def test_a_uniformly_decaying_block_keeps_its_codes():
    """With zero gradients every entry of a block decays by beta: the scale carries it, the codes stay (so a
    decay far below the codes' spacing is not lost, as it is in bfloat16)."""
    opt = adaptix.scale_by_rms(0.999, accumulator_dtype=adaptix.quantized(8, min_size=0))
    g = _gradient(3, (16,))
    _, state = opt.update(g, opt.init(g))
    codes, scales = np.asarray(state.nu.codes), np.asarray(state.nu.scales)
    for _ in range(50):
        _, state = opt.update(jnp.zeros(16), state)
    np.testing.assert_array_equal(np.asarray(state.nu.codes), codes)
    np.testing.assert_allclose(np.asarray(state.nu.scales), scales * 0.999 ** 50, rtol=1e-5)


# ----------------------------------------------------------------------------
# Composition.
# ----------------------------------------------------------------------------


def test_nan_gradient_under_apply_if_finite_leaves_the_codes_untouched():
    opt = optax.apply_if_finite(_adam_8bit(), max_consecutive_errors=3)
    params = jnp.zeros((5, 7))
    update = jax.jit(opt.update)
    _, state = update(_gradient(0), opt.init(params), params)
    bad = _gradient(1).at[2, 3].set(jnp.nan)
    updates, after = update(bad, state, params)
    for x, y in zip(jax.tree.leaves(after.inner_state), jax.tree.leaves(state.inner_state)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not bool(jnp.any(updates)) and int(after.notfinite_count) == 1


def test_nan_gradient_without_the_guard_poisons_one_block():
    opt = _adam_8bit()
    params = jnp.zeros((5, 7))
    _, state = opt.update(_gradient(0), opt.init(params), params)
    _, state = opt.update(_gradient(1).at[0, 1].set(jnp.nan), state, params)
    mu = np.asarray(adaptix.dequantize(optax.tree_utils.tree_get(state, "mu"))).ravel()
    assert np.all(np.isnan(mu[:4])) and np.all(np.isfinite(mu[4:]))  # block 0: entries 0-3


def test_packed_quantized_moments():
    """Under ``packed`` the small leaves share one vector, so its blocks span leaves: other scales, the same
    precision per block; the updates stay within the codes' precision of float32 Adam's."""
    q = adaptix.quantized(block_size=16, min_size=0)
    params = {"a": jnp.zeros((3, 4)), "b": jnp.zeros(5), "c": jnp.zeros((6, 6))}
    opt, reference = adaptix.packed(adaptix.adam(LR, mu_dtype=q, nu_dtype=q), max_leaf_size=16), adaptix.adam(LR)
    state, ref_state = opt.init(params), reference.init(params)
    packed_mu = optax.tree_utils.tree_get(state, "mu")
    assert isinstance(packed_mu["small"]["float32"], adaptix.QuantizedArray)  # 12 + 5 entries in 2 blocks
    assert packed_mu["small"]["float32"].scales.shape == (2,)
    step = jax.jit(opt.update)
    for t in range(4):
        g = {k: jnp.asarray(np.random.default_rng(t).normal(size=v.shape), jnp.float32) for k, v in params.items()}
        u, state = step(g, state, params)
        ref_u, ref_state = reference.update(g, ref_state, params)
        for x, y in zip(jax.tree.leaves(u), jax.tree.leaves(ref_u)):
            assert_close_to_float32(x, y)


def test_inject_hyperparams_keeps_the_spec_static():
    q = adaptix.quantized(block_size=4, min_size=0)
    opt = adaptix.inject_hyperparams(adaptix.adam)(learning_rate=LR, mu_dtype=q, nu_dtype=q)
    params = jnp.zeros((5, 7))
    state = opt.init(params)
    assert set(state.hyperparams) == {"learning_rate", "b1", "b2", "eps", "eps_root"}
    traces = []

    @jax.jit
    def step(g, s):
        traces.append(None)
        return opt.update(g, s, params)

    u, state = step(_gradient(0), state)
    plain_u, _ = _adam_8bit().update(_gradient(0), _adam_8bit().init(params), params)
    np.testing.assert_array_equal(np.asarray(u), np.asarray(plain_u))
    state.hyperparams["learning_rate"] = LR / 2
    u2, state = step(_gradient(1), state)
    assert len(traces) == 1


def test_nnx_optimizer_keeps_the_codes_in_their_parameter_box():
    nnx = pytest.importorskip("flax.nnx")
    model = nnx.Linear(40, 3, rngs=nnx.Rngs(0))
    q = adaptix.quantized(block_size=8, min_size=0)
    optimizer = nnx.Optimizer(model, adaptix.adam(LR, mu_dtype=q, nu_dtype=q), wrt=nnx.Param)
    before = jax.tree.map(jax.typeof, nnx.state(optimizer, nnx.OptState))

    @nnx.jit
    def train_step(model, optimizer, x):
        grads = nnx.grad(lambda m: jnp.mean(m(x) ** 2))(model)
        optimizer.update(model, grads)

    x = jnp.ones((4, 40))
    for _ in range(3):
        train_step(model, optimizer, x)
    assert jax.tree.map(jax.typeof, nnx.state(optimizer, nnx.OptState)) == before
    mu = optax.tree_utils.tree_get(nnx.as_pure(optimizer.opt_state), "mu")
    assert isinstance(mu["kernel"], adaptix.QuantizedArray) and mu["kernel"].codes.shape == (40, 3)


def test_optax_states_convert_in_and_out():
    params = {"w": jnp.zeros((5, 7))}
    optax_tx, tx = optax.adam(LR), _adam_8bit()
    optax_state = optax_tx.init(params)
    for t in range(3):
        _, optax_state = optax_tx.update({"w": _gradient(t)}, optax_state, params)
    state = adaptix.from_optax(optax_state, tx, params, optax_tx=optax_tx)  # the probe step agrees to 3 %
    assert isinstance(optax.tree_utils.tree_get(state, "mu")["w"], adaptix.QuantizedArray)
    back = adaptix.to_optax(state, optax_tx, params, tx=tx)
    np.testing.assert_allclose(np.asarray(back[0].mu["w"]), np.asarray(optax_state[0].mu["w"]), atol=0.01 * float(
        jnp.max(jnp.abs(optax_state[0].mu["w"]))))
