"""vSGD and the secant curvature estimate: an independent NumPy reference, closed forms, jit, validation.

The reference below is written from the equations of Schaul, Zhang & LeCun (2013, Algorithm 1)
with the finite-difference curvature of Schaul & LeCun (2013) taken between consecutive
gradients, as ``adaptix.vsgd`` documents; it runs step by step in float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptix

# ----------------------------------------------------------------------------
# The reference: one coordinate array at a time, plain NumPy float64.
# ----------------------------------------------------------------------------

ROUNDING = 8 * np.finfo(np.float64).eps


def moved(p, p_prev):
    step = abs(p - p_prev)
    return step > 0 and step > ROUNDING * max(abs(p), abs(p_prev))


class Secant:
    """One coordinate's secant statistics: <dg dtheta>, <dtheta^2>, <dg^2>, weighted 1/tau (1 for the first)."""

    def __init__(self):
        self.a = self.b = self.c = 0.0

    def outlier(self, dg, dth, k):
        if self.b == 0:
            return False
        mean = self.a / self.b
        var = self.c / self.b - mean ** 2
        if not var > np.sqrt(np.finfo(np.float64).eps) * self.c / self.b:  # cancellation: no variance known
            return False
        return (dg / dth - mean) ** 2 > k * k * var

    def add(self, dg, dth, tau):
        w = 1 / tau if self.b > 0 else 1.0
        self.a = (1 - w) * self.a + w * dg * dth
        self.b = (1 - w) * self.b + w * dth * dth
        self.c = (1 - w) * self.c + w * dg * dg

    def inverse(self, h0):
        return self.b / abs(self.a) if self.b > 0 and self.a != 0 else 1 / h0


class NumpyVsgd:
    """vSGD-l, curvature from the least-squares secant of consecutive gradients, coordinate by coordinate."""

    def __init__(self, n, C=2.0, n0=2.0, k=2.0, h0=1.0):
        self.C, self.n0, self.k, self.h0 = C, n0, k, h0
        self.g = np.zeros(n)
        self.v = np.zeros(n)
        self.tau = np.zeros(n)
        self.secants = [Secant() for _ in range(n)]
        self.g_prev = np.zeros(n)
        self.p_prev = np.zeros(n)

    def step(self, grad, params):
        out = np.zeros_like(grad)
        for i in range(len(grad)):
            g, p, sec = grad[i], params[i], self.secants[i]
            if self.tau[i] == 0:  # slow start: the first gradient counts for n0 samples, v inflated by C
                self.g[i], self.v[i], self.tau[i] = g, self.C * g * g, self.n0
            else:
                if moved(p, self.p_prev[i]):
                    dg, dth = g - self.g_prev[i], p - self.p_prev[i]
                    if sec.outlier(dg, dth, self.k):
                        self.tau[i] += 1
                    sec.add(dg, dth, self.tau[i])
                tau = self.tau[i]
                self.g[i] = (1 - 1 / tau) * self.g[i] + g / tau
                self.v[i] = (1 - 1 / tau) * self.v[i] + g * g / tau
            signal = min(self.g[i] ** 2 / self.v[i], 1.0) if self.v[i] > 0 else 0.0
            out[i] = -signal * sec.inverse(self.h0) * g
            self.tau[i] = (1 - signal) * self.tau[i] + 1
            self.g_prev[i], self.p_prev[i] = g, p
        return out

    def stat(self, name):
        return np.array([getattr(s, name) for s in self.secants])


class NumpySecantCurvature:
    def __init__(self, n, k=2.0, h0=1.0):
        self.k, self.h0 = k, h0
        self.tau = np.zeros(n)
        self.secants = [Secant() for _ in range(n)]
        self.g_prev = np.zeros(n)
        self.p_prev = np.zeros(n)

    def step(self, grad, params):
        out = np.zeros_like(grad)
        for i in range(len(grad)):
            g, p, sec = grad[i], params[i], self.secants[i]
            if self.tau[i] > 0 and moved(p, self.p_prev[i]):
                dg, dth = g - self.g_prev[i], p - self.p_prev[i]
                if sec.outlier(dg, dth, self.k):
                    self.tau[i] += 1
                sec.add(dg, dth, self.tau[i])
                agreement = min(sec.a ** 2 / (sec.b * sec.c), 1.0) if sec.b > 0 and sec.c > 0 else 0.0
                self.tau[i] = (1 - agreement) * self.tau[i] + 1
            self.tau[i] = max(self.tau[i], 1.0)
            out[i] = g * sec.inverse(self.h0)
            self.g_prev[i], self.p_prev[i] = g, p
        return out


# A noisy quadratic: curvatures spread over three decades, one coordinate with a zero gradient.
CURVATURES = np.array([10.0, 1.0, 0.1, 3.0, 0.0])


def noisy_gradient(theta, rng, sigma):
    return CURVATURES * theta + sigma * rng.normal(size=theta.shape) * (CURVATURES > 0)


def run_pair(opt, reference, steps, sigma, seed=0, rtol=1e-8):
    """The adaptix optimizer (jitted, on a dict of two leaves) and the reference, on one gradient stream."""
    rng = np.random.default_rng(seed)
    theta = np.array([1.0, -2.0, 3.0, 0.5, 1.0])
    params = {"a": jnp.asarray(theta[:2]), "b": jnp.asarray(theta[2:])}
    state = opt.init(params)
    step = jax.jit(opt.update)
    for _ in range(steps):
        g = noisy_gradient(theta, rng, sigma)
        grads = {"a": jnp.asarray(g[:2]), "b": jnp.asarray(g[2:])}
        updates, state = step(grads, state, params)
        expected = reference.step(g, theta)
        got = np.concatenate([np.asarray(updates["a"]), np.asarray(updates["b"])])
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=1e-12)
        theta = theta + expected
        params = optax.apply_updates(params, updates)
    return state


@pytest.mark.parametrize("sigma", [0.0, 0.3])
def test_vsgd_matches_numpy_reference(x64, sigma):
    reference = NumpyVsgd(5)
    state = run_pair(adaptix.vsgd(), reference, steps=40, sigma=sigma)
    inner = state[0]
    expected = {"g": reference.g, "v": reference.v, "tau": reference.tau, "a": reference.stat("a"),
                "b": reference.stat("b"), "c": reference.stat("c")}
    for name, ours in (("g", inner.mu), ("v", inner.nu), ("a", inner.cross), ("b", inner.step_sq),
                       ("c", inner.change_sq), ("tau", inner.memory)):
        flat = np.concatenate([np.asarray(ours["a"]), np.asarray(ours["b"])])
        np.testing.assert_allclose(flat, expected[name], rtol=1e-9, atol=1e-300, err_msg=name)


def test_vsgd_matches_reference_with_other_hyperparameters(x64):
    reference = NumpyVsgd(5, C=5.0, n0=7.0, k=1.0, h0=0.25)
    run_pair(adaptix.vsgd(slow_start=5.0, initial_memory=7.0, outlier_threshold=1.0, initial_curvature=0.25),
             reference, steps=30, sigma=0.5, seed=1)


def test_secant_curvature_matches_numpy_reference(x64):
    # the stage alone returns +g/h; a descent needs the learning-rate stage: compare through it
    opt = adaptix.chain(adaptix.scale_by_secant_curvature(), adaptix.scale_by_learning_rate(0.5))
    reference = NumpySecantCurvature(5)

    class Descent:
        def step(self, g, p):
            return -0.5 * reference.step(g, p)

    # one secant's agreement a^2/(bc) is 1 up to an ulp (clipped, or not): the memory is 1 or 1 + ulp, and the
    # noisy quasi-Newton iteration amplifies that ulp along the trajectory (an outlier test flips by step 30)
    run_pair(opt, Descent(), steps=12, sigma=0.2, rtol=1e-8)


# ----------------------------------------------------------------------------
# Closed forms.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("make", [adaptix.scale_by_secant_curvature, adaptix.scale_by_vsgd])
def test_curvature_is_exact_on_a_quadratic_after_the_first_step(make, x64):
    """On f = sum(h theta^2) / 2 every secant is h: the weighted mean is h, its second moment h^2, from the first."""
    h = jnp.array([4.0, 0.5, 1e-3, 250.0])
    opt = make()
    state = opt.init(jnp.zeros(4))
    thetas = [jnp.array([1.0, -1.0, 2.0, 0.1]), jnp.array([0.3, 2.0, -5.0, 0.2]), jnp.array([-1.0, 0.7, 1.0, 3.0])]
    for theta in thetas:
        _, state = opt.update(h * theta, state, theta)
    np.testing.assert_allclose(state.cross / state.step_sq, h, rtol=1e-14)  # the slope of dg on dtheta
    np.testing.assert_allclose(state.change_sq / state.step_sq, h * h, rtol=1e-14)  # no scatter
    if make is adaptix.scale_by_secant_curvature:  # the output is then the Newton step g / h = theta
        theta = jnp.array([2.0, 3.0, 4.0, 5.0])
        np.testing.assert_allclose(opt.update(h * theta, state, theta)[0], theta, rtol=1e-14)


def test_first_step_is_the_slow_start():
    """Step 1: g_bar = g, v_bar = C g^2, no curvature yet: out = -(1/C) g / h0."""
    g = jnp.array([3.0, -0.5, 0.0])
    opt = adaptix.vsgd(slow_start=4.0, initial_curvature=2.0)
    out, _ = opt.update(g, opt.init(jnp.zeros(3)), jnp.zeros(3))
    np.testing.assert_allclose(out, -g / 8.0)


def test_without_slow_start_vsgd_is_newton_on_a_noiseless_quadratic(x64):
    """C = 1: the signal fraction is 1 and the memory 1, so the second step is g / h: the minimum, exactly."""
    h = jnp.array([10.0, 0.1, 2.5])
    opt = adaptix.vsgd(slow_start=1.0)
    theta = jnp.array([1.0, -3.0, 0.5])
    state = opt.init(theta)
    for _ in range(2):
        u, state = opt.update(h * theta, state, theta)
        theta = optax.apply_updates(theta, u)
    np.testing.assert_allclose(theta, 0.0, atol=1e-13)


def test_rate_tends_to_inverse_curvature_as_the_noise_vanishes(x64):
    """eta* = g_bar^2 / (v_bar h): on a noisy quadratic far from its minimum, eta* h -> 1 as sigma -> 0."""
    h = 2.0
    errors = []
    for sigma in (1e-1, 1e-3, 1e-5):
        rng = np.random.default_rng(0)
        opt = adaptix.scale_by_vsgd(slow_start=1.0)
        theta = jnp.array([100.0])
        state = opt.init(theta)
        step = jax.jit(opt.update)
        for _ in range(3):
            g = h * (theta - 1.0) + sigma * rng.normal(size=1)
            u, state = step(g, state, theta)
            theta = theta - u
        rate = float(u[0] / g[0])
        errors.append(abs(rate * h - 1))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-6


def test_anneals_under_noise(x64):
    """At the minimum of a noisy quadratic the signal fraction falls, the memory grows, the rate shrinks."""
    rng = np.random.default_rng(0)
    opt = adaptix.scale_by_vsgd()
    theta = jnp.zeros(200)
    state = opt.init(theta)
    step = jax.jit(opt.update)
    for _ in range(300):
        g = 1.0 * theta + rng.normal(size=200)
        u, state = step(g, state, theta)
        theta = theta - u
    assert float(jnp.median(state.memory)) > 10
    assert float(jnp.mean(theta ** 2)) < 0.5  # Newton's step (rate 1/h = 1) would sit at variance 1


def test_a_coordinate_that_never_moves_stays_finite():
    """Zero steps (learning rate 0) give no secant: the curvature stays unknown, nothing is NaN."""
    opt = adaptix.vsgd(learning_rate=0.0)
    theta = jnp.ones(3)
    state = opt.init(theta)
    for g in (jnp.array([1.0, 2.0, 0.0]), jnp.array([3.0, -1.0, 0.0])):
        u, state = opt.update(g, state, theta)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves((u, state)))
    np.testing.assert_array_equal(state[0].step_sq, 0.0)


# ----------------------------------------------------------------------------
# jit, structure, validation.
# ----------------------------------------------------------------------------


def _run(opt, step, steps=6):
    theta = {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array(0.3)}
    state = opt.init(theta)
    outs = []
    for i in range(steps):
        g = jax.tree.map(lambda t: 2.0 * t + 0.1 * (-1) ** i, theta)
        u, state = step(g, state, theta)
        theta = optax.apply_updates(theta, u)
        outs.append(u)
    return outs, state


@pytest.mark.parametrize("make", [adaptix.vsgd, adaptix.scale_by_secant_curvature])
def test_jit_equals_eager(make):
    opt = make()
    eager, _ = _run(opt, opt.update)
    jitted, _ = _run(opt, jax.jit(opt.update))
    for a, b in zip(eager, jitted):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6), a, b)


def test_state_structure_does_not_depend_on_hyperparameter_types():
    python = adaptix.vsgd(1.0, 2.0, 2.0, 2.0, 1.0)
    arrays = adaptix.vsgd(*(jnp.asarray(x, jnp.float32) for x in (1.0, 2.0, 2.0, 2.0, 1.0)))
    params = {"w": jnp.ones(3), "b": jnp.zeros((), jnp.bfloat16)}
    a, b = python.init(params), arrays.init(params)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    assert [x.dtype for x in jax.tree.leaves(a)] == [x.dtype for x in jax.tree.leaves(b)]
    out_a, _ = _run(python, python.update)
    out_b, _ = _run(arrays, arrays.update)
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(x, y), out_a, out_b)
    injected = adaptix.inject_hyperparams(adaptix.vsgd)(slow_start=3.0)
    inner = injected.init(params).inner_state
    assert jax.tree.structure(inner) == jax.tree.structure(adaptix.vsgd(slow_start=3.0).init(params))


def test_memory_is_float32_for_bfloat16_parameters():
    state = adaptix.scale_by_vsgd().init({"w": jnp.zeros(2, jnp.bfloat16)})
    assert state.memory["w"].dtype == jnp.float32
    assert state.mu["w"].dtype == jnp.bfloat16


@pytest.mark.parametrize("name, value, match", [
    ("slow_start", 0.5, r"vsgd: slow_start must be finite and in \[1, inf\), got 0.5"),
    ("initial_memory", 0.0, r"vsgd: initial_memory must be finite and in \[1, inf\)"),
    ("outlier_threshold", 0.0, r"vsgd: outlier_threshold must be finite and in \(0, inf\)"),
    ("initial_curvature", -1.0, r"vsgd: initial_curvature must be finite and in \(0, inf\)"),
    ("learning_rate", -1.0, r"vsgd: learning_rate must be finite and in \[0, inf\)"),
])
def test_bad_hyperparameters_are_refused_by_name(name, value, match):
    with pytest.raises(ValueError, match=match):
        adaptix.vsgd(**{name: value})


def test_secant_curvature_validates_and_needs_params():
    with pytest.raises(ValueError, match="scale_by_secant_curvature: outlier_threshold"):
        adaptix.scale_by_secant_curvature(outlier_threshold=float("inf"))
    for opt, owner in ((adaptix.scale_by_secant_curvature(), "scale_by_secant_curvature"),
                       (adaptix.vsgd(), "scale_by_vsgd")):
        with pytest.raises(ValueError, match=f"{owner}: params are required"):
            opt.update(jnp.ones(2), opt.init(jnp.zeros(2)))


def test_mismatched_gradient_tree_is_refused():
    opt = adaptix.vsgd()
    state = opt.init({"w": jnp.zeros(2)})
    with pytest.raises(ValueError, match="does not match"):
        opt.update({"v": jnp.zeros(2)}, state, {"v": jnp.zeros(2)})


def _noisy_quadratic_gradients(h, steps, seed=0):
    """Per-step minima c_t ~ N(0, 1): the minibatch gradient at theta is h * (theta - c_t)."""
    return jax.random.normal(jax.random.PRNGKey(seed), (steps, h.shape[0]))


@pytest.mark.parametrize("make", [adaptix.scale_by_secant_curvature, adaptix.scale_by_vsgd])
def test_same_minibatch_secant_is_exact_under_noise(make):
    # with grad_fn (this step's minibatch at the previous parameters) the noise cancels in g_t - g(theta_{t-1}):
    # on a quadratic the secant is h exactly at every step, where consecutive minibatch gradients are biased
    h = jnp.asarray(np.logspace(-1, 1, 8), jnp.float32)
    minima = _noisy_quadratic_gradients(h, 60)
    estimates = {}
    for same_batch in (False, True):
        opt = adaptix.chain(make(), adaptix.scale_by_learning_rate(0.5 if make is adaptix.scale_by_secant_curvature
                                                                    else 1.0))
        theta = jnp.full(8, 3.0)
        state = opt.init(theta)
        for c in minima:
            grad_fn = (lambda p, c=c: h * (p - c)) if same_batch else None
            u, state = opt.update(h * (theta - c), state, theta, grad_fn=grad_fn)
            theta = theta + u
        inner = state[0]
        estimates[same_batch] = np.abs(np.asarray(inner.cross)) / np.asarray(inner.step_sq)
    np.testing.assert_allclose(estimates[True], h, rtol=1e-4)
    assert np.max(np.abs(np.log(estimates[False] / h))) > 0.1  # consecutive gradients: visibly off


def test_grad_fn_must_fit_the_gradient():
    opt = adaptix.vsgd()
    theta = jnp.ones(3)
    state = opt.init(theta)
    with pytest.raises(ValueError, match="grad_fn"):
        opt.update(theta, state, theta, grad_fn=lambda p: jnp.ones(4))
    with pytest.raises(TypeError, match="grad_fn must be a function"):
        opt.update(theta, state, theta, grad_fn=1.0)
