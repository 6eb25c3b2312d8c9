"""Parameter-difference momentum (Hinton) against trace/EMA momentum: equal for a constant step, not under a
schedule."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptix
from adaptix.experiments import landscapes as L


def hinton(lr, beta):
    return adaptix.chain(adaptix.scale_by_learning_rate(lr), adaptix.parameter_difference_momentum(beta))


def test_constant_step_equals_sgd_momentum_on_a_trajectory(x64):
    problem = L.quadratic(20.0, angle=0.4)
    a = np.asarray(L.trajectory(hinton(0.04, 0.9), problem, steps=150, dtype=jnp.float64))
    b = np.asarray(L.trajectory(adaptix.sgd(0.04, momentum=0.9), problem, steps=150, dtype=jnp.float64))
    c = np.asarray(L.trajectory(optax.sgd(0.04, momentum=0.9), problem, steps=150, dtype=jnp.float64))
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-13)
    assert problem.loss(a[-1]) < 1e-6 * problem.loss(a[0])


def test_constant_step_in_float32_to_rounding():
    problem = L.rosenbrock()
    a = np.asarray(L.trajectory(hinton(1e-3, 0.9), problem, steps=100))
    b = np.asarray(L.trajectory(adaptix.sgd(1e-3, momentum=0.9), problem, steps=100))
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _open_loop(opt, grads):
    """Feeds a fixed gradient sequence, applying every update; returns the updates."""
    w = jnp.zeros_like(grads[0])
    state = opt.init(w)
    out = []
    for g in grads:
        u, state = opt.update(g, state, w)
        w = optax.apply_updates(w, u)
        out.append(np.asarray(u))
    return np.stack(out)


def test_schedule_differs_with_the_closed_form(x64):
    beta, T = 0.9, 30
    schedule = optax.piecewise_constant_schedule(1.0, {10: 0.1, 20: 0.1})  # 1.0, then 0.1, then 0.01
    eta = np.array([float(schedule(t)) for t in range(T)])
    rng = np.random.default_rng(0)
    grads = [jnp.asarray(rng.standard_normal(3)) for _ in range(T)]
    G = np.stack([np.asarray(g) for g in grads])

    diff = _open_loop(hinton(schedule, beta), grads)
    ema = _open_loop(adaptix.sgd(schedule, momentum=beta), grads)

    weights = np.array([[beta ** (t - s) if s <= t else 0.0 for s in range(T)] for t in range(T)])
    closed_diff = -(weights * eta[None, :]) @ G  # Delta_t = -sum_s beta^(t-s) eta_s g_s
    closed_ema = -eta[:, None] * (weights @ G)  # Delta'_t = -eta_t sum_s beta^(t-s) g_s
    np.testing.assert_allclose(diff, closed_diff, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ema, closed_ema, rtol=1e-10, atol=1e-12)
    gap = diff - ema
    closed_gap = (weights * (eta[:, None] - eta[None, :])) @ G  # sum_s beta^(t-s) (eta_t - eta_s) g_s
    np.testing.assert_allclose(gap, closed_gap, rtol=1e-10, atol=1e-12)
    # identical while the rate is constant, different after each drop
    np.testing.assert_allclose(diff[:10], ema[:10], rtol=1e-12)
    assert np.all(np.abs(gap[10]) > 1e-3)
    # after the drop, the parameter-difference velocity keeps its old scale: with g = 1 throughout,
    # Delta_10 = -(0.1 + 0.9 * sum_{k<10} 0.9^k) versus Delta'_10 = -0.1 * sum_{k<=10} 0.9^k
    ones = [jnp.ones(1)] * 11
    d, e = _open_loop(hinton(schedule, beta), ones)[10, 0], _open_loop(adaptix.sgd(schedule, beta), ones)[10, 0]
    assert d == pytest.approx(-(0.1 + 0.9 * (1 - 0.9**10) / 0.1))
    assert e == pytest.approx(-0.1 * (1 - 0.9**11) / 0.1)


def test_schedule_changes_the_trajectory(x64):
    problem = L.quadratic(20.0, angle=0.4)
    schedule = optax.exponential_decay(0.04, transition_steps=10, decay_rate=0.5)
    a = np.asarray(L.trajectory(hinton(schedule, 0.9), problem, steps=60, dtype=jnp.float64))
    b = np.asarray(L.trajectory(adaptix.sgd(schedule, momentum=0.9), problem, steps=60, dtype=jnp.float64))
    np.testing.assert_allclose(a[:2], b[:2], rtol=1e-12)  # the first step has no history
    assert np.max(np.abs(a - b)) > 1e-2


def test_uses_the_update_actually_applied():
    """A stage after it (here halving) changes w_t - w_{t-1}, and the momentum follows it."""
    opt = adaptix.chain(adaptix.scale_by_learning_rate(1.0), adaptix.parameter_difference_momentum(0.5),
                        adaptix.scale(0.5))
    u = _open_loop(opt, [jnp.ones(1)] * 3)[:, 0]
    # Delta_t = 0.5 * (-1 + 0.5 * Delta_{t-1})
    np.testing.assert_allclose(u, [-0.5, -0.625, -0.65625], rtol=1e-6)


def test_validation_params_required_and_structure():
    message = r"parameter_difference_momentum: beta must be finite and in \[0, 1\], got 1.5"
    with pytest.raises(ValueError, match=message):
        adaptix.parameter_difference_momentum(1.5)
    opt = adaptix.parameter_difference_momentum(0.9)
    with pytest.raises(ValueError, match="params are required"):
        opt.update(jnp.ones(2), opt.init(jnp.zeros(2)))
    state = opt.init({"a": jnp.zeros(2)})
    with pytest.raises(ValueError, match="does not match"):
        opt.update({"b": jnp.ones(2)}, state, {"b": jnp.zeros(2)})


def test_in_flax_nnx_optimizer():
    nnx = pytest.importorskip("flax.nnx")
    model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, hinton(0.05, 0.9), wrt=nnx.Param)
    x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(step(model, optimizer)) for _ in range(20)]
    assert losses[-1] < losses[0]
