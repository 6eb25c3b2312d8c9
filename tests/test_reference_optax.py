"""Every adaptix alias equals its Optax alias, step by step in float64, on a fixed gradient sequence.

The sequence (``reference_data.gradient_sequence``): 120 steps over ``{"w": (3, 4), "b": (4,)}``,
magnitudes from 1e-6 to 10, exact zeros (a coordinate zero for the first steps, a whole zero step),
sign changes. Parameters evolve (each update is applied and fed back, so weight decay sees them) and
both the updates and the parameters are compared at every step, to a relative error of 1e-9.

Documented differences are tested as such: ``optax.rprop`` is one step late, and
``optax.adadelta(learning_rate=None)`` ascends. Also here: the two hand-built compositions the
design is about, and the proof that ``adaptix.chain`` (not the primitives) is what makes
``trace -> scale_by_rms`` Adam.
"""

from __future__ import annotations

import numpy as np
import optax
import pytest

import adaptix

from reference_data import (
    ALTERNATING,
    LATE_START,
    LATE_START_STEPS,
    ZERO_STEP,
    assert_close,
    enable_x64,
    gradient_sequence,
    initial_params,
    max_relative_difference,
    report_worst,
    run_jax,
    run_jax_many,
)

RTOL = 1e-9


@pytest.fixture(scope="module", autouse=True)
def _x64():
    """float64 for this module only; the previous setting is restored afterwards."""
    with enable_x64():
        yield
    report_worst("optax:")


@pytest.fixture(scope="module")
def grads():
    return gradient_sequence()


@pytest.fixture(scope="module")
def params0():
    return initial_params()


def _cosine():
    # Decays over 100 of the 120 steps, then stays at alpha * init (covers the clamp).
    return optax.cosine_decay_schedule(0.05, decay_steps=100, alpha=0.1)


# (id, adaptix factory, optax factory): the same keywords on both sides.
CASES = [
    ("sgd", lambda: adaptix.sgd(0.1), lambda: optax.sgd(0.1)),
    ("sgd-momentum", lambda: adaptix.sgd(0.1, momentum=0.9), lambda: optax.sgd(0.1, momentum=0.9)),
    (
        "sgd-nesterov",
        lambda: adaptix.sgd(0.1, momentum=0.9, nesterov=True),
        lambda: optax.sgd(0.1, momentum=0.9, nesterov=True),
    ),
    ("adagrad", lambda: adaptix.adagrad(0.5), lambda: optax.adagrad(0.5)),
    (
        "adagrad-init0-eps1e-10",
        lambda: adaptix.adagrad(0.5, initial_accumulator_value=0.0, eps=1e-10),
        lambda: optax.adagrad(0.5, initial_accumulator_value=0.0, eps=1e-10),
    ),
    ("rmsprop", lambda: adaptix.rmsprop(0.01), lambda: optax.rmsprop(0.01)),
    (
        "rmsprop-centered",
        lambda: adaptix.rmsprop(0.01, centered=True),
        lambda: optax.rmsprop(0.01, centered=True),
    ),
    (
        "rmsprop-momentum",
        lambda: adaptix.rmsprop(0.01, momentum=0.9),
        lambda: optax.rmsprop(0.01, momentum=0.9),
    ),
    (
        "rmsprop-nesterov",
        lambda: adaptix.rmsprop(0.01, momentum=0.9, nesterov=True),
        lambda: optax.rmsprop(0.01, momentum=0.9, nesterov=True),
    ),
    (
        "rmsprop-eps-outside",
        lambda: adaptix.rmsprop(0.01, eps_in_sqrt=False),
        lambda: optax.rmsprop(0.01, eps_in_sqrt=False),
    ),
    (
        "rmsprop-bias-correction",
        lambda: adaptix.rmsprop(0.01, bias_correction=True),
        lambda: optax.rmsprop(0.01, bias_correction=True),
    ),
    (
        "rmsprop-centered-momentum-initial-scale",
        lambda: adaptix.rmsprop(0.01, decay=0.95, centered=True, momentum=0.5, initial_scale=0.1),
        lambda: optax.rmsprop(0.01, decay=0.95, centered=True, momentum=0.5, initial_scale=0.1),
    ),
    ("adadelta-lr", lambda: adaptix.adadelta(0.5), lambda: optax.adadelta(0.5)),
    (
        "adadelta-weight-decay",
        lambda: adaptix.adadelta(1.0, rho=0.95, eps=1e-5, weight_decay=0.1),
        lambda: optax.adadelta(1.0, rho=0.95, eps=1e-5, weight_decay=0.1),
    ),
    ("adam", lambda: adaptix.adam(0.05), lambda: optax.adam(0.05)),
    (
        "adam-b1-b2-eps",
        lambda: adaptix.adam(0.05, b1=0.8, b2=0.99, eps=1e-6),
        lambda: optax.adam(0.05, b1=0.8, b2=0.99, eps=1e-6),
    ),
    ("adam-eps-root", lambda: adaptix.adam(0.05, eps_root=1e-8), lambda: optax.adam(0.05, eps_root=1e-8)),
    ("adam-nesterov", lambda: adaptix.adam(0.05, nesterov=True), lambda: optax.adam(0.05, nesterov=True)),
    ("adamw", lambda: adaptix.adamw(0.05, weight_decay=0.1), lambda: optax.adamw(0.05, weight_decay=0.1)),
    ("adamw-default-decay", lambda: adaptix.adamw(0.05), lambda: optax.adamw(0.05)),
    ("amsgrad", lambda: adaptix.amsgrad(0.05), lambda: optax.amsgrad(0.05)),
    (
        "amsgrad-eps-root",
        lambda: adaptix.amsgrad(0.05, b2=0.99, eps_root=1e-8),
        lambda: optax.amsgrad(0.05, b2=0.99, eps_root=1e-8),
    ),
    ("nadam", lambda: adaptix.nadam(0.05), lambda: optax.nadam(0.05)),
    ("nadamw", lambda: adaptix.nadamw(0.05, weight_decay=0.1), lambda: optax.nadamw(0.05, weight_decay=0.1)),
    ("adamax", lambda: adaptix.adamax(0.05), lambda: optax.adamax(0.05)),
    ("radam", lambda: adaptix.radam(0.05), lambda: optax.radam(0.05)),
    ("radam-nesterov", lambda: adaptix.radam(0.05, nesterov=True), lambda: optax.radam(0.05, nesterov=True)),
    (
        "radam-threshold",
        lambda: adaptix.radam(0.05, b2=0.99, threshold=20.0),
        lambda: optax.radam(0.05, b2=0.99, threshold=20.0),
    ),
    ("lion", lambda: adaptix.lion(0.01, weight_decay=0.1), lambda: optax.lion(0.01, weight_decay=0.1)),
    ("sign-sgd", lambda: adaptix.sign_sgd(0.01), lambda: optax.sign_sgd(0.01)),
    ("signum", lambda: adaptix.signum(0.01), lambda: optax.signum(0.01)),
    ("signum-beta", lambda: adaptix.signum(0.01, beta=0.5), lambda: optax.signum(0.01, beta=0.5)),
    # An Optax schedule as the learning rate.
    (
        "cosine-sgd-momentum",
        lambda: adaptix.sgd(_cosine(), momentum=0.9),
        lambda: optax.sgd(_cosine(), momentum=0.9),
    ),
    ("cosine-adam", lambda: adaptix.adam(_cosine()), lambda: optax.adam(_cosine())),
    (
        "cosine-adamw",
        lambda: adaptix.adamw(_cosine(), weight_decay=0.1),
        lambda: optax.adamw(_cosine(), weight_decay=0.1),
    ),
    (
        "cosine-rmsprop-momentum",
        lambda: adaptix.rmsprop(_cosine(), momentum=0.9),
        lambda: optax.rmsprop(_cosine(), momentum=0.9),
    ),
    (
        "cosine-lion",
        lambda: adaptix.lion(_cosine(), weight_decay=0.1),
        lambda: optax.lion(_cosine(), weight_decay=0.1),
    ),
]


def _compare(label, ours, theirs):
    (u_a, p_a), (u_o, p_o) = ours, theirs
    worst_u = assert_close(u_a, u_o, f"optax:{label}:updates", rtol=RTOL)
    worst_p = assert_close(p_a, p_o, f"optax:{label}:params", rtol=RTOL)
    return worst_u, worst_p


@pytest.mark.parametrize("make_ours, make_theirs", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_alias_matches_optax(make_ours, make_theirs, grads, params0, request):
    label = request.node.callspec.id
    ours, theirs = run_jax_many([make_ours(), make_theirs()], grads, params0)
    # The trajectory really moves (a frozen run would compare trivially).
    assert max(np.abs(ours[1][k][-1] - params0[k]).max() for k in params0) > 1e-3
    _compare(label, ours, theirs)


def test_sequence_has_the_promised_features(grads):
    """Guards the test data: >= 100 steps, magnitudes 1e-6..10, exact zeros, sign changes."""
    assert len(grads["w"]) >= 100
    nonzero = np.concatenate([np.abs(g[g != 0]) for g in grads.values()])
    assert nonzero.min() < 1e-5 and nonzero.max() > 10
    assert all((g[ZERO_STEP] == 0).all() for g in grads.values())
    late = grads[LATE_START[0]][(slice(None), *LATE_START[1])]
    assert (late[:LATE_START_STEPS] == 0).all() and late[LATE_START_STEPS] != 0
    flips = sum(int((g[1:] * g[:-1] < 0).sum()) for g in grads.values())
    assert flips > 100
    alt = grads[ALTERNATING[0]][(slice(None), *ALTERNATING[1])]
    pairs = alt[1:] * alt[:-1]
    assert (np.delete(pairs, [ZERO_STEP - 1, ZERO_STEP]) < 0).all()  # flips except around the zero step


# ---------------------------------------------------------------------------------------------
# Documented differences.


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"eta_minus": 0.3, "eta_plus": 1.5, "min_step_size": 1e-4, "max_step_size": 0.2}],
    ids=["defaults", "custom-etas-bounds"],
)
def test_rprop_optax_is_one_step_late(kwargs, grads, params0):
    """optax.rprop's update t+1 is adaptix's update t, zeroed where g_{t+1} flips sign.

    The sign flip is measured against the stored previous gradient (zeroed after a flip, as in
    PyTorch), read from adaptix's state after step t. Optax's first update is all zeros.
    """
    (u_a, _, states), (u_o, _, _) = run_jax_many(
        [adaptix.rprop(0.01, **kwargs), optax.rprop(0.01, **kwargs)], grads, params0, states=True
    )
    prev_grad = states[0].prev_grad  # stored previous gradient after each step
    for k in grads:
        assert (u_o[k][0] == 0).all()
        flipped = grads[k][1:] * prev_grad[k][:-1] < 0
        expected = np.where(flipped, 0.0, u_a[k][:-1])
        np.testing.assert_array_equal(u_o[k][1:], expected, err_msg=k)
        assert flipped.any()  # the relation is exercised, not vacuous
    # adaptix takes the first step at once: -lr * sign(g_0).
    for k in grads:
        np.testing.assert_array_equal(u_a[k][0], -0.01 * np.sign(grads[k][0]))


def test_adadelta_none_is_optax_negated(grads, params0):
    """adadelta(learning_rate=None): adaptix uses 1.0 and descends, Optax skips the sign flip.

    Both are fed adaptix's parameter trajectory (and use weight decay, which depends on it), so the
    updates must be exact negatives step by step.
    """
    decays = (0.0, 0.1)
    ours = run_jax_many(
        [adaptix.adadelta(lr, weight_decay=wd) for wd in decays for lr in (None, 1.0)], grads, params0
    )
    ours_none, ours_one = ours[0::2], ours[1::2]
    trajectories = [{k: np.concatenate([params0[k][None], p[k][:-1]]) for k in params0} for _, p in ours_none]
    theirs = run_jax_many(
        [optax.adadelta(None, weight_decay=wd) for wd in decays], grads, params0, params_seq=trajectories
    )
    for wd, (u_a, _), (u_1, _), (u_o, _) in zip(decays, ours_none, ours_one, theirs):
        assert_close(u_a, {k: -v for k, v in u_o.items()}, f"optax:adadelta-None-negated-wd{wd}", rtol=RTOL)
        for k in grads:  # and None means exactly 1.0
            np.testing.assert_array_equal(u_a[k], u_1[k])


def test_adadelta_none_descends_a_quadratic_while_optax_ascends():
    import jax
    import jax.numpy as jnp

    loss = lambda p: 0.5 * jnp.sum(p**2)  # noqa: E731

    def final_loss(opt, steps=100):
        def body(carry, _):
            p, s = carry
            u, s = opt.update(jax.grad(loss)(p), s, p)
            return (optax.apply_updates(p, u), s), None

        p0 = jnp.array([1.0, -2.0, 3.0])
        (p, _), _ = jax.jit(lambda p0: jax.lax.scan(body, (p0, opt.init(p0)), None, length=steps))(p0)
        return float(loss(p)), float(loss(p0))

    ours, start = final_loss(adaptix.adadelta())
    theirs, _ = final_loss(optax.adadelta())
    assert ours < start < theirs


# ---------------------------------------------------------------------------------------------
# The compositions of the design, built by hand from primitives.


def _hand_adam(lr, b1, b2, eps, chain=adaptix.chain):
    return chain(
        adaptix.trace(b1, ema=True),
        adaptix.scale_by_rms(b2, eps, eps_in_sqrt=False, bias_correction=True),
        adaptix.bias_correction(b1),
        adaptix.scale_by_learning_rate(lr),
    )


@pytest.mark.parametrize(
    "lr, b1, b2, eps", [(0.05, 0.9, 0.999, 1e-8), (0.01, 0.8, 0.99, 1e-6)], ids=["default", "custom"]
)
def test_hand_built_adam_equals_optax_adam(lr, b1, b2, eps, grads, params0):
    ours, theirs = run_jax_many([_hand_adam(lr, b1, b2, eps), optax.adam(lr, b1, b2, eps)], grads, params0)
    _compare(f"hand-adam-{lr}-{b1}-{b2}-{eps}", ours, theirs)


@pytest.mark.parametrize(
    "lr, decay, eps, momentum", [(0.01, 0.9, 1e-8, 0.9), (0.003, 0.99, 1e-6, 0.5)], ids=["default", "custom"]
)
def test_hand_built_rmsprop_momentum_equals_optax(lr, decay, eps, momentum, grads, params0):
    hand = adaptix.chain(
        adaptix.scale_by_rms(decay, eps),
        adaptix.scale_by_learning_rate(lr),
        adaptix.trace(momentum),
    )
    ours, theirs = run_jax_many([hand, optax.rmsprop(lr, decay, eps, momentum=momentum)], grads, params0)
    _compare(f"hand-rmsprop-{lr}-{decay}-{eps}-{momentum}", ours, theirs)


def test_sequential_chain_is_not_adam(grads, params0):
    """The pitfall is real, and adaptix.chain is what avoids it.

    The same adaptix primitives inside ``optax.chain`` (the second-moment stage then measures the
    first stage's output, not the gradient) and Optax's own sequential chain both differ from Adam by
    a large margin, while inside ``adaptix.chain`` they are Adam (``test_hand_built_adam...``).
    """
    lr, b1, b2, eps = 0.05, 0.9, 0.999, 1e-8
    optax_sequential_adam = optax.chain(
        optax.ema(b1, debias=True),
        optax.scale_by_rms(b2, eps, eps_in_sqrt=False, bias_correction=True),
        optax.scale_by_learning_rate(lr),
    )
    (adam_u, adam_p), in_adaptix_chain, in_optax_chain, optax_sequential = run_jax_many(
        [
            optax.adam(lr, b1, b2, eps),
            _hand_adam(lr, b1, b2, eps),
            _hand_adam(lr, b1, b2, eps, chain=optax.chain),
            optax_sequential_adam,
        ],
        grads,
        params0,
    )
    assert max_relative_difference(in_adaptix_chain[0], adam_u) < 1e-9
    pitfalls = {"adaptix-stages-in-optax.chain": in_optax_chain, "optax-sequential": optax_sequential}
    for name, (u, p) in pitfalls.items():
        diff_u = max_relative_difference(u, adam_u)
        diff_p = max(np.abs(p[k] - adam_p[k]).max() for k in adam_p)
        assert diff_u > 0.5, (name, diff_u)
        assert diff_p > 0.1, (name, diff_p)


# ---------------------------------------------------------------------------------------------
# Closed forms.


def test_adam_first_step_closed_form(grads, params0):
    """The first Adam step is -lr * g / (|g| + eps), elementwise (0 where g = 0)."""
    lr, eps = 0.05, 1e-8
    first = {k: v[:1] for k, v in grads.items()}
    u, _ = run_jax(adaptix.adam(lr, eps=eps), first, params0)
    expected = {k: -lr * first[k] / (np.abs(first[k]) + eps) for k in first}
    assert_close(u, expected, "closed:adam-first-step", rtol=1e-12)


def _constant(grads, steps=60):
    c = {k: grads[k][LATE_START_STEPS + 1] for k in grads}  # a step with exact zeros and both signs
    return c, {k: np.broadcast_to(v, (steps, *v.shape)).copy() for k, v in c.items()}


def test_adam_constant_gradient_closed_form(grads, params0):
    """m_hat = g and v_hat = g^2 for a constant g, so every Adam update is -lr * g / (|g| + eps)."""
    lr, eps = 0.05, 1e-8
    c, seq = _constant(grads)
    u, _ = run_jax(adaptix.adam(lr, b1=0.9, b2=0.99, eps=eps), seq, params0)
    expected = {k: np.broadcast_to(-lr * c[k] / (np.abs(c[k]) + eps), u[k].shape) for k in c}
    assert_close(u, expected, "closed:adam-constant", rtol=1e-12)


def test_sgd_momentum_constant_gradient_closed_form(grads, params0):
    lr, mu = 0.1, 0.9
    c, seq = _constant(grads)
    u, _ = run_jax(adaptix.sgd(lr, momentum=mu), seq, params0)
    t = np.arange(1, len(seq["w"]) + 1)
    expected = {k: -lr * c[k] * ((1 - mu**t) / (1 - mu)).reshape(-1, *[1] * c[k].ndim) for k in c}
    assert_close(u, expected, "closed:sgd-momentum-constant", rtol=1e-12)


@pytest.mark.parametrize(
    "init, eps, eps_in_sqrt", [(0.1, 1e-7, True), (0.0, 1e-10, False)], ids=["optax-form", "torch-form"]
)
def test_adagrad_constant_gradient_closed_form(init, eps, eps_in_sqrt, grads, params0):
    """s_t = init + t c^2: the update is -lr c / sqrt(s_t + eps), or -lr c / (sqrt(s_t) + eps)."""
    lr = 0.5
    c, seq = _constant(grads)
    u, _ = run_jax(adaptix.adagrad(lr, init, eps, eps_in_sqrt=eps_in_sqrt), seq, params0)
    t = np.arange(1, len(seq["w"]) + 1)
    expected = {}
    for k in c:
        s = init + t.reshape(-1, *[1] * c[k].ndim) * c[k] ** 2
        denom = np.sqrt(s + eps) if eps_in_sqrt else np.sqrt(s) + eps
        expected[k] = np.where(s > 0, -lr * c[k] / denom, 0.0)
    assert_close(u, expected, f"closed:adagrad-constant-{init}", rtol=1e-12)


def test_adamax_constant_gradient_closed_form(grads, params0):
    """u_t = max(b2 u_{t-1}, |g| + eps) = |g| + eps and m_hat = g: -lr * sign(g) |g| / (|g| + eps)."""
    lr, eps = 0.05, 1e-8
    c, seq = _constant(grads)
    u, _ = run_jax(adaptix.adamax(lr, eps=eps), seq, params0)
    expected = {
        k: np.broadcast_to(-lr * np.sign(c[k]) * np.abs(c[k]) / (np.abs(c[k]) + eps), u[k].shape) for k in c
    }
    assert_close(u, expected, "closed:adamax-constant", rtol=1e-12)
