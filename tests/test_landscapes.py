"""Test functions of adaptix.experiments.landscapes and the jitted trajectory runner."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptix
from adaptix.experiments import landscapes as L


def _numeric_grad(f, x, h=1e-3):
    x = np.asarray(x, np.float64)
    out = np.zeros_like(x)
    for i in range(len(x)):
        e = np.zeros_like(x)
        e[i] = h
        out[i] = (float(f(jnp.asarray(x + e))) - float(f(jnp.asarray(x - e)))) / (2 * h)
    return out


@pytest.mark.parametrize("make", [lambda: L.quadratic(10.0, 0.4), L.rosenbrock, L.beale, L.saddle, L.monkey_saddle])
def test_gradient_is_jax_grad_and_matches_finite_differences(make):
    p = make()
    x = jnp.array([0.7, -0.3])
    g = p.grad(x)
    np.testing.assert_array_equal(g, jax.grad(p.loss)(x))
    np.testing.assert_allclose(g, _numeric_grad(p.loss, x), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("make", [lambda: L.quadratic(50.0, 1.0), L.rosenbrock, L.beale])
def test_minimum_is_stationary_and_lowest(make):
    p = make()
    m = jnp.asarray(p.minimum)
    np.testing.assert_allclose(p.grad(m), 0.0, atol=1e-5)
    pts = jnp.asarray(m) + 0.1 * jax.random.normal(jax.random.key(0), (32, 2))
    assert bool(jnp.all(L.losses(p, pts) >= p.loss(m)))


def test_quadratic_closed_form_and_rotation():
    R = L.rotation_2d(0.6)
    p, q = L.quadratic(100.0), L.quadratic(100.0, angle=0.6)
    np.testing.assert_allclose(np.linalg.eigvalsh(q.hessian), [1.0, 100.0], rtol=1e-12)
    np.testing.assert_allclose(q.hessian, R @ np.diag([100.0, 1.0]) @ R.T, atol=1e-12)
    x = np.array([0.3, -1.2], np.float32)
    # f_R(R x) = f(x) and grad f_R(R x) = R grad f(x)
    np.testing.assert_allclose(q.loss(jnp.asarray(R @ x, jnp.float32)), p.loss(jnp.asarray(x)), rtol=1e-5)
    np.testing.assert_allclose(q.grad(jnp.asarray(R @ x, jnp.float32)), R @ np.asarray(p.grad(jnp.asarray(x))),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(q.x0, R @ p.x0, rtol=1e-6)


def test_quadratic_higher_dim_and_validation():
    R = L.random_rotation(5, seed=1)
    np.testing.assert_allclose(R @ R.T, np.eye(5), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    p = L.quadratic(1e3, dim=5, rotation=R)
    np.testing.assert_allclose(np.linalg.eigvalsh(p.hessian)[[0, -1]], [1.0, 1e3], rtol=1e-9)
    with pytest.raises(ValueError, match="condition must be finite and >= 1, got 0.5"):
        L.quadratic(0.5)
    with pytest.raises(ValueError, match="orthogonal"):
        L.quadratic(10.0, rotation=np.ones((2, 2)))
    with pytest.raises(ValueError, match="noise"):
        L.noisy_quadratic(10.0, noise=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="steps"):
        L.trajectory(adaptix.sgd(0.1), p, steps=-1)
    with pytest.raises(ValueError, match="x0 must have shape"):
        L.trajectory(adaptix.sgd(0.1), L.rosenbrock(), x0=[0.0, 0.0, 0.0], steps=1)


def test_trajectory_equals_python_loop():
    p = L.rosenbrock()
    opt = adaptix.adam(0.05)
    xs = L.trajectory(opt, p, steps=25)
    x = jnp.asarray(p.x0)
    state = opt.init(x)
    expected = [x]
    for _ in range(25):
        u, state = opt.update(jax.grad(p.loss)(x), state, x)
        x = optax.apply_updates(x, u)
        expected.append(x)
    assert xs.shape == (26, 2)
    np.testing.assert_allclose(xs, jnp.stack(expected), rtol=1e-5, atol=1e-6)


def test_gradient_descent_closed_form_on_quadratic():
    p = L.quadratic(10.0)
    lr = 0.05
    xs = np.asarray(L.trajectory(adaptix.sgd(lr), p, steps=20))
    factors = 1.0 - lr * np.diag(p.hessian)  # axis-aligned: coordinates decay independently
    np.testing.assert_allclose(xs[20], p.x0 * factors**20, rtol=1e-4)


def test_noisy_quadratic_is_seeded_and_has_the_right_noise():
    p = L.noisy_quadratic(10.0, noise=[0.5, 0.05])
    a = L.trajectory(adaptix.sgd(0.01), p, steps=10, seed=3)
    b = L.trajectory(adaptix.sgd(0.01), p, steps=10, seed=3)
    c = L.trajectory(adaptix.sgd(0.01), p, steps=10, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    x = jnp.zeros(2)
    keys = jax.random.split(jax.random.key(0), 4000)
    gs = jax.vmap(lambda k: p.grad(x, k))(keys)
    np.testing.assert_allclose(gs.std(0), [0.5, 0.05], rtol=0.06)
    np.testing.assert_array_equal(p.grad(x), jnp.zeros(2))  # no key: the exact gradient


def test_saddle_gradient_descent_escapes_slowly_sign_descent_fast():
    p = L.saddle()
    gd = np.asarray(L.trajectory(adaptix.sgd(0.05), p, steps=40))
    sign = np.asarray(L.trajectory(adaptix.sign_sgd(0.05), p, steps=40))
    # gradient descent: y grows by 1.1 per step from 1e-3 (closed form); sign descent moves y by 0.05 per step
    np.testing.assert_allclose(gd[40, 1], 1e-3 * 1.1**40, rtol=1e-4)
    assert abs(sign[40, 1]) > 1.0 > abs(gd[40, 1])


def test_contour_grid_shapes():
    X, Y, Z = L.contour_grid(L.rosenbrock(), n=20)
    assert X.shape == Y.shape == Z.shape == (20, 20)
    assert np.isfinite(Z).all() and Z.min() >= 0
