"""The exponent of the second moment (RMSProp's 1/2, the diagonal natural gradient's 1) and SignGD as Adam's limit.

- ``scale_by_rms(power=p)`` divides by :math:`\\hat v^p`: ``p = 0.5`` is the default bit for bit, ``p = 1``
  matches a float64 NumPy transcription of :math:`u / (\\hat v + \\epsilon)`, a traced ``p`` (injected) gives
  the same steps and finite meta-gradients where a coordinate's gradient is 0.
- Adam with :math:`\\beta_1 = \\beta_2 = 0` and :math:`\\epsilon = 0` *is* SignGD (in binary floating point
  :math:`\\sqrt{\\mathrm{fl}(g^2)} = |g|` exactly, barring underflow; the step's size is then the learning rate
  to one rounding of :math:`1/|g|`, its sign and zeros exact); with betas near 1 it is
  not (the bias-corrected ratio tends to mean / root-mean-square of the gradients seen); and at fixed betas
  a small learning rate makes Adam's path follow SignGD's (Ma, Wu & E, 2020), the gap shrinking with it.
"""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import adaptix


def _grads(steps, dim=6, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(steps, dim)) * rng.lognormal(0, 2, size=(steps, dim))
    g[:, 0] = 0.0  # a coordinate whose gradient is always 0
    return g.astype(dtype)


def _run(opt, grads):
    params = jnp.zeros(grads.shape[1:], grads.dtype)
    state, out = opt.init(params), []
    for g in grads:
        u, state = opt.update(jnp.asarray(g), state, params)
        out.append(np.asarray(u))
    return np.stack(out)


@pytest.mark.parametrize("eps_in_sqrt", [True, False])
def test_power_one_half_is_the_default_bit_for_bit(eps_in_sqrt):
    grads = _grads(5)
    default = _run(adaptix.scale_by_rms(0.9, 1e-8, eps_in_sqrt=eps_in_sqrt, bias_correction=True), grads)
    half = _run(adaptix.scale_by_rms(0.9, 1e-8, eps_in_sqrt=eps_in_sqrt, bias_correction=True, power=0.5), grads)
    np.testing.assert_array_equal(half, default)


@pytest.mark.parametrize("eps_in_sqrt", [True, False])
@pytest.mark.parametrize("power", [1.0, 0.25])
def test_power_matches_a_numpy_transcription(x64, power, eps_in_sqrt):
    decay, eps = 0.9, 1e-3
    grads = _grads(6, dtype=np.float64)
    got = _run(adaptix.scale_by_rms(decay, eps, eps_in_sqrt=eps_in_sqrt, bias_correction=True, power=power), grads)
    v, want = np.zeros(grads.shape[1]), []
    for t, g in enumerate(grads, start=1):
        v = decay * v + (1 - decay) * g**2
        v_hat = v / (1 - decay**t)
        want.append(g / (v_hat + eps) ** power if eps_in_sqrt else g / (v_hat**power + eps))
    np.testing.assert_allclose(got, np.stack(want), rtol=1e-13, atol=0)


def test_natural_gradient_of_a_constant_gradient_is_its_reciprocal():
    # v-hat = g^2 exactly after bias correction: the undamped p = 1 step is 1/g, the p = 1/2 step sign(g)
    g = jnp.array([4.0, -0.5, 2.0])
    for power, want in ((1.0, 1 / g), (0.5, jnp.sign(g))):
        opt = adaptix.scale_by_rms(0.99, 0.0, bias_correction=True, power=power)
        state = opt.init(g)
        for _ in range(3):
            u, state = opt.update(g, state)
        np.testing.assert_allclose(u, want, rtol=1e-6)


def test_an_injected_power_gives_the_same_steps_and_finite_metagradients():
    grads = _grads(4)
    make = optax.inject_hyperparams(
        lambda power: adaptix.scale_by_rms(0.9, 1e-8, eps_in_sqrt=False, bias_correction=True, power=power))
    for p in (0.5, 1.0):
        fixed = _run(adaptix.scale_by_rms(0.9, 1e-8, eps_in_sqrt=False, bias_correction=True, power=p), grads)
        np.testing.assert_allclose(_run(make(power=p), grads), fixed, rtol=2e-6)
        traced = jnp.asarray(p)
        assert jax.tree.structure(make(power=traced).init(jnp.zeros(6))) == jax.tree.structure(
            make(power=p).init(jnp.zeros(6)))

    def total(power, rate):
        opt = adaptix.scale_by_rms(0.9, 0.0, bias_correction=True, power=power)
        state = opt.init(jnp.zeros(6))
        u, _ = opt.update(rate * jnp.asarray(grads[0]), state)
        return jnp.sum(u)

    d_power, d_rate = jax.grad(total, argnums=(0, 1))(0.75, 1.0)
    assert np.isfinite(d_power) and np.isfinite(d_rate)


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, float("nan")])
def test_power_is_validated(bad):
    with pytest.raises(ValueError, match=r"scale_by_rms: power must be finite and in \(0, 1\]"):
        adaptix.scale_by_rms(power=bad)


_TINY, _HUGE = float(np.float32(1e-15)), float(np.float32(1e15))  # g^2 neither underflows nor overflows
_finite_gradients = hnp.arrays(
    np.float32, st.integers(1, 12),
    elements=st.one_of(st.just(0.0), st.floats(_TINY, _HUGE, width=32), st.floats(-_HUGE, -_TINY, width=32)))


@settings(max_examples=20, deadline=None)
@given(st.lists(_finite_gradients, min_size=1, max_size=1), st.integers(1, 4))
def test_adam_with_zero_betas_and_eps_is_sign_sgd(first, steps):
    # m = g and v = g^2, and sqrt(fl(g^2)) = |g| exactly; the step multiplies g by the rounded 1/|g| (as the
    # references do), so its size is the learning rate to one rounding; signs and zeros are exact
    g0 = first[0]
    grads = np.stack([g0 * (-1.0) ** k * (k + 1) for k in range(steps)]).astype(np.float32)
    adam = _run(adaptix.adam(0.1, b1=0.0, b2=0.0, eps=0.0), grads)
    sign = _run(adaptix.sign_sgd(0.1), grads)
    np.testing.assert_array_equal(np.sign(adam), np.sign(sign))
    np.testing.assert_allclose(adam, sign, rtol=2 * np.finfo(np.float32).eps, atol=0)


def test_betas_near_one_are_not_sign_sgd():
    # beta1 = beta2 -> 1 with bias correction averages *all* gradients: m-hat / sqrt(v-hat) -> mean / rms
    grads = np.array([[1.0], [3.0], [-2.0]], np.float32)
    steps = _run(adaptix.adam(1.0, b1=1 - 1e-7, b2=1 - 1e-7, eps=0.0), grads)
    mean_over_rms = np.mean(grads) / np.sqrt(np.mean(grads**2))
    np.testing.assert_allclose(steps[-1, 0], -mean_over_rms, rtol=1e-3)
    assert abs(steps[-1, 0]) < 0.5  # SignGD would step by the full learning rate, 1


def _logistic_path(opt, steps):
    """Full-batch logistic regression on separable data (a linear teacher's labels): the deterministic setting
    of Ma, Wu & E, whose early phase, the gradient's signs changing slowly, lasts long."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(256, 20)), jnp.float32)
    y = (x @ jnp.asarray(rng.normal(size=20), jnp.float32) > 0).astype(jnp.float32)
    loss = lambda w: jnp.mean(optax.sigmoid_binary_cross_entropy(x @ w, y))  # noqa: E731

    @jax.jit
    def path(w0):
        def step(carry, _):
            w, s = carry
            u, s = opt.update(jax.grad(loss)(w), s, w)
            w = optax.apply_updates(w, u)
            return (w, s), w

        return jax.lax.scan(step, (w0, opt.init(w0)), None, length=steps)[1]

    return np.asarray(path(jnp.zeros(20)))


def test_small_learning_rates_make_adam_follow_sign_gd():
    # the same time t = steps x lr = 1 at three learning rates and fixed betas (0.9, 0.99): the gap to
    # SignGD's path, relative to the distance travelled, shrinks once the EMAs' memory in time,
    # lr / (1 - beta2), is short against the time over which the gradient changes (measured: 0.25, 0.14,
    # 0.019; with beta2 = 0.999 the memory is 10x longer and lr = 1e-4 gives 0.15)
    gaps = []
    for lr in (1e-2, 1e-3, 1e-4):
        steps = int(round(1.0 / lr))
        adam, sign = (_logistic_path(opt, steps) for opt in (adaptix.adam(lr, b2=0.99), adaptix.sign_sgd(lr)))
        gaps.append(np.max(np.linalg.norm(adam - sign, axis=1)) / np.linalg.norm(sign[-1]))
    assert gaps[2] < 0.3 * gaps[1] and gaps[1] < gaps[0], gaps
    assert gaps[2] < 0.05, gaps
