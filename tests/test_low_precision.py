"""Low precision: bf16/f16 parameters train for 10,000 steps; step counters saturate.

* Every optimizer of ``LOW_PRECISION`` trains a logistic regression (255 weights + a bias, 128
  samples) held in bfloat16 or float16, gradients in the same dtype, for 10,000 steps inside one
  jitted ``lax.scan``: parameters, state and every loss stay finite, the loss goes down, and the
  state keeps its dtypes.
* Step counters start at ``int32`` max - 2 (set with ``_replace`` on the state's NamedTuples):
  they saturate at ``2**31 - 1`` instead of wrapping to negative, every update stays finite, and
  the bias corrections are exactly 1 (``1 - b**t == 1`` at huge ``t``), so the update equals the
  uncorrected formula.
* ``decay ** t`` is computed in float32 even for bf16/f16 inputs (in bf16, ``1 - 0.999**t``
  rounds to 0 for small ``t``).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptix

from optimizers import OPTIMIZER_PARAMS, map_named_tuples, named_tuples

INT32_MAX = int(np.iinfo(np.int32).max)
STEPS = 10_000

LOW_PRECISION = {
    "adam": lambda: adaptix.adam(1e-2),
    "adamw": lambda: adaptix.adamw(1e-2, weight_decay=1e-2),
    "rmsprop": lambda: adaptix.rmsprop(1e-3),
    "rmsprop_centered_momentum": lambda: adaptix.rmsprop(1e-3, centered=True, momentum=0.9),
    "adagrad": lambda: adaptix.adagrad(0.1),
    "sgd_momentum": lambda: adaptix.sgd(0.05, momentum=0.9),
    "nadam": lambda: adaptix.nadam(1e-2),
    "amsgrad": lambda: adaptix.amsgrad(1e-2),
    "adamax": lambda: adaptix.adamax(1e-2),
    "lion": lambda: adaptix.lion(1e-3, weight_decay=1e-2),
}


def make_problem(dtype, n=128, d=255):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d)) / np.sqrt(d)
    teacher = rng.normal(size=d) * 3.0
    y = (x @ teacher + 0.3 * rng.normal(size=n) > 0).astype(np.float64)
    params = {"w": jnp.zeros(d, dtype), "b": jnp.zeros((), dtype)}
    return params, jnp.asarray(x, dtype), jnp.asarray(y, dtype)


def logistic_loss(params, x, y):
    logits = x @ params["w"] + params["b"]
    # mean of log(1 + exp(-s * logit)), s = 2y - 1, in the parameters' dtype
    return jnp.mean(jax.nn.softplus(-(2 * y - 1) * logits))


def all_finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree)
               if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact))


@functools.partial(jax.jit, static_argnums=(0, 2))
def train(opt, params, steps, data):
    """``steps`` steps of ``opt`` on one logistic regression per dtype, side by side in one tree
    (the problems are independent: each leaf's gradient is in its own dtype)."""

    def losses_of(params):
        return {k: logistic_loss(params[k], *data[k]) for k in params}

    def step(carry, _):
        params, state = carry
        losses = losses_of(params)
        grads = jax.grad(lambda p: sum(v.astype(jnp.float32) for v in losses_of(p).values()))(params)
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), losses

    (params, state), losses = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return params, state, losses


DTYPES = {"bf16": jnp.bfloat16, "f16": jnp.float16}


@pytest.mark.parametrize("name", sorted(LOW_PRECISION))
def test_trains_10k_steps_in_low_precision(name):
    opt = LOW_PRECISION[name]()
    problems = {k: make_problem(dtype) for k, dtype in DTYPES.items()}
    params = {k: problem[0] for k, problem in problems.items()}
    data = {k: problem[1:] for k, problem in problems.items()}
    final, state, losses = train(opt, params, STEPS, data)
    for key, dtype in DTYPES.items():
        assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(final[key]))
        assert all_finite(final[key]), f"{name}/{key}: non-finite parameters after {STEPS} steps"
        curve = np.asarray(losses[key], np.float32)
        first_bad = np.argmin(np.isfinite(curve))
        assert np.all(np.isfinite(curve)), f"{name}/{key}: first non-finite loss at step {first_bad}"
        # trains: the loss at the end is well below log(2), the loss at zero parameters
        assert curve[-100:].mean() < 0.8 * curve[0], (name, key, curve[0], curve[-100:].mean())
    assert all_finite(state), f"{name}: non-finite optimizer state after {STEPS} steps"
    for leaf, init_leaf in zip(jax.tree.leaves(state), jax.tree.leaves(opt.init(params))):
        assert leaf.dtype == init_leaf.dtype


# ----------------------------------------------------------------------------
# Saturating step counters.
# ----------------------------------------------------------------------------


def set_counts(state: Any, count: int) -> Any:
    """Every ``count`` field of every NamedTuple set to ``count`` (``mu_product`` to ``b**count``)."""

    def reset(node):
        changes = {}
        if "count" in node._fields and jnp.issubdtype(jnp.result_type(node.count), jnp.integer):
            changes["count"] = jnp.asarray(count, jnp.result_type(node.count))
        if isinstance(node, adaptix.NesterovEmaState) and node.mu_product is not None:
            # the running product of momentum factors is about b1**count: 0 at this count
            changes["mu_product"] = jnp.zeros_like(node.mu_product)
        return node._replace(**changes)

    return map_named_tuples(reset, state)


def counts_of(state: Any) -> list[int]:
    return [int(node.count) for node in named_tuples(state) if "count" in node._fields]


def small_params(dtype=jnp.float32):
    rng = np.random.default_rng(1)
    return {"w": jnp.asarray(rng.normal(size=(3, 4)), dtype), "b": jnp.asarray(rng.normal(size=4), dtype)}


def small_grads(step, dtype=jnp.float32):
    rng = np.random.default_rng(50 + step)
    return {"w": jnp.asarray(0.2 + rng.normal(size=(3, 4)), dtype), "b": jnp.asarray(rng.normal(size=4), dtype)}


@pytest.mark.parametrize("case", OPTIMIZER_PARAMS)
def test_counter_saturates_near_int32_max(case):
    opt = case.make()
    params = small_params()
    state = set_counts(opt.init(params), INT32_MAX - 2)
    assert jax.tree.structure(state) == jax.tree.structure(opt.init(params))
    has_count = bool(counts_of(state))
    for step in range(5):
        updates, state = opt.update(small_grads(step), state, params)
        assert all_finite(updates), f"{case.id}: non-finite update at count ~ 2**31"
        assert all_finite(state)
        params = optax.apply_updates(params, updates)
    counts = counts_of(state)
    assert counts == [INT32_MAX] * len(counts), counts  # saturated, never negative
    # a counter exactly where the Optax alias keeps one (rmsprop without bias correction has none),
    # and none in full-matrix AdaGrad (Optax has none), which has no bias correction either
    assert has_count or case.id in {"sgd", "sgd_momentum", "sgd_nesterov", "adagrad", "adadelta", "rmsprop",
                                    "rmsprop_centered_momentum", "chain_rmsprop_momentum", "sign_sgd", "rprop",
                                    "full_matrix_adagrad", "chain_adagrad_momentum_8bit", "vsgd"}


def moments_state(m, v, count):
    """The state of ``adam``'s chain with given first/second moments and count."""
    count = jnp.asarray(count, jnp.int32)
    stages = (adaptix.FirstMomentState(mu=m), adaptix.ScaleByRmsState(nu=v), adaptix.EmptyState(), adaptix.EmptyState())
    return adaptix.CountedState(count=count, inner_state=stages)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16], ids=["f32", "bf16", "f16"])
def test_bias_correction_is_exactly_one_at_huge_t(dtype):
    g = jnp.asarray([0.5, -2.0, 1e-3], dtype)
    for count in (INT32_MAX - 1, INT32_MAX):
        out, state = adaptix.bias_correction(0.999).update(
            g, adaptix.CountedState(jnp.asarray(count, jnp.int32), adaptix.EmptyState()))
        assert int(state.count) == INT32_MAX
        np.testing.assert_array_equal(np.asarray(out), np.asarray(g))
        assert out.dtype == dtype


def test_adam_at_huge_t_is_the_uncorrected_formula():
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    m = jnp.asarray([0.3, -0.2, 0.0, 1e-4])
    v = jnp.asarray([0.04, 0.5, 0.0, 1e-6])
    g = jnp.asarray([1.0, -0.5, 0.0, 2.0])
    updates, state = adaptix.adam(lr, b1, b2, eps).update(g, moments_state(m, v, INT32_MAX - 1))
    m64, v64, g64 = (np.asarray(a, np.float64) for a in (m, v, g))
    b1, b2 = float(np.float32(b1)), float(np.float32(b2))  # the decays as float32 holds them (1 - b2 exact)
    m_new = b1 * m64 + (1 - b1) * g64
    v_new = b2 * v64 + (1 - b2) * g64**2
    expected = -lr * m_new / (np.sqrt(v_new) + eps)  # 1 - b**t == 1: no correction
    np.testing.assert_allclose(np.asarray(updates), expected, rtol=1e-6, atol=1e-9)
    assert int(state.count) == INT32_MAX  # the chain's one counter


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bf16", "f16"])
def test_decay_power_in_float32_for_low_precision(dtype):
    # At t = 1, 1 - 0.999**1 = 1e-3: exact enough in float32; in bf16, 0.999 rounds to 1.0
    # and the correction would divide by zero.
    assert float(jnp.asarray(0.999, jnp.bfloat16)) == 1.0
    assert adaptix._accumulators.scalar_dtype({"w": jnp.zeros(2, dtype)}) == jnp.float32
    out, _ = adaptix.bias_correction(0.999).update(
        jnp.ones(2, dtype), adaptix.CountedState(jnp.asarray(0, jnp.int32), adaptix.EmptyState()))
    np.testing.assert_allclose(np.asarray(out, np.float32), 1000.0, rtol=1e-2)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bf16", "f16"])
def test_adam_low_precision_first_step_is_lr_sign(dtype):
    # Adam's first step is -lr * sign(g) wherever (1 - b2) * g**2 is a normal number of the dtype,
    # and 0 (not NaN or Inf) where it underflows to 0: in float16 (smallest normal 6.1e-5,
    # smallest subnormal 6e-8) that is |g| < ~5e-3, and eps = 1e-8 itself rounds to 0. In between,
    # the subnormal second moment has few significant bits (see docs/reliability.md).
    g = jnp.asarray([3.0, -0.5, 0.3, 1e-4, 0.0], dtype)
    opt = adaptix.adam(0.1)
    updates, _ = opt.update(g, opt.init(jnp.zeros(5, dtype)))
    out = np.asarray(updates, np.float32)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[:3], -0.1 * np.sign(np.asarray(g[:3], np.float32)), rtol=2e-2)  # bf16: 8 bits
    assert out[4] == 0.0
    if dtype == jnp.float16:
        assert out[3] == 0.0  # (1 - b2) * 1e-8 underflows: no step, and no NaN
    else:
        np.testing.assert_allclose(out[3], -0.1, rtol=2e-2)  # bfloat16 has float32's range


def _adam_with_rounded_moments(params, grads, lr, round_m, round_v, b1=0.9, b2=0.999, eps=1e-8):
    """Adam in float32 NumPy whose m and/or v are rounded to bfloat16 each step, then used as stored."""
    bf16 = lambda x: np.asarray(jnp.asarray(x, jnp.float32).astype(jnp.bfloat16).astype(jnp.float32))
    m = v = np.zeros_like(np.asarray(params))
    p, out = np.asarray(params), []
    for t, g in enumerate(grads, start=1):
        g = np.asarray(g)
        m = np.float32(b1) * m + np.float32(1 - b1) * g
        v = np.float32(b2) * v + np.float32(1 - b2) * g * g
        m = bf16(m) if round_m else m
        v = bf16(v) if round_v else v
        m_hat = m / np.float32(1 - b1**t)
        v_hat = v / np.float32(1 - b2**t)
        p = p - np.float32(lr) * m_hat / (np.sqrt(v_hat) + np.float32(eps))
        out.append(p)
    return out


@pytest.mark.parametrize("nu_dtype", [None, jnp.bfloat16])
def test_moments_in_bfloat16_round_only_what_is_stored(nu_dtype):
    """mu_dtype / nu_dtype: each step's moment is computed in float32, rounded once to bfloat16, and
    the step uses it as stored (``as_stored``)."""
    rng = np.random.default_rng(1)
    params = jnp.asarray(rng.normal(size=64), jnp.float32)
    grads = [jnp.asarray(rng.normal(size=64) * 10.0 ** rng.uniform(-3, 1, 64), jnp.float32) for _ in range(30)]
    lr = 1e-2

    def run(opt):
        state, p, out = opt.init(params), params, []
        for g in grads:
            u, state = opt.update(g, state, p)
            p = optax.apply_updates(p, u)
            out.append(np.asarray(p))
        return out, state

    ours, state = run(adaptix.adam(lr, mu_dtype=jnp.bfloat16, nu_dtype=nu_dtype))
    assert optax.tree_utils.tree_get(state, "mu").dtype == jnp.bfloat16
    assert optax.tree_utils.tree_get(state, "nu").dtype == (jnp.float32 if nu_dtype is None else jnp.bfloat16)
    expected = _adam_with_rounded_moments(params, grads, lr, round_m=True, round_v=nu_dtype is not None)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    if nu_dtype is None:
        # Optax computes decay * m in bfloat16 before adding the float32 term: one more rounding
        # per step. It agrees with us to bfloat16 accuracy only, and strays further from float32 Adam.
        ref, _ = run(optax.adam(lr, mu_dtype=jnp.bfloat16))
        np.testing.assert_allclose(ours, ref, rtol=0, atol=0.25 * lr)
        exact = _adam_with_rounded_moments(params, grads, lr, round_m=False, round_v=False)
        err_ours = np.abs(np.asarray(ours) - exact).max()
        err_optax = np.abs(np.asarray(ref) - exact).max()
        assert err_ours < 0.5 * err_optax, (err_ours, err_optax)


def test_bfloat16_second_moment_stalls_where_float32_does_not():
    """The documented hazard: 0.999 v + 0.001 g**2 rounds back to v in bfloat16 unless g**2 is far from v."""
    opt32 = adaptix.scale_by_rms(0.999, eps=0.0)
    opt16 = adaptix.scale_by_rms(0.999, eps=0.0, accumulator_dtype=jnp.bfloat16)
    s32, s16 = opt32.init(jnp.ones(1)), opt16.init(jnp.ones(1))
    s32, s16 = s32._replace(nu=jnp.ones(1)), s16._replace(nu=jnp.ones(1, jnp.bfloat16))
    for _ in range(100):  # g**2 = 2: v should drift from 1 towards 2
        _, s32 = opt32.update(jnp.full(1, np.sqrt(2.0)), s32)
        _, s16 = opt16.update(jnp.full(1, np.sqrt(2.0)), s16)
    assert float(s32.nu[0]) == pytest.approx(2 - 0.999**100, rel=1e-5)  # 1.095
    assert float(s16.nu[0]) == 1.0  # every increment of 0.001 was rounded away


def test_bfloat16_second_moment_never_decays_at_b2_0999():
    """A decrease of 0.001 v is below half a bfloat16 spacing, so v stays put when the gradients vanish."""
    opt = adaptix.scale_by_rms(0.999, eps=1e-8, accumulator_dtype=jnp.bfloat16)
    state = opt.init(jnp.ones(3))._replace(nu=jnp.asarray([1.0, 1.9, 3e-5], jnp.bfloat16))
    for _ in range(50):
        _, state = opt.update(jnp.zeros(3), state)
    np.testing.assert_array_equal(np.asarray(state.nu, np.float32),
                                  np.asarray(jnp.asarray([1.0, 1.9, 3e-5], jnp.bfloat16), np.float32))
