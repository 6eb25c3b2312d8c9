"""Non-finite and degenerate gradients.

* Zero gradients never produce NaN or Inf: every optimizer of the table and the ``eps=0``
  variants of AdaGrad, RMSProp (plain, centered, with momentum), AdaDelta, Adam, AdamW, NAdam,
  AMSGrad, Adamax and RAdam, on a tree holding float32, bfloat16 and float16 leaves. Where the
  formula is ``0/0`` the update is 0; the documented exceptions are tested as such.
* Non-finite gradients are not hidden: they give non-finite updates, so
  ``optax.apply_if_finite`` can see them.
* Under ``optax.apply_if_finite`` a NaN/Inf step leaves params and the adaptix state bit-for-bit
  untouched, and the run afterwards equals the run that never saw the bad steps.
* The recipe in ``docs/reliability.md`` runs as written.
"""

from __future__ import annotations

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptix

from optimizers import OPTIMIZER_PARAMS, OptCase

DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"

# eps = 0 (and eps_root = 0): the denominators can be exactly 0.
EPS_ZERO = (
    OptCase("adagrad_eps0", adaptix.adagrad, dict(learning_rate=0.1, initial_accumulator_value=0.0, eps=0.0)),
    OptCase("adagrad_eps0_torch", adaptix.adagrad,
            dict(learning_rate=0.1, initial_accumulator_value=0.0, eps=0.0, eps_in_sqrt=False)),
    OptCase("rmsprop_eps0", adaptix.rmsprop, dict(learning_rate=0.01, eps=0.0)),
    OptCase("rmsprop_eps0_torch", adaptix.rmsprop, dict(learning_rate=0.01, eps=0.0, eps_in_sqrt=False)),
    OptCase("rmsprop_eps0_nesterov", adaptix.rmsprop,
            dict(learning_rate=0.01, eps=0.0, momentum=0.9, nesterov=True, bias_correction=True)),
    OptCase("rmsprop_centered_eps0", adaptix.rmsprop, dict(learning_rate=0.01, eps=0.0, centered=True)),
    OptCase("rmsprop_centered_eps0_debiased", adaptix.rmsprop,
            dict(learning_rate=0.01, eps=0.0, centered=True, bias_correction=True, eps_in_sqrt=False)),
    OptCase("adadelta_eps0", adaptix.adadelta, dict(learning_rate=1.0, eps=0.0)),
    OptCase("adam_eps0", adaptix.adam, dict(learning_rate=0.01, eps=0.0)),
    OptCase("adamw_eps0", adaptix.adamw, dict(learning_rate=0.01, eps=0.0, weight_decay=0.1), needs_params=True),
    OptCase("nadam_eps0", adaptix.nadam, dict(learning_rate=0.01, eps=0.0)),
    OptCase("nadam_eps0_torch", adaptix.nadam, dict(learning_rate=0.01, eps=0.0, momentum_decay=4e-3)),
    OptCase("amsgrad_eps0", adaptix.amsgrad, dict(learning_rate=0.01, eps=0.0)),
    OptCase("amsgrad_eps0_torch", adaptix.amsgrad, dict(learning_rate=0.01, eps=0.0, debias_before_max=False)),
    OptCase("adamax_eps0", adaptix.adamax, dict(learning_rate=0.01, eps=0.0)),
    OptCase("radam_eps0", adaptix.radam, dict(learning_rate=0.01, eps=0.0)),
)
ZERO_GRAD_PARAMS = OPTIMIZER_PARAMS + [c.param for c in EPS_ZERO]


def mixed_params():
    """One tree with float32, bfloat16 and float16 leaves (and a scalar)."""
    rng = np.random.default_rng(0)
    return {
        "f32": jnp.asarray(rng.normal(size=(2, 3)), jnp.float32),
        "bf16": jnp.asarray(rng.normal(size=(4,)), jnp.bfloat16),
        "f16": jnp.asarray(rng.normal(size=(4,)), jnp.float16),
        "scalar": jnp.asarray(0.5, jnp.float32),
    }


def zeros_like(tree):
    return jax.tree.map(jnp.zeros_like, tree)


def finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree)
               if jnp.issubdtype(jnp.result_type(x), jnp.inexact))


def all_zero(tree) -> bool:
    return all(bool(jnp.all(x == 0)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("case", ZERO_GRAD_PARAMS)
def test_zero_gradients_never_give_nan(case):
    opt = case.make()
    update = opt.update  # eager: cheaper than compiling 40 optimizers
    params = mixed_params()
    state = opt.init(params)
    for _ in range(3):  # zero gradients from the first step: m = v = 0
        updates, state = update(zeros_like(params), state, params)
        assert finite(updates) and finite(state), f"{case.id}: NaN/Inf from a zero gradient"
        if not case.needs_params:  # without weight decay nothing moves
            assert all_zero(updates)
        params = optax.apply_updates(params, updates)

    # Half the coordinates keep a zero gradient; the others get one.
    grads = jax.tree.map(lambda p: jnp.where(jnp.arange(p.size).reshape(p.shape) % 2 == 0, 0.5, 0.0)
                         .astype(p.dtype), params)
    updates, state = update(grads, state, params)
    assert finite(updates) and finite(state)
    if not case.needs_params:
        for u, g in zip(jax.tree.leaves(updates), jax.tree.leaves(grads)):
            # A full-matrix preconditioner maps g to Q f(L) Q^T g: exactly 0 at g's zeros in exact
            # arithmetic, a rounding error of the eigendecomposition (relative to the step) in floats.
            moved = jnp.abs(u) if case.elementwise else jnp.abs(u) / jnp.max(jnp.abs(u)) > 1e-4
            assert bool(jnp.all(jnp.where(g == 0, moved == 0, True))), f"{case.id}: a zero-gradient coordinate moved"

    for _ in range(8):  # and back to zero gradients: still finite (RAdam's adaptive phase included)
        updates, state = update(zeros_like(params), state, params)
        assert finite(updates) and finite(state)


def test_adam_eps0_first_step_zero_gradient_is_zero_not_nan():
    # Adam with eps=0 at a zero gradient on step 1: m = 0, v = 0, m_hat / sqrt(v_hat) = 0/0.
    # adaptix returns 0, the limit for a vanishing gradient; the bare formula is NaN.
    opt = adaptix.adam(0.1, eps=0.0)
    g = jnp.asarray([0.0, 2.0, -3.0])
    updates, _ = opt.update(g, opt.init(jnp.zeros(3)))
    assert float(updates[0]) == 0.0
    np.testing.assert_allclose(np.asarray(updates[1:]), [-0.1, 0.1], rtol=1e-5)
    with np.errstate(invalid="ignore"):
        assert np.isnan(np.float32(0.0) / np.sqrt(np.float32(0.0)))


def test_centered_rmsprop_eps0_zero_variance_does_not_move():
    # Documented choice: with eps=0 a variance estimate of exactly 0 gives a zero step where the
    # formula says g/0. With decay=0 the variance g**2 - g**2 is exactly 0 at every step.
    opt = adaptix.rmsprop(0.1, decay=0.0, eps=0.0, centered=True)
    state = opt.init(jnp.zeros(3))
    for g in ([2.0, 0.0, -1.0], [0.5, 0.0, 3.0]):
        updates, state = opt.update(jnp.asarray(g), state)
        np.testing.assert_array_equal(np.asarray(updates), [0.0, 0.0, 0.0])
    # What cannot be helped: for a constant gradient the debiased variance is rounding noise
    # (~1e-7 g**2 rather than 0), and with eps=0 the step is huge, though finite. Use eps > 0.
    opt = adaptix.rmsprop(0.1, eps=0.0, centered=True, bias_correction=True)
    updates, _ = opt.update(jnp.asarray([2.0]), opt.init(jnp.zeros(1)))
    assert bool(jnp.all(jnp.isfinite(updates)))


def test_adadelta_eps0_never_moves():
    # Documented: AdaDelta's step is proportional to sqrt(E[dx^2] + eps), 0 from the start.
    opt = adaptix.adadelta(eps=0.0)
    state = opt.init(jnp.zeros(2))
    for g in ([1.0, -2.0], [0.0, 3.0], [0.0, 0.0]):
        updates, state = opt.update(jnp.asarray(g), state)
        np.testing.assert_array_equal(np.asarray(updates), [0.0, 0.0])
    assert finite(state)


def test_eps_guard_is_not_built_when_eps_keeps_denominators_positive():
    # The guard costs nothing in the common case: with eps > 0 in float32 the jaxpr is the bare
    # formula; with eps = 0, or eps = 1e-8 on a float16 leaf (where it rounds to 0), one select
    # per leaf is added.
    def n_selects(opt, dtype=jnp.float32):
        x = jnp.ones(3, dtype)
        jaxpr = jax.make_jaxpr(lambda g, s: opt.update(g, s))(x, opt.init(x))
        return str(jaxpr).count("select_n")

    for make in (adaptix.adam, adaptix.rmsprop, adaptix.amsgrad, adaptix.radam):
        baseline = n_selects(make(0.1, eps=1e-8))
        assert n_selects(make(0.1, eps=0.0)) == baseline + 1, make.__name__
        assert n_selects(make(0.1, eps=1e-8), jnp.float16) == baseline + 1, make.__name__
        assert n_selects(make(0.1, eps=1e-8), jnp.bfloat16) == baseline, make.__name__


SIGN_BASED = {"lion", "sign_sgd", "signum", "rprop"}


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("case", OPTIMIZER_PARAMS)
def test_nonfinite_gradients_are_not_hidden(case, bad):
    # A NaN gradient gives a NaN update for every optimizer. An infinite one gives a non-finite
    # update, except for sign-based methods, whose step is sign(+-inf) * lr, finite as their
    # formula says (their momentum, if any, becomes infinite). apply_if_finite, which tests the
    # gradient, catches all of them.
    opt = case.make()
    params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
    state = opt.init(params)
    updates, state = opt.update({"w": jnp.full((2, 3), 0.5), "b": jnp.full(3, -0.5)}, state, params)
    grads = {"w": jnp.full((2, 3), 0.5).at[1, 2].set(bad), "b": jnp.full(3, -0.5)}
    updates, new_state = opt.update(grads, state, params)
    if np.isnan(bad) or case.id not in SIGN_BASED:
        assert not finite(updates), f"{case.id}: a {bad} gradient gave finite updates"
    else:
        assert finite(updates)  # Rprop: -inf after +0.5 is a sign flip, hence no step


# ----------------------------------------------------------------------------
# Skipping bad steps with optax.apply_if_finite.
# ----------------------------------------------------------------------------

BAD_STEPS = {2: ("w", np.nan), 3: ("w", np.inf), 6: ("b", -np.inf)}  # two in a row, then one
N_STEPS = 9


def gradient(step):
    rng = np.random.default_rng(300 + step)
    grads = {"w": jnp.asarray(0.2 + rng.normal(size=(2, 3)), jnp.float32),
             "b": jnp.asarray(rng.normal(size=3), jnp.float32)}
    if step in BAD_STEPS:
        key, value = BAD_STEPS[step]
        grads[key] = grads[key].at[(0,) * grads[key].ndim].set(value)
    return grads


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert jnp.result_type(x) == jnp.result_type(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("case", OPTIMIZER_PARAMS)
def test_apply_if_finite_skips_bad_steps_exactly(case):
    opt = optax.apply_if_finite(case.make(), max_consecutive_errors=3)
    update = jax.jit(opt.update)
    init = {"w": jnp.asarray(np.linspace(-1, 1, 6).reshape(2, 3), jnp.float32), "b": jnp.ones(3)}

    params, state = init, opt.init(init)
    for step in range(N_STEPS):
        before_params, before_state = params, state
        updates, state = update(gradient(step), state, params)
        params = optax.apply_updates(params, updates)
        if step in BAD_STEPS:
            assert_trees_equal(params, before_params)
            assert_trees_equal(state.inner_state, before_state.inner_state)
            assert not bool(state.last_finite)
        else:
            assert finite(params) and bool(state.last_finite)
    assert int(state.total_notfinite) == len(BAD_STEPS)
    assert int(state.notfinite_count) == 0
    assert not np.array_equal(np.asarray(params["w"]), np.asarray(init["w"]))  # training went on

    # The same run without the bad batches: identical bit for bit.
    clean_params, clean_state = init, opt.init(init)
    for step in range(N_STEPS):
        if step not in BAD_STEPS:
            updates, clean_state = update(gradient(step), clean_state, clean_params)
            clean_params = optax.apply_updates(clean_params, updates)
    assert_trees_equal(params, clean_params)
    assert_trees_equal(state.inner_state, clean_state.inner_state)


def test_apply_if_finite_gives_up_after_max_consecutive_errors():
    # Optax's rule: after more than max_consecutive_errors bad steps in a row, the update is
    # applied, so a run producing only NaNs fails loudly instead of stalling silently.
    opt = optax.apply_if_finite(adaptix.adam(0.1), max_consecutive_errors=2)
    params = jnp.ones(2)
    state = opt.init(params)
    for step in range(3):
        updates, state = opt.update(jnp.asarray([np.nan, 1.0]), state, params)
        params = optax.apply_updates(params, updates)
        assert finite(params) == (step < 2)
    assert int(state.notfinite_count) == 3


def test_apply_if_finite_in_flax_nnx_optimizer():
    nnx = pytest.importorskip("flax.nnx")
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.apply_if_finite(adaptix.adam(1e-2), 5), wrt=nnx.Param)
    x = jnp.ones((4, 3))

    @nnx.jit
    def step(model, optimizer, scale):
        grads = nnx.grad(lambda m: jnp.mean(m(x) ** 2) * scale)(model)
        optimizer.update(model, grads)

    step(model, optimizer, 1.0)
    before = jax.tree.map(np.asarray, nnx.state(model, nnx.Param))
    step(model, optimizer, jnp.inf)  # every gradient Inf or NaN
    after = jax.tree.map(np.asarray, nnx.state(model, nnx.Param))
    assert_trees_equal(after, before)
    step(model, optimizer, 1.0)
    moved = jax.tree.map(np.asarray, nnx.state(model, nnx.Param))
    assert not all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(moved), jax.tree.leaves(before)))


def doc_blocks():
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S) if DOC.exists() else []


@pytest.mark.parametrize("index", range(len(doc_blocks())))
def test_reliability_doc_examples_run(index):
    exec(doc_blocks()[index], {})  # noqa: S102 - our own documentation


def test_reliability_doc_has_the_recipe():
    assert doc_blocks(), "docs/reliability.md lost its apply_if_finite example"
