"""AdaBayes and AdaBayes-FP (Aitchison, 2020) against a NumPy port of the author's reference code.

:class:`ReferenceAdaBayes` re-expresses, in float64 NumPy, the ``step`` of the two PyTorch
optimizers the author published with the paper. It keeps their units (the gradient of the
*summed* minibatch loss, ``B`` times the mean-loss gradient adaptix takes), their hyperparameter
names, their update order and their constants; agreement therefore also checks adaptix's change
to mean-loss units and the mapping of the hyperparameters (:func:`_adaptix_for`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptix


class ReferenceAdaBayes:
    """``AdaBayes.step`` / ``AdaBayesFP.step`` of the author's code, for one parameter array, in float64.

    Source read: https://github.com/LaurenceA/adabayes at commit
    7ea53ed22ec23b379d5e0d50a4b0ea1f1f04a69a (2020-12-12), files ``adabayes.py`` (class
    ``AdaBayes``: ``__init__`` lines 25-46, ``step`` lines 48-112) and ``adabayesfp.py`` (class
    ``AdaBayesFP``: ``__init__`` lines 25-46, ``step`` lines 48-105). Rewritten here from those
    lines, not copied; the PyTorch in-place calls become NumPy expressions in the same order:

    1. the mean-loss gradient is multiplied by ``batch_size`` (the reference does this in place,
       on ``p.grad`` itself);
    2. at the first step: step 0, both moments 0 and (AdaBayes only) the posterior variance
       ``lr_sgd / batch_size``;
    3. the step count is incremented; Adam's two EMAs of the summed-loss gradient are updated
       (AdaBayes updates the second one too, and never reads it), and both bias corrections formed;
    4. the prior variance is rebuilt as ``lr * (lr_sgd / lr) / batch_size``: the optimizer stores
       the ratio ``lr_sgd / lr`` at construction (kept here, with its rounding);
    5. AdaBayes: ``s2post <- s2post * exp(-lr^2/sigma2) + sigma2 * (1 - exp(-lr^2/sigma2))``, then
       ``s2post <- 1 / (1 / s2post + g^2)``; the parameter moves by ``-exp_avg * s2post / bc1``.
       AdaBayes-FP: ``v = exp_avg_sq / bc2 + eps``, ``h = 0.5 / sigma2``,
       ``lpost = sqrt(v / lr^2 + h^2) + h``; the parameter moves by ``-exp_avg / lpost / bc1``;
    6. if ``weight_drift`` is not 0 the parameter is multiplied, *after* the move, by
       ``1 - (weight_drift / lr) * lr`` (AdaBayes: the stored ratio times the current lr) or by
       ``1 - weight_drift`` (AdaBayes-FP).

    The defaults are the reference's. ``undrifted`` keeps the parameter after step 5 and before 6.
    """

    def __init__(self, lr=1e-3, lr_sgd=1e-1, betas=(0.9, 0.999), eps=1e-8, weight_drift=5e-5, batch_size=1,
                 fixed_point=False):
        self.lr, self.lr_sgd, self.betas, self.eps = lr, lr_sgd, betas, eps
        self.weight_drift, self.batch_size, self.fixed_point = weight_drift, batch_size, fixed_point
        self.lr_ratio, self.weight_drift_ratio = lr_sgd / lr, weight_drift / lr  # what the group stores
        self.count, self.exp_avg, self.exp_avg_sq, self.s2post, self.undrifted = 0, None, None, None, None

    def step(self, w, grad):
        w = np.asarray(w, np.float64)
        g = np.asarray(grad, np.float64) * self.batch_size  # summed-loss gradient
        if self.exp_avg is None:
            self.exp_avg, self.exp_avg_sq = np.zeros_like(w), np.zeros_like(w)
            if not self.fixed_point:
                self.s2post = np.full_like(w, self.lr_sgd / self.batch_size)
        beta1, beta2 = self.betas
        self.count += 1
        self.exp_avg = self.exp_avg * beta1 + (1 - beta1) * g
        self.exp_avg_sq = self.exp_avg_sq * beta2 + (1 - beta2) * g * g
        correction1, correction2 = 1 - beta1**self.count, 1 - beta2**self.count
        sigma2 = self.lr * self.lr_ratio / self.batch_size
        if self.fixed_point:
            v = self.exp_avg_sq / correction2 + self.eps
            half = 0.5 / sigma2
            inverse_rate = np.sqrt(v * (1 / self.lr**2) + half**2) + half
            w = w + (-1 / correction1) * (self.exp_avg / inverse_rate)
        else:
            ratio = self.lr**2 / sigma2
            prior = self.s2post * math.exp(-ratio) + sigma2 * (1 - math.exp(-ratio))
            self.s2post = 1 / (1 / prior + g * g)
            w = w + (-1 / correction1) * self.exp_avg * self.s2post
        self.undrifted = w
        if self.weight_drift != 0:
            drift = self.weight_drift if self.fixed_point else self.weight_drift_ratio * self.lr
            w = w * (1 - drift)
        return w


def _adaptix_for(fixed_point, lr=1e-3, lr_sgd=1e-1, betas=(0.9, 0.999), eps=1e-8, weight_drift=5e-5, batch_size=1):
    """The adaptix alias with the reference's hyperparameters (its names and defaults) mapped onto adaptix's.

    ``eps`` is added to the summed-loss second moment there, to the mean-loss one here: ``eps / B^2``.
    AdaBayes has no ``b2`` or ``eps`` (the reference's are unused). ``weight_drift`` becomes
    ``weight_decay``, applied in adaptix's order (see :func:`_in_reference_order`).
    """
    if fixed_point:
        return adaptix.adabayes_fp(lr, lr_sgd, betas[0], betas[1], eps / batch_size**2, weight_decay=weight_drift)
    return adaptix.adabayes(lr, lr_sgd, betas[0], batch_size=batch_size, weight_decay=weight_drift)


def _in_reference_order(fixed_point, lr=1e-3, lr_sgd=1e-1, betas=(0.9, 0.999), eps=1e-8, weight_drift=5e-5,
                        batch_size=1):
    """The same filter, with the decay applied as the reference does: ``(w - s m_hat)(1 - wd)``.

    ``-(1 - wd) s m_hat - wd w``: the step is shrunk by ``1 - wd`` before the decay is added.
    """
    if fixed_point:
        filt = adaptix.scale_by_posterior_variance_fp(lr, lr_sgd, betas[1], eps / batch_size**2)
    else:
        filt = adaptix.scale_by_posterior_variance(lr, lr_sgd, batch_size)
    return adaptix.chain(adaptix.trace(betas[0], ema=True), adaptix.bias_correction(betas[0]), filt,
                         adaptix.scale(1 - weight_drift), adaptix.add_decayed_weights(weight_drift),
                         adaptix.scale(-1.0))


def _problem(n=8, seed=0):
    """A noisy quadratic's mean-loss gradient ``h (w - c) + noise_t``; curvatures from SGD-like to Adam-like."""
    rng = np.random.default_rng(seed)
    curvature, centre = np.geomspace(1e-3, 3.0, n), rng.standard_normal(n)
    noise = rng.standard_normal((10_000, n)) * np.geomspace(1e-3, 0.5, n)
    return lambda w, t: curvature * (w - centre) + noise[t]


def _w0(n=8):
    return np.linspace(-1.0, 1.5, n)


def _trajectories(opt, reference, steps, seed=0):
    """Both optimizers free-running on the problem, each gradient taken at its own parameters."""
    grad = _problem(seed=seed)
    w_ref = w = _w0()
    w = jnp.asarray(w)
    state, update = opt.init(w), jax.jit(opt.update)
    ours, theirs = [], []
    for t in range(steps):
        u, state = update(jnp.asarray(grad(np.asarray(w), t)), state, w)
        w = optax.apply_updates(w, u)
        w_ref = reference.step(w_ref, grad(w_ref, t))
        ours.append(np.asarray(w))
        theirs.append(w_ref)
    return np.stack(ours), np.stack(theirs)


def _forced(opt, reference, steps, seed=0):
    """adaptix's updates taken at the reference's parameters (and gradients), with the reference's steps."""
    grad = _problem(seed=seed)
    w = _w0()
    state, update = opt.init(jnp.asarray(w)), jax.jit(opt.update)
    rows = []
    for t in range(steps):
        g = grad(w, t)
        u, state = update(jnp.asarray(g), state, jnp.asarray(w))
        w_next = reference.step(w, g)
        rows.append((w, np.asarray(u), reference.undrifted - w, w_next - w))
        w = w_next
    return rows


_CASES = {  # the reference's names; weight_drift 0 here (the order of the decay is tested on its own)
    "reference defaults": dict(weight_drift=0.0),
    "B=32": dict(lr=1e-2, lr_sgd=0.05, betas=(0.8, 0.99), eps=1e-6, weight_drift=0.0, batch_size=32),
    "B=128": dict(lr=3e-3, lr_sgd=0.2, weight_drift=0.0, batch_size=128),
}
STEPS = 400


@pytest.mark.parametrize("fixed_point", [False, True], ids=["adabayes", "adabayes_fp"])
@pytest.mark.parametrize("kwargs", _CASES.values(), ids=_CASES.keys())
def test_matches_the_reference_code(x64, fixed_point, kwargs):
    """Free-running trajectories (each gradient at its own parameters): agree to ~1e-15 absolute, ~1e-12 relative."""
    ours, theirs = _trajectories(_adaptix_for(fixed_point, **kwargs),
                                 ReferenceAdaBayes(fixed_point=fixed_point, **kwargs), STEPS)
    for t, (a, b) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13, err_msg=f"step {t + 1}")


_DRIFTS = {
    "reference defaults (drift 5e-5)": {},
    "B=32, drift 1e-3": dict(lr=1e-2, lr_sgd=0.05, betas=(0.8, 0.99), eps=1e-6, weight_drift=1e-3, batch_size=32),
}


@pytest.mark.parametrize("fixed_point", [False, True], ids=["adabayes", "adabayes_fp"])
@pytest.mark.parametrize("kwargs", _DRIFTS.values(), ids=_DRIFTS.keys())
def test_weight_decay_differs_from_the_reference_only_in_its_order(x64, fixed_point, kwargs):
    """The reference shrinks the parameters after the step, ``(w - s m_hat)(1 - wd)``; adaptix adds ``-wd w``.

    With the step shrunk first (:func:`_in_reference_order`) adaptix's chain is the reference; the alias's
    update, at the reference's parameters, is the reference's undrifted step minus ``wd w`` (to rounding).
    """
    wd = kwargs.get("weight_drift", 5e-5)
    ours, theirs = _trajectories(_in_reference_order(fixed_point, **kwargs),
                                 ReferenceAdaBayes(fixed_point=fixed_point, **kwargs), STEPS)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-13)
    rows = _forced(_adaptix_for(fixed_point, **kwargs), ReferenceAdaBayes(fixed_point=fixed_point, **kwargs), STEPS)
    for t, (w, u, undrifted_step, step) in enumerate(rows):
        np.testing.assert_allclose(u, undrifted_step - wd * w, rtol=1e-10, atol=1e-15, err_msg=f"step {t + 1}")
        # ... which is the reference's step plus wd times the undrifted step: second order
        np.testing.assert_allclose(u - step, wd * undrifted_step, rtol=1e-6, atol=1e-15, err_msg=f"step {t + 1}")


def test_the_port_is_the_reference_at_its_first_step():
    """One step by hand, in the reference's (summed-loss) units: the port's constants and update order."""
    lr, lr_sgd, batch, g = 1e-2, 0.05, 4, np.array([0.5])
    port = ReferenceAdaBayes(lr, lr_sgd, weight_drift=1e-3, batch_size=batch)
    w1 = port.step(np.array([1.0]), g)
    sigma2, g_sum = lr_sgd / batch, batch * g
    prior = sigma2  # a prior variance at its stationary value is unchanged by the prior step
    s2post = 1 / (1 / prior + g_sum**2)
    np.testing.assert_allclose(port.s2post, s2post, rtol=1e-14)
    np.testing.assert_allclose(w1, (1 - s2post * g_sum) * (1 - 1e-3), rtol=1e-14)  # m_hat = g_sum at step 1
    fp = ReferenceAdaBayes(lr, lr_sgd, eps=0.0, weight_drift=0.0, batch_size=batch, fixed_point=True)
    h = batch / (2 * lr_sgd)
    np.testing.assert_allclose(fp.step(np.array([1.0]), g), 1 - g_sum / (h + np.sqrt(h * h + g_sum**2 / lr**2)),
                               rtol=1e-14)


def test_fixed_point_is_the_root_of_the_steady_state_quadratic(x64):
    """AdaBayes-FP's scale is the positive root of  v s^2 + (eta^2 / alpha) s - eta^2 = 0  (closed form).

    The steady state of the filter's recursion to first order in eta^2 / sigma^2, in mean-loss units (the
    docstring's equation); the root is computed here as ``2 c / (b + sqrt(b^2 + 4 a c))``, there as the
    reference code's ``1 / (1/(2 alpha) + sqrt(1/(4 alpha^2) + v / eta^2))``.
    """
    eta, alpha = 1e-2, 0.05
    v = jnp.geomspace(1e-10, 1e4, 15)
    fp = adaptix.scale_by_posterior_variance_fp(eta, alpha, decay=0.0, eps=0.0)  # decay 0: v_hat = g^2
    s = np.asarray(fp.update(jnp.ones_like(v), fp.init(v), chain_input=jnp.sqrt(v))[0])
    b = eta**2 / alpha
    root = 2 * eta**2 / (b + np.sqrt(b * b + 4 * np.asarray(v) * eta**2))  # the + root, without cancellation
    np.testing.assert_allclose(s, root, rtol=1e-13)
    np.testing.assert_allclose(np.asarray(v) * s**2 + b * s - eta**2, 0.0, atol=1e-14 * eta**2)


def _grads(steps, n=6, seed=0):
    rng = np.random.default_rng(seed)
    scales = np.geomspace(1e-3, 3.0, n)  # from SGD-like (tiny gradients) to Adam-like coordinates
    return [(rng.standard_normal(n) + 0.3) * scales for _ in range(steps)]


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
