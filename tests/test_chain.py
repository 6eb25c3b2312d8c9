"""The chain protocol: every stage is handed the chain's input as ``grad``.

A nested adaptix chain hands on its own input, a plain Optax stage never gets
``grad`` (but does get other extra keywords), an adaptix primitive inside
``optax.chain`` measures its input, and stage order is the difference between
Adam and RMSProp with momentum, each checked against its closed form.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptix


def _params():
    return {"w": jnp.asarray([[0.5, -1.0, 2.0], [1.5, 0.0, -0.3]]), "b": jnp.asarray([0.1, -0.2, 0.3])}


def _grads(t):
    rng = np.random.default_rng(7 + t)
    return jax.tree.map(lambda p: jnp.asarray(0.2 + rng.normal(size=p.shape), jnp.float32), _params())


def _close(a, b, rtol=1e-6, atol=1e-7):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def spy(log, name):
    """An adaptix stage that records what it is handed and passes its input on."""

    def init(params):
        del params
        return adaptix.EmptyState()

    def update(updates, state, params=None, *, chain_input=None, **extra):
        log.append(dict(name=name, updates=updates, grad=chain_input, extra=extra))
        return updates, state

    return adaptix.Transformation(init, update)


def plain_optax_spy(log):
    """A plain Optax stage (not an adaptix Transformation) that records its keywords."""

    def update(updates, state, params=None, **extra):
        log.append(dict(extra))
        return updates, state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)


def _run(opt, steps=1, params=None, **extra):
    params = _params() if params is None else params
    state = opt.init(params)
    out = []
    for t in range(steps):
        u, state = opt.update(_grads(t), state, params, **extra)
        out.append(u)
    return out, state


# ----------------------------------------------------------------------------
# grad threading.
# ----------------------------------------------------------------------------


def test_every_stage_receives_chain_input():
    log = []
    opt = adaptix.chain(spy(log, "a"), adaptix.scale(2.0), spy(log, "b"), adaptix.scale(3.0), spy(log, "c"))
    (u,), _ = _run(opt)
    g = _grads(0)
    assert [e["name"] for e in log] == ["a", "b", "c"]
    for entry, factor in zip(log, (1.0, 2.0, 6.0)):
        _close(entry["grad"], g)  # every stage: the chain's input
        _close(entry["updates"], jax.tree.map(lambda x: factor * x, g))  # its own input
    _close(u, jax.tree.map(lambda x: 6.0 * x, g))


def test_chain_measures_its_own_input_and_passes_the_callers_keywords():
    log = []
    opt = adaptix.chain(spy(log, "a"))
    junk = jax.tree.map(lambda x: x + 100.0, _grads(0))
    opt.update(_grads(0), opt.init(_params()), chain_input=junk, grad=junk, foo=1)
    _close(log[0]["grad"], _grads(0))  # an outer chain_input is replaced by the chain's own input
    assert set(log[0]["extra"]) == {"grad", "foo"}  # the caller's keywords (a line search's grad=) pass
    _close(log[0]["extra"]["grad"], junk)

    adam = adaptix.adam(0.1)
    s = adam.init(_params())
    _close(adam.update(_grads(0), s, grad=junk)[0], adam.update(_grads(0), s)[0], rtol=0, atol=0)
    _close(adam.update(_grads(0), s, chain_input=junk)[0], adam.update(_grads(0), s)[0], rtol=0, atol=0)


def test_nested_chain_hands_on_its_own_input():
    wd = 0.3
    log = []
    opt = adaptix.chain(
        adaptix.add_decayed_weights(wd),
        adaptix.chain(spy(log, "inner"), adaptix.scale(2.0)),
        spy(log, "outer"),
    )
    params, g = _params(), _grads(0)
    opt.update(g, opt.init(params), params)
    inner, outer = log
    regularised = jax.tree.map(lambda x, p: x + wd * p, g, params)
    _close(inner["grad"], regularised)  # the nested chain's input: g + wd * p
    _close(inner["updates"], regularised)
    _close(outer["grad"], g)  # the outer chain's input
    _close(outer["updates"], jax.tree.map(lambda x: 2.0 * x, regularised))


def _trajectory(opt, steps=8):
    """Updates of ``steps`` optimisation steps from _params() with _grads(t)."""
    params = _params()
    state = opt.init(params)
    out = []
    for t in range(steps):
        u, state = opt.update(_grads(t), state, params)
        params = optax.apply_updates(params, u)
        out.append(u)
    return out


def test_adam_l2_nested_matches_optax():
    wd, lr = 0.1, 0.05
    ours = _trajectory(adaptix.chain(adaptix.add_decayed_weights(wd), adaptix.adam(lr)))
    ref = _trajectory(optax.chain(optax.add_decayed_weights(wd), optax.adam(lr)))
    for a, b in zip(ours, ref):
        _close(a, b, rtol=1e-5, atol=1e-7)


def test_flat_chain_is_not_adam_l2():
    """Flattening the nested chain changes what the moments measure (g, not g + wd*p)."""
    wd, lr = 0.1, 0.05
    flat = adaptix.chain(
        adaptix.add_decayed_weights(wd),
        adaptix.trace(0.9, ema=True),
        adaptix.scale_by_rms(0.999, 1e-8, eps_in_sqrt=False, bias_correction=True),
        adaptix.bias_correction(0.9),
        adaptix.scale_by_learning_rate(lr),
    )
    ref = _trajectory(optax.chain(optax.add_decayed_weights(wd), optax.adam(lr)))
    ours = _trajectory(flat)
    diff = max(float(jnp.max(jnp.abs(a - b))) for u, r in zip(ours, ref)
               for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(r)))
    assert diff > 1e-3


def test_clipped_adam_matches_optax():
    lr = 0.05
    ours = _trajectory(adaptix.chain(optax.clip_by_global_norm(0.5), adaptix.adam(lr)))
    ref = _trajectory(optax.chain(optax.clip_by_global_norm(0.5), optax.adam(lr)))
    for a, b in zip(ours, ref):
        _close(a, b, rtol=1e-5, atol=1e-7)


def test_plain_optax_stage_gets_exactly_the_callers_keywords():
    log = []
    opt = adaptix.chain(adaptix.scale(2.0), plain_optax_spy(log), adaptix.bias_correction(0.5))
    value, grad = jnp.asarray(3.0), _grads(1)
    _run(opt, steps=2, foo=1, value=value, grad=grad)
    assert len(log) == 2
    for extra in log:  # never chain_input / chain_step
        assert set(extra) == {"foo", "value", "grad"}
        assert extra["value"] is value and extra["grad"] is grad


def test_plain_optax_stage_without_extra_args_support():
    opt = adaptix.chain(optax.scale(2.0), adaptix.scale_by_rms(0.5, eps=0.0))  # optax.scale: plain
    (u,), _ = _run(opt, foo=1, value=2.0)
    g = _grads(0)
    # scale_by_rms measures the chain's input g and rescales its input 2g.
    _close(u, jax.tree.map(lambda x: 2.0 * x / jnp.sqrt(0.5 * x**2), g), rtol=1e-6)


def test_adaptix_stage_inside_optax_combinator_measures_its_input():
    """optax.masked(adaptix stage) inside adaptix.chain is a plain Optax stage: no grad."""
    mask = {"w": True, "b": False}
    opt = adaptix.chain(adaptix.scale(2.0), optax.masked(adaptix.scale_by_rms(0.5, eps=0.0), mask))
    (u,), _ = _run(opt)
    g = _grads(0)
    np.testing.assert_allclose(np.asarray(u["w"]), np.sign(np.asarray(g["w"])) / np.sqrt(0.5), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(u["b"]), 2.0 * np.asarray(g["b"]), rtol=1e-6)


def test_adaptix_primitive_inside_optax_chain_measures_its_input():
    g = _grads(0)
    inside_optax = optax.chain(optax.scale(2.0), adaptix.scale_by_rms(0.5, eps=0.0))
    inside_adaptix = adaptix.chain(optax.scale(2.0), adaptix.scale_by_rms(0.5, eps=0.0))
    (u_optax,), _ = _run(inside_optax)
    (u_adaptix,), _ = _run(inside_adaptix)
    sign = jax.tree.map(jnp.sign, g)
    _close(u_optax, jax.tree.map(lambda s: s / np.sqrt(0.5), sign))  # measured 2g
    _close(u_adaptix, jax.tree.map(lambda s: 2.0 * s / np.sqrt(0.5), sign))  # measured g


def test_adaptix_alias_inside_optax_chain_matches_optax():
    wd, lr = 0.1, 0.05
    ours = _trajectory(optax.chain(optax.add_decayed_weights(wd), adaptix.adam(lr)))
    ref = _trajectory(optax.chain(optax.add_decayed_weights(wd), optax.adam(lr)))
    for a, b in zip(ours, ref):
        _close(a, b, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------
# Order: momentum of the raw direction vs momentum of rescaled updates.
# ----------------------------------------------------------------------------

B1, B2, EPS, STEPS = 0.9, 0.99, 1e-8, 6


def _closed_form(order, grads):
    """numpy float64 closed forms of the two orders."""
    m = np.zeros_like(grads[0])
    v = np.zeros_like(grads[0])
    out = []
    for g in grads:
        v = B2 * v + (1 - B2) * g**2
        if order == "momentum_first":  # chain(trace(b1, ema), scale_by_rms(b2)): EMA(g)/sqrt(EMA(g^2))
            m = B1 * m + (1 - B1) * g
            out.append(m / np.sqrt(v + EPS))
        else:  # chain(scale_by_rms(b2), trace(b1, ema)): EMA(g/sqrt(EMA(g^2)))
            m = B1 * m + (1 - B1) * g / np.sqrt(v + EPS)
            out.append(m)
    return out


def test_order_momentum_first_vs_rms_first():
    momentum_first = adaptix.chain(adaptix.trace(B1, ema=True), adaptix.scale_by_rms(B2, EPS))
    rms_first = adaptix.chain(adaptix.scale_by_rms(B2, EPS), adaptix.trace(B1, ema=True))
    rng = np.random.default_rng(3)
    grads = [rng.normal(size=(5,)) * (1 + 3 * (t % 2)) for t in range(STEPS)]  # varying scale
    results = {}
    for name, opt in (("momentum_first", momentum_first), ("rms_first", rms_first)):
        state = opt.init(jnp.zeros(5))
        ours = []
        for g in grads:
            u, state = opt.update(jnp.asarray(g, jnp.float32), state)
            ours.append(np.asarray(u, np.float64))
        expected = _closed_form(name, grads)
        for t, (a, b) in enumerate(zip(ours, expected)):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6, err_msg=f"{name}, step {t + 1}")
        results[name] = ours
    diff = max(np.max(np.abs(a - b)) for a, b in zip(results["momentum_first"], results["rms_first"]))
    assert diff > 0.05, diff


def test_optax_chain_of_same_stages_is_not_adam():
    """Inside optax.chain the RMS stage measures the trace's output: not Adam."""
    stages = lambda: (  # noqa: E731
        adaptix.trace(B1, ema=True),
        adaptix.scale_by_rms(B2, EPS, eps_in_sqrt=False, bias_correction=True),
        adaptix.bias_correction(B1),
        adaptix.scale_by_learning_rate(0.1),
    )
    ours = _trajectory(adaptix.chain(*stages()))
    sequential = _trajectory(optax.chain(*stages()))
    ref = _trajectory(optax.adam(0.1, b1=B1, b2=B2, eps=EPS))
    for a, b in zip(ours, ref):
        _close(a, b, rtol=1e-5, atol=1e-7)
    diff = max(float(jnp.max(jnp.abs(a - b))) for u, r in zip(sequential, ref)
               for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(r)))
    assert diff > 1e-2


# ----------------------------------------------------------------------------
# State layout and errors.
# ----------------------------------------------------------------------------


def test_state_is_a_tuple_like_optax_chain():
    stages = (optax.clip_by_global_norm(1.0), optax.trace(0.9), optax.scale(-0.1))
    params = _params()
    ours, ref = adaptix.chain(*stages).init(params), optax.chain(*stages).init(params)
    assert type(ours) is tuple and len(ours) == 3
    assert jax.tree.structure(ours) == jax.tree.structure(ref)
    _close(ours, ref)

    adam_state = adaptix.adam(0.1).init(params)  # one counter beside the stages' states
    assert isinstance(adam_state, adaptix.CountedState)
    stages_state = adam_state.inner_state
    assert type(stages_state) is tuple and len(stages_state) == 4
    assert isinstance(stages_state[0], adaptix.FirstMomentState)
    assert isinstance(stages_state[1], adaptix.ScaleByRmsState)

    nested = adaptix.chain(adaptix.add_decayed_weights(0.1), adaptix.adam(0.1)).init(params)
    assert isinstance(nested, adaptix.CountedState)  # the outer chain counts; the inner one shares it
    assert len(nested.inner_state) == 2 and type(nested.inner_state[1]) is tuple

    _, new_state = _run(adaptix.chain(*stages), steps=2)
    assert jax.tree.structure(new_state) == jax.tree.structure(ref)


@pytest.mark.parametrize(
    "bad",
    [lambda x: x, "adam", 1.0, None, optax.adam, (optax.scale(1.0),)],
    ids=["lambda", "str", "float", "None", "optax.adam-factory", "tuple"],
)
def test_non_transformation_stage_raises_type_error(bad):
    with pytest.raises(TypeError, match="stage 1"):
        adaptix.chain(adaptix.scale(1.0), bad)


def test_state_of_another_optimizer_raises():
    params = _params()
    adam = adaptix.adam(0.1)
    with pytest.raises(ValueError, match="different optimizer"):
        adam.update(_grads(0), adaptix.sgd(0.1).init(params), params)
