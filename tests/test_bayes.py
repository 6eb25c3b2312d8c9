"""AdaBayes and AdaBayes-FP (Aitchison, 2020) against the filtering equations written in NumPy.

The references below work, as the paper does, with the gradient of the *summed*
minibatch loss (``B * g`` for the mean-loss gradient ``g``) and the prior
variance ``sigma^2 = sgd_lr / B``; adaptix works in mean-loss units. Agreement
therefore also checks the change of units.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptix


def _grads(steps, n=6, seed=0):
    rng = np.random.default_rng(seed)
    scales = np.geomspace(1e-3, 3.0, n)  # from SGD-like (tiny gradients) to Adam-like coordinates
    return [(rng.standard_normal(n) + 0.3) * scales for _ in range(steps)]


def _numpy_adabayes(grads, eta, alpha, b1, batch, wd):
    """Algorithm 1 of the paper: Kalman filter per parameter, steps -sigma2_post * m_hat (summed loss)."""
    sigma2 = alpha / batch
    d = math.exp(-(eta**2) / sigma2)
    w = np.zeros_like(grads[0])
    m = np.zeros_like(w)
    s_post = np.full_like(w, sigma2)
    steps = []
    for t, g in enumerate(grads, start=1):
        g_sum = batch * g
        m = b1 * m + (1 - b1) * g_sum
        m_hat = m / (1 - b1**t)
        s_prior = d * s_post + sigma2 * (1 - d)
        s_post = 1.0 / (1.0 / s_prior + g_sum**2)
        delta = -s_post * m_hat - wd * w
        w = w + delta
        steps.append(delta)
    return steps


def _numpy_adabayes_fp(grads, eta, alpha, b1, b2, eps, batch, wd):
    """The fixed point: the positive root of  v s^2 + (eta^2 / sigma^2) s - eta^2 = 0  (summed loss)."""
    sigma2 = alpha / batch
    w = np.zeros_like(grads[0])
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    steps = []
    for t, g in enumerate(grads, start=1):
        g_sum = batch * g
        m = b1 * m + (1 - b1) * g_sum
        v = b2 * v + (1 - b2) * g_sum**2
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t) + batch**2 * eps
        a, b, c = v_hat, eta**2 / sigma2, -(eta**2)
        s = (-b + np.sqrt(b * b - 4 * a * c)) / (2 * a)
        delta = -s * m_hat - wd * w
        w = w + delta
        steps.append(delta)
    return steps


def _run(opt, grads):
    w = jnp.zeros(len(grads[0]))
    state = opt.init(w)
    step = jax.jit(opt.update)
    out = []
    for g in grads:
        u, state = step(jnp.asarray(g), state, w)
        w = optax.apply_updates(w, u)
        out.append(np.asarray(u))
    return out


@pytest.mark.parametrize("batch, wd", [(1, 0.0), (32, 1e-3)])
def test_adabayes_matches_the_filter_equations(x64, batch, wd):
    grads = _grads(40)
    eta, alpha, b1 = 1e-2, 0.05, 0.9
    got = _run(adaptix.adabayes(eta, alpha, b1, batch_size=batch, weight_decay=wd), grads)
    ref = _numpy_adabayes(grads, eta, alpha, b1, batch, wd)
    for t, (a, b) in enumerate(zip(got, ref)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-15, err_msg=f"step {t + 1}")


@pytest.mark.parametrize("batch, wd", [(1, 0.0), (32, 1e-3)])
def test_adabayes_fp_matches_the_fixed_point_equation(x64, batch, wd):
    grads = _grads(40, seed=1)
    eta, alpha, b1, b2, eps = 1e-2, 0.05, 0.9, 0.99, 1e-12
    got = _run(adaptix.adabayes_fp(eta, alpha, b1, b2, eps, weight_decay=wd), grads)
    ref = _numpy_adabayes_fp(grads, eta, alpha, b1, b2, eps, batch, wd)
    for t, (a, b) in enumerate(zip(got, ref)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-15, err_msg=f"step {t + 1}")


def test_filter_settles_at_the_fixed_point(x64):
    """With a steady gradient magnitude, AdaBayes's variance converges to AdaBayes-FP's (to O(eta^2 / sigma^2))."""
    eta, alpha = 1e-2, 0.1  # eta^2 / sigma^2 = 1e-3; relaxation within a few thousand steps
    # from SGD-like to Adam-like coordinates; the fixed point is the small-step (eta * |g| << 1) solution
    g2 = jnp.asarray([1e-6, 1e-4, 1e-2, 0.1, 1.0])
    filt = adaptix.scale_by_posterior_variance(eta, alpha)
    fp = adaptix.scale_by_posterior_variance_fp(eta, alpha, decay=0.0, eps=0.0)

    def body(state, _):
        return filt.update(jnp.sqrt(g2), state)[1], None

    state, _ = jax.lax.scan(body, filt.init(g2), None, length=30000)
    s_fp = fp.update(jnp.ones(5), fp.init(g2), chain_input=jnp.sqrt(g2))[0]
    np.testing.assert_allclose(state.variance, s_fp, rtol=6e-3)
    # the fixed point interpolates between SGD (alpha) and Adam (eta / |g|)
    extremes = jnp.asarray([1e-12, 1e6])
    s_ext = fp.update(jnp.ones(2), fp.init(extremes), chain_input=jnp.sqrt(extremes))[0]
    np.testing.assert_allclose(s_ext, [alpha, eta / 1e3], rtol=1e-3)


def test_limits_are_adam_and_sgd(x64):
    grads = _grads(25, seed=2)
    eta, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-10
    adam_limit = _run(adaptix.adabayes_fp(eta, 1e12, b1, b2, eps), grads)
    adam = _run(adaptix.adam(eta, b1, b2, eps=0.0, eps_root=eps), grads)
    np.testing.assert_allclose(adam_limit, adam, rtol=1e-6, atol=1e-15)
    alpha = 0.05
    sgd_limit = _run(adaptix.adabayes_fp(1e12, alpha, b1, b2, eps), grads)
    sgd = _run(adaptix.chain(adaptix.trace(b1, ema=True), adaptix.bias_correction(b1), adaptix.scale(-alpha)), grads)
    np.testing.assert_allclose(sgd_limit, sgd, rtol=1e-6, atol=1e-15)
    # AdaBayes starts as SGD with learning rate alpha while little data has been seen
    first = _run(adaptix.adabayes(eta, alpha, b1), [np.full(3, 1e-3)])[0]
    np.testing.assert_allclose(first, -alpha * 1e-3, rtol=1e-6)


def test_implied_weight_decay_and_chain_layout():
    assert adaptix.implied_weight_decay(1e-2, 0.05, 10) == pytest.approx(1e-4 * 10 / 0.1)
    opt = adaptix.adabayes(1e-2, 0.05, batch_size=10, weight_decay=None)
    w = jnp.ones(2)
    u, _ = opt.update(jnp.zeros(2), opt.init(w), w)
    np.testing.assert_allclose(u, -1e-2 * np.ones(2), rtol=1e-6)  # zero gradient: only the prior's decay
    assert len(opt.init(w).inner_state) == 5  # trace, bias_correction, posterior variance, decay, sign flip
    # a decay of 0 keeps its (stateless) stage: the state's structure never depends on the value
    assert len(adaptix.adabayes(1e-2, 0.05, weight_decay=0.0).init(w).inner_state) == 5


@pytest.mark.parametrize("factory, kwargs, error, match", [
    (adaptix.adabayes, {"learning_rate": 0.0}, ValueError,
     r"adabayes: learning_rate must be finite and in \(0, inf\), got 0.0"),
    (adaptix.adabayes, {"sgd_learning_rate": -1.0}, ValueError, r"sgd_learning_rate must be finite and in \(0, inf\)"),
    (adaptix.adabayes, {"b1": 1.0}, ValueError, r"adabayes: b1 must be finite and in \[0, 1\), got 1.0"),
    (adaptix.adabayes, {"batch_size": 0}, ValueError, r"batch_size must be finite and in \[1, inf\), got 0"),
    (adaptix.adabayes, {"weight_decay": -1e-3}, ValueError, r"weight_decay must be finite"),
    (adaptix.adabayes, {"learning_rate": optax.constant_schedule(1e-3)}, TypeError, "not a schedule"),
    (adaptix.adabayes_fp, {"b2": -0.5}, ValueError, r"adabayes_fp: b2 must be finite and in \[0, 1\)"),
    (adaptix.adabayes_fp, {"eps": float("nan")}, ValueError, r"adabayes_fp: eps must be finite"),
    (adaptix.scale_by_posterior_variance, {"learning_rate": float("inf")}, ValueError,
     r"scale_by_posterior_variance: learning_rate must be finite"),
    (adaptix.scale_by_posterior_variance_fp, {"decay": 1.0}, ValueError, r"decay must be finite and in \[0, 1\)"),
])
def test_validation(factory, kwargs, error, match):
    with pytest.raises(error, match=match):
        factory(**kwargs)
