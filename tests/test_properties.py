"""Property-based tests (hypothesis): adaptix equals a float64 NumPy reference of the equations.

For random pytrees (nested dicts, lists and tuples, ``None`` leaves, 0-d arrays, Python floats and
zero-size arrays), float32 or float64 (the latter under ``jax.enable_x64(True)``), random valid
hyperparameters and a few steps of random gradients (with exact zeros, sometimes a whole zero
step), each optimizer's updates equal an independent NumPy implementation written below from
the published equations, in float64, on the flattened leaves. Also checked: the updates have the
parameters' tree structure and dtypes, and the state keeps its structure, dtypes and weak types
across steps.

Examples per test: ``MAX_EXAMPLES`` (25; ``ADAPTIX_PROPERTY_EXAMPLES`` overrides), derandomized
so CI is reproducible (``ADAPTIX_PROPERTY_RANDOM=1`` draws fresh examples, for a longer local
search). ``CASES_RUN`` counts the cases executed; the last test checks the total
(``pytest -s`` prints it).
"""

from __future__ import annotations

import collections
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import adaptix

MAX_EXAMPLES = int(os.environ.get("ADAPTIX_PROPERTY_EXAMPLES", "25"))
STEPS = 4
CASES_RUN: collections.Counter = collections.Counter()

SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("ADAPTIX_PROPERTY_RANDOM"),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ----------------------------------------------------------------------------
# Strategies: pytrees, dtypes, hyperparameters.
# ----------------------------------------------------------------------------

SHAPES = [(), (1,), (3,), (2, 3), (0,), (0, 4), (2, 0, 3), "python_float"]
leaf = st.one_of(st.sampled_from(SHAPES).map(lambda s: ("leaf", s)), st.none())
trees = st.recursive(
    leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(st.text("abcxyz", min_size=1, max_size=3), children, max_size=3),
    ),
    max_leaves=6,
).filter(lambda tree: tree is not None)  # params=None means "no params" to weight decay
dtypes = st.sampled_from(["float32", "float64"])
seeds = st.integers(0, 2**32 - 1)
rates = st.floats(1e-4, 1.0)
# 0 or at least 1e-4: a decay of 1e-40 is 0 in float32 but not in the float64 reference, and a
# product like 1e-40 * m decides the sign of a zero-gradient step (found by hypothesis).
decays = st.one_of(st.just(0.0), st.floats(1e-4, 0.999))
eps_values = st.one_of(st.just(0.0), st.floats(1e-8, 1e-2))


def materialise(spec, rng, dtype, scale=1.0, zero_fraction=0.0, gradient=False):
    """A concrete pytree from a spec: arrays of ``dtype`` (Python floats stay Python floats)."""
    if spec is None:
        return None
    if isinstance(spec, tuple) and len(spec) == 2 and spec[0] == "leaf":
        shape = spec[1]
        if shape == "python_float":
            value = 0.0 if rng.random() < zero_fraction else float(rng.normal() * scale)
            # a Python float parameter; its gradient is what jax.grad gives: a weak 0-d array
            return jnp.asarray(value) if gradient else value
        values = np.array(rng.normal(size=shape) * scale, np.float64)
        values[rng.random(size=shape) < zero_fraction] = 0.0
        return jnp.asarray(values, dtype)
    if isinstance(spec, dict):
        return {k: materialise(v, rng, dtype, scale, zero_fraction, gradient) for k, v in spec.items()}
    if isinstance(spec, tuple):
        return tuple(materialise(v, rng, dtype, scale, zero_fraction, gradient) for v in spec)
    return [materialise(v, rng, dtype, scale, zero_fraction, gradient) for v in spec]


def flat64(tree) -> np.ndarray:
    leaves = [np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(tree)]
    return np.concatenate(leaves) if leaves else np.zeros(0)


# ----------------------------------------------------------------------------
# The float64 NumPy references, from the equations (flat vectors; t counts from 1).
# ----------------------------------------------------------------------------


def safe_inverse(denominator):
    """1/d, and 0 where d == 0 (adaptix's documented choice for 0/0)."""
    with np.errstate(divide="ignore"):
        return np.where(denominator > 0, 1.0 / np.where(denominator > 0, denominator, 1.0), 0.0)


def ref_sgd(hp, p, grads):
    lr, mu, nesterov = hp["learning_rate"], hp.get("momentum"), hp.get("nesterov", False)
    trace, out = np.zeros_like(p), []
    for g in grads:
        if mu is None:
            d = g
        else:
            trace = g + mu * trace
            d = g + mu * trace if nesterov else trace
        u = -lr * d
        out.append(u)
        p = p + u
    return out


def ref_adagrad(hp, p, grads):
    lr, s, eps = hp["learning_rate"], np.full_like(p, hp["initial_accumulator_value"]), hp["eps"]
    out = []
    for g in grads:
        s = s + g**2
        denominator = np.sqrt(s + eps) if hp["eps_in_sqrt"] else np.sqrt(s) + eps
        out.append(-lr * g * np.where(s > 0, safe_inverse(denominator), 0.0))
    return out


def ref_rmsprop(hp, p, grads):
    lr, rho, eps = hp["learning_rate"], hp["decay"], hp["eps"]
    nu, mean = np.full_like(p, hp["initial_scale"]), np.zeros_like(p)
    momentum, trace, out = hp.get("momentum"), np.zeros_like(p), []
    for t, g in enumerate(grads, 1):
        nu = rho * nu + (1 - rho) * g**2
        mean = rho * mean + (1 - rho) * g
        nu_hat, mean_hat = nu, mean
        if hp["bias_correction"]:
            nu_hat, mean_hat = nu / (1 - rho**t), mean / (1 - rho**t)
        var = np.maximum(nu_hat - mean_hat**2, 0.0) if hp["centered"] else nu_hat
        denominator = np.sqrt(var + eps) if hp["eps_in_sqrt"] else np.sqrt(var) + eps
        step = -lr * g * safe_inverse(denominator)
        if momentum is not None:
            trace = step + momentum * trace
            step = step + momentum * trace if hp["nesterov"] else trace
        out.append(step)
    return out


def ref_adadelta(hp, p, grads):
    lr, rho, eps, wd = hp["learning_rate"], hp["rho"], hp["eps"], hp["weight_decay"]
    e_g, e_x, out = np.zeros_like(p), np.zeros_like(p), []
    for g in grads:
        g = g + wd * p
        e_g = rho * e_g + (1 - rho) * g**2
        delta = g * np.sqrt(e_x + eps) * safe_inverse(np.sqrt(e_g + eps))
        e_x = rho * e_x + (1 - rho) * delta**2
        u = -lr * delta
        out.append(u)
        p = p + u
    return out


def ref_adam_family(hp, p, grads, *, kind="adam"):
    """Adam, AdamW, AMSGrad (both maxima), NAdam (both momentum schedules)."""
    lr, b1, b2, eps = hp["learning_rate"], hp["b1"], hp["b2"], hp["eps"]
    eps_root, wd = hp.get("eps_root", 0.0), hp.get("weight_decay", 0.0)
    m, v, v_max, out = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p), []
    psi = hp.get("momentum_decay")
    mu_product = 1.0

    def mu_at(t):  # NAdam's momentum schedule
        return b1 if psi is None else b1 * (1 - 0.5 * 0.96 ** (t * psi))

    for t, g in enumerate(grads, 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        v_hat = v / (1 - b2**t)
        if kind == "amsgrad":
            if hp["debias_before_max"]:
                v_max = np.maximum(v_max, v_hat)
                v_hat = v_max
            else:
                v_max = np.maximum(v_max, v)
                v_hat = v_max / (1 - b2**t)
        if kind == "nadam":
            mu_product = mu_product * mu_at(t)
            m_hat = mu_at(t + 1) * m / (1 - mu_product * mu_at(t + 1)) + (1 - mu_at(t)) * g / (1 - mu_product)
        else:
            m_hat = m / (1 - b1**t)
        direction = m_hat * safe_inverse(np.sqrt(v_hat + eps_root) + eps)
        u = -lr * (direction + wd * p)
        out.append(u)
        p = p + u
    return out


def ref_adamax(hp, p, grads):
    lr, b1, b2, eps = hp["learning_rate"], hp["b1"], hp["b2"], hp["eps"]
    m, norm, out = np.zeros_like(p), np.zeros_like(p), []
    for t, g in enumerate(grads, 1):
        m = b1 * m + (1 - b1) * g
        norm = np.maximum(b2 * norm, np.abs(g) + eps)
        out.append(-lr * m / (1 - b1**t) * safe_inverse(norm))
    return out


def ref_lion(hp, p, grads):
    lr, b1, b2, wd = hp["learning_rate"], hp["b1"], hp["b2"], hp["weight_decay"]
    m, out = np.zeros_like(p), []
    for g in grads:
        u = -lr * (np.sign(b1 * m + (1 - b1) * g) + wd * p)
        m = b2 * m + (1 - b2) * g
        out.append(u)
        p = p + u
    return out


def ref_sign_sgd(hp, p, grads):
    return [-hp["learning_rate"] * np.sign(g) for g in grads]


def ref_signum(hp, p, grads):
    m, out = np.zeros_like(p), []
    for g in grads:
        m = hp["beta"] * m + (1 - hp["beta"]) * g
        out.append(-hp["learning_rate"] * np.sign(m))
    return out


def ref_rprop(hp, p, grads):
    step, previous, out = np.full_like(p, hp["learning_rate"]), np.zeros_like(p), []
    for g in grads:
        agreement = np.sign(g * previous)
        factor = np.where(agreement > 0, hp["eta_plus"], np.where(agreement < 0, hp["eta_minus"], 1.0))
        step = np.clip(step * factor, hp["min_step_size"], hp["max_step_size"])
        out.append(-np.where(agreement < 0, 0.0, np.sign(g) * step))
        previous = np.where(agreement < 0, 0.0, g)
    return out


# ----------------------------------------------------------------------------
# The check.
# ----------------------------------------------------------------------------


def check(name, make, hp, reference, tree_spec, dtype, seed, discontinuous=False):
    CASES_RUN[name] += 1
    if dtype == "float64":
        with jax.enable_x64(True):
            _check(make, hp, reference, tree_spec, jnp.float64, seed, discontinuous)
    else:
        _check(make, hp, reference, tree_spec, jnp.float32, seed, discontinuous)


def avals(tree):
    return [(jnp.shape(x), jnp.result_type(x), getattr(jax.typeof(x), "weak_type", False))
            for x in jax.tree.leaves(tree)]


def _check(make, hp, reference, tree_spec, dtype, seed, discontinuous):
    rng = np.random.default_rng(seed)
    params = materialise(tree_spec, rng, dtype)
    scale = float(10.0 ** rng.uniform(-2, 1))
    grads = [materialise(tree_spec, rng, dtype, scale, 0.2, gradient=True) for _ in range(STEPS)]
    if rng.random() < 0.3:  # a whole zero step
        grads[int(rng.integers(STEPS))] = jax.tree.map(lambda g: g * 0.0, grads[0])

    opt = make(**hp)
    state = opt.init(params)
    state_avals, state_def = avals(state), jax.tree.structure(state)
    outputs = []
    p = params
    for g in grads:
        updates, state = opt.update(g, state, p)
        assert jax.tree.structure(updates) == jax.tree.structure(params)
        for u, x in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
            assert jnp.result_type(u) == jnp.result_type(x)
            assert jnp.shape(u) == jnp.shape(x)
        assert jax.tree.structure(state) == state_def
        assert avals(state) == state_avals, "the state's types changed across a step"
        outputs.append(flat64(updates))
        p = optax.apply_updates(p, updates)

    expected = reference(hp, flat64(params), [flat64(g) for g in grads])
    if dtype == jnp.float64:
        rtol, atol = 1e-9, 1e-12
    else:
        rtol, atol = 2e-4, 1e-6
    for step, (got, want) in enumerate(zip(outputs, expected)):
        assert np.all(np.isfinite(got)), f"step {step}: non-finite update"
        tolerance = atol * (1.0 + np.max(np.abs(want), initial=0.0)) + rtol * np.abs(want)
        close = np.abs(got - want) <= tolerance
        if discontinuous and dtype != jnp.float64:
            # sign-based steps: a float32 rounding may flip the sign of a near-zero argument;
            # tolerated only where that argument is itself at rounding level (rare).
            close |= np.abs(np.abs(got - want) - 2 * np.abs(want)) <= tolerance
        assert np.all(close), (
            f"step {step}: max |got - want| = {np.max(np.abs(got - want))}\n got={got}\nwant={want}"
        )


# ----------------------------------------------------------------------------
# One property per optimizer.
# ----------------------------------------------------------------------------


@SETTINGS
@given(trees, dtypes, seeds, rates, st.one_of(st.none(), decays), st.booleans())
def test_sgd(tree, dtype, seed, lr, momentum, nesterov):
    hp = dict(learning_rate=lr, momentum=momentum, nesterov=nesterov and momentum is not None)
    check("sgd", adaptix.sgd, hp, ref_sgd, tree, dtype, seed)


@SETTINGS
@given(trees, dtypes, seeds, rates, st.one_of(st.just(0.0), st.floats(1e-3, 1.0)), eps_values, st.booleans())
def test_adagrad(tree, dtype, seed, lr, initial, eps, eps_in_sqrt):
    hp = dict(learning_rate=lr, initial_accumulator_value=initial, eps=eps, eps_in_sqrt=eps_in_sqrt)
    check("adagrad", adaptix.adagrad, hp, ref_adagrad, tree, dtype, seed)


@SETTINGS
@given(trees, dtypes, seeds, rates, st.floats(0.5, 0.999), eps_values, st.booleans(),
       st.one_of(st.just(0.0), st.floats(1e-3, 1.0)), st.one_of(st.none(), decays), st.booleans(), st.booleans())
def test_rmsprop(tree, dtype, seed, lr, decay, eps, eps_in_sqrt, initial, momentum, nesterov, bias_correction):
    hp = dict(learning_rate=lr, decay=decay, eps=eps, eps_in_sqrt=eps_in_sqrt, initial_scale=initial,
              centered=False, momentum=momentum, nesterov=nesterov and momentum is not None,
              bias_correction=bias_correction)
    check("rmsprop", adaptix.rmsprop, hp, ref_rmsprop, tree, dtype, seed)


@SETTINGS
@given(trees, dtypes, seeds, rates, st.floats(0.5, 0.99), st.floats(1e-4, 1e-1), st.booleans(),
       st.one_of(st.none(), decays))
def test_rmsprop_centered(tree, dtype, seed, lr, decay, eps, eps_in_sqrt, momentum):
    # Centered: the variance v - m**2 cancels; eps >= 1e-4 and decay >= 0.5 keep float32 well
    # conditioned (with bias correction, step 1's variance g**2 - g**2 is pure rounding).
    hp = dict(learning_rate=lr, decay=decay, eps=eps, eps_in_sqrt=eps_in_sqrt, initial_scale=0.0,
              centered=True, momentum=momentum, nesterov=False, bias_correction=False)
    check("rmsprop_centered", adaptix.rmsprop, hp, ref_rmsprop, tree, dtype, seed)


@SETTINGS
@given(trees, dtypes, seeds, st.floats(0.1, 2.0), decays, st.floats(1e-8, 1e-2), st.one_of(st.just(0.0), rates))
def test_adadelta(tree, dtype, seed, lr, rho, eps, weight_decay):
    hp = dict(learning_rate=lr, rho=rho, eps=eps, weight_decay=weight_decay)
    check("adadelta", adaptix.adadelta, hp, ref_adadelta, tree, dtype, seed)


adam_hyperparameters = st.fixed_dictionaries(
    dict(learning_rate=rates, b1=decays, b2=decays, eps=eps_values,
         eps_root=st.one_of(st.just(0.0), st.floats(1e-10, 1e-4)))
)


@SETTINGS
@given(trees, dtypes, seeds, adam_hyperparameters)
def test_adam(tree, dtype, seed, hp):
    check("adam", adaptix.adam, hp, ref_adam_family, tree, dtype, seed)


@SETTINGS
@given(trees, dtypes, seeds, adam_hyperparameters, st.floats(0.0, 0.5))
def test_adamw(tree, dtype, seed, hp, weight_decay):
    hp = dict(hp, weight_decay=weight_decay)
    check("adamw", adaptix.adamw, hp, ref_adam_family, tree, dtype, seed)


@SETTINGS
@given(trees, dtypes, seeds, adam_hyperparameters, st.booleans())
def test_amsgrad(tree, dtype, seed, hp, debias_before_max):
    hp = dict(hp, debias_before_max=debias_before_max)
    check("amsgrad", adaptix.amsgrad, hp, lambda h, p, g: ref_adam_family(h, p, g, kind="amsgrad"),
          tree, dtype, seed)


@SETTINGS
@given(trees, dtypes, seeds, adam_hyperparameters, st.one_of(st.none(), st.floats(0.0, 0.1)))
def test_nadam(tree, dtype, seed, hp, momentum_decay):
    hp = dict(hp, momentum_decay=momentum_decay)
    check("nadam", adaptix.nadam, hp, lambda h, p, g: ref_adam_family(h, p, g, kind="nadam"), tree, dtype, seed)


@SETTINGS
@given(trees, dtypes, seeds, rates, decays, decays, eps_values)
def test_adamax(tree, dtype, seed, lr, b1, b2, eps):
    hp = dict(learning_rate=lr, b1=b1, b2=b2, eps=eps)
    check("adamax", adaptix.adamax, hp, ref_adamax, tree, dtype, seed)


@SETTINGS
@given(trees, dtypes, seeds, rates, decays, decays, st.floats(0.0, 0.5))
def test_lion(tree, dtype, seed, lr, b1, b2, weight_decay):
    hp = dict(learning_rate=lr, b1=b1, b2=b2, weight_decay=weight_decay)
    check("lion", adaptix.lion, hp, ref_lion, tree, dtype, seed, discontinuous=True)


@SETTINGS
@given(trees, dtypes, seeds, rates)
def test_sign_sgd(tree, dtype, seed, lr):
    check("sign_sgd", adaptix.sign_sgd, dict(learning_rate=lr), ref_sign_sgd, tree, dtype, seed)


@SETTINGS
@given(trees, dtypes, seeds, rates, decays)
def test_signum(tree, dtype, seed, lr, beta):
    hp = dict(learning_rate=lr, beta=beta)
    check("signum", adaptix.signum, hp, ref_signum, tree, dtype, seed, discontinuous=True)


@SETTINGS
@given(trees, dtypes, seeds, st.floats(1e-4, 0.1), st.floats(0.1, 0.9), st.floats(1.1, 2.0),
       st.floats(1e-6, 1e-4), st.floats(0.1, 50.0))
def test_rprop(tree, dtype, seed, lr, eta_minus, eta_plus, min_step, max_step):
    hp = dict(learning_rate=lr, eta_minus=eta_minus, eta_plus=eta_plus, min_step_size=min_step,
              max_step_size=max_step)
    check("rprop", adaptix.rprop, hp, ref_rprop, tree, dtype, seed)


PROPERTY_TESTS = ["sgd", "adagrad", "rmsprop", "rmsprop_centered", "adadelta", "adam", "adamw", "amsgrad",
                  "nadam", "adamax", "lion", "sign_sgd", "signum", "rprop"]


def test_zz_property_case_count(capsys):
    """Runs last in this module: every property ran its examples (skipped under -k selections)."""
    if set(CASES_RUN) != set(PROPERTY_TESTS):
        pytest.skip("not every property test ran in this session")
    total = sum(CASES_RUN.values())
    with capsys.disabled():
        print(f"\nproperty-based cases run: {total} ({dict(CASES_RUN)})")
    assert all(n >= min(MAX_EXAMPLES, 10) for n in CASES_RUN.values()), dict(CASES_RUN)
