"""The drop-in contract with Optax: what works with an Optax optimizer works with adaptix's.

Line searches inside chains (the caller's ``grad=``/``value=``/``value_fn=`` reach Optax
stages unchanged), one step counter per optimizer and Optax's names for the moments
(``tree_get``), Optax checkpoints continued by adaptix and the reverse (also through Orbax
files), Optax's dtype rules, ``None`` leaves, state structure independent of how a
hyperparameter is passed, and errors that name the place.
"""

from __future__ import annotations

import inspect
import itertools
import numbers

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu
import pytest

import adaptix

from optimizers import ALIASES, OPTIMIZERS

# ----------------------------------------------------------------------------
# The aliases whose algorithm is Optax's, with the Optax factory and its kwargs.
# ----------------------------------------------------------------------------

SAME_ALGORITHM = {  # case id -> Optax alias (same name, same kwargs)
    "sgd": optax.sgd, "sgd_momentum": optax.sgd, "sgd_nesterov": optax.sgd, "adagrad": optax.adagrad,
    "rmsprop": optax.rmsprop, "rmsprop_centered_momentum": optax.rmsprop, "adadelta": optax.adadelta,
    "adam": optax.adam, "adamw": optax.adamw, "amsgrad_optax": optax.amsgrad, "nadam": optax.nadam,
    "nadamw": optax.nadamw, "adamax": optax.adamax, "radam": optax.radam, "lion": optax.lion,
    "sign_sgd": optax.sign_sgd, "signum": optax.signum,
}
ADAPTIX_ONLY_KWARGS = {"debias_before_max", "momentum_decay"}
MATCHING = [c for c in ALIASES if c.id in SAME_ALGORITHM]


def _optax_of(case, **overrides):
    kwargs = {k: v for k, v in {**case.kwargs, **overrides}.items() if k not in ADAPTIX_ONLY_KWARGS}
    return SAME_ALGORITHM[case.id](**kwargs)


def _params(dtype=jnp.float32):
    rng = np.random.default_rng(0)
    return {"w": jnp.asarray(rng.normal(size=(3, 4)), dtype), "b": jnp.asarray(rng.normal(size=4), dtype)}


def _grads(t, dtype=jnp.float32):
    rng = np.random.default_rng(100 + t)
    return {"w": jnp.asarray(rng.normal(size=(3, 4)), dtype), "b": jnp.asarray(rng.normal(size=4) * 0.1, dtype)}


def _steps(tx, params, state, start, stop, dtype):
    for t in range(start, stop):
        updates, state = tx.update(_grads(t, dtype), state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def _close(a, b, rtol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=rtol * float(np.max(np.abs(y))))


# ----------------------------------------------------------------------------
# 1. Line searches and the caller's extra arguments.
# ----------------------------------------------------------------------------


def _rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def _solve(opt, steps=15):
    params = jnp.asarray([-1.2, 1.0, 0.5])
    state = opt.init(params)
    value_and_grad = optax.value_and_grad_from_state(_rosenbrock)

    @jax.jit  # one compiled step: eagerly, every op of the line search's loops dispatches on its own
    def step(params, state):
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=_rosenbrock)
        return optax.apply_updates(params, updates), state

    for _ in range(steps):
        params, state = step(params, state)
    return params


@pytest.mark.parametrize("make", [
    lambda chain: chain(optax.clip_by_global_norm(10.0), optax.lbfgs()),
    lambda chain: chain(optax.sgd(1e-3),
                        optax.scale_by_backtracking_linesearch(max_backtracking_steps=15, store_grad=True)),
    lambda chain: chain(optax.clip_by_global_norm(10.0), optax.scale_by_zoom_linesearch(max_linesearch_steps=15)),
], ids=["lbfgs", "backtracking", "zoom"])
def test_line_searches_inside_adaptix_chain_equal_optax_chain(make):
    np.testing.assert_array_equal(_solve(make(adaptix.chain)), _solve(make(optax.chain)))


def test_adaptix_stages_beside_a_line_search_measure_their_input():
    """In ``optax.chain`` a caller's ``grad=`` is the objective's gradient, never what adaptix measures."""
    search = optax.scale_by_backtracking_linesearch(max_backtracking_steps=15, store_grad=True)
    ours = _solve(optax.chain(adaptix.scale_by_rms(0.9, 1e-8), adaptix.scale(-1e-2), search))
    ref = _solve(optax.chain(optax.scale_by_rms(0.9, 1e-8), optax.scale(-1e-2), search))
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
    mixed = _solve(adaptix.chain(adaptix.adam(1e-2), search))
    np.testing.assert_allclose(mixed, _solve(optax.chain(optax.adam(1e-2), search)), rtol=1e-5)


# ----------------------------------------------------------------------------
# 2. One step counter; Optax's names for the moments.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", [c.param for c in MATCHING])
def test_one_counter_where_optax_has_one_and_moments_under_optax_names(case):
    params = _params()
    ours, theirs = case.make().init(params), _optax_of(case).init(params)
    n_ours, n_theirs = (len(otu.tree_get_all_with_path(s, "count")) for s in (ours, theirs))
    assert n_ours == n_theirs <= 1, (n_ours, n_theirs)
    with_schedule = case.make(learning_rate=optax.linear_schedule(0.01, 0.0, 10)).init(params)
    assert len(otu.tree_get_all_with_path(with_schedule, "count")) == 1  # Optax keeps two here
    for name in ("mu", "nu", "nu_max", "trace", "sum_of_squares", "ema"):
        if case.id == "adadelta" and name == "nu":
            continue  # AdaDelta's E[g^2]: Optax's e_g, adaptix's nu (from_optax maps them)
        assert len(otu.tree_get_all_with_path(ours, name)) == len(otu.tree_get_all_with_path(theirs, name)), name


def test_tree_get_reads_adam_moments_and_count_after_steps(x64):
    params = _params(jnp.float64)
    ours, theirs = adaptix.adam(0.01), optax.adam(0.01)
    _, s_ours = _steps(ours, params, ours.init(params), 0, 4, jnp.float64)
    _, s_theirs = _steps(theirs, params, theirs.init(params), 0, 4, jnp.float64)
    assert int(otu.tree_get(s_ours, "count")) == int(otu.tree_get(s_theirs, "count")) == 4
    for name in ("mu", "nu"):
        _close(otu.tree_get(s_ours, name), otu.tree_get(s_theirs, name), 1e-12)


# ----------------------------------------------------------------------------
# 3. Optax checkpoints continue in adaptix, and the reverse.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", [c.param for c in MATCHING])
def test_optax_run_continues_in_adaptix_and_back(case, x64):
    params0 = _params(jnp.float64)
    optax_tx, tx = _optax_of(case), case.make()
    straight, _ = _steps(optax_tx, params0, optax_tx.init(params0), 0, 10, jnp.float64)

    half, optax_state = _steps(optax_tx, params0, optax_tx.init(params0), 0, 5, jnp.float64)
    state = adaptix.from_optax(optax_state, tx, half, optax_tx=optax_tx)
    resumed, state = _steps(tx, half, state, 5, 10, jnp.float64)
    _close(resumed, straight, 1e-9)

    half, state = _steps(tx, params0, tx.init(params0), 0, 5, jnp.float64)
    back = adaptix.to_optax(state, optax_tx, half, tx=tx)
    assert jax.tree.structure(back) == jax.tree.structure(optax_tx.init(params0))
    resumed, _ = _steps(optax_tx, half, back, 5, 10, jnp.float64)
    _close(resumed, straight, 1e-9)


def test_a_schedule_counts_once_and_converts(x64):
    schedule = optax.cosine_decay_schedule(0.05, 10)
    optax_tx, tx = optax.adamw(schedule, weight_decay=0.1), adaptix.adamw(schedule, weight_decay=0.1)
    params0 = _params(jnp.float64)
    straight, _ = _steps(optax_tx, params0, optax_tx.init(params0), 0, 10, jnp.float64)
    half, optax_state = _steps(optax_tx, params0, optax_tx.init(params0), 0, 5, jnp.float64)
    resumed, _ = _steps(tx, half, adaptix.from_optax(optax_state, tx, half), 5, 10, jnp.float64)
    _close(resumed, straight, 1e-9)


def test_orbax_checkpoint_of_an_optax_run_resumes_in_adaptix(tmp_path, x64):
    ocp = pytest.importorskip("orbax.checkpoint")
    optax_tx, tx = optax.adam(0.02), adaptix.adam(0.02)
    params0 = _params(jnp.float64)
    straight, _ = _steps(optax_tx, params0, optax_tx.init(params0), 0, 10, jnp.float64)
    half, optax_state = _steps(optax_tx, params0, optax_tx.init(params0), 0, 5, jnp.float64)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "optax_run", {"params": half, "opt_state": optax_state})
    checkpointer.wait_until_finished()
    # a new program: it knows the parameters' shapes and the optimizer the run was saved with
    target = jax.eval_shape(lambda: {"params": params0, "opt_state": optax_tx.init(params0)})
    restored = checkpointer.restore(tmp_path / "optax_run", target)
    state = adaptix.from_optax(restored["opt_state"], tx, restored["params"], optax_tx=optax_tx)
    resumed, state = _steps(tx, restored["params"], state, 5, 10, jnp.float64)
    _close(resumed, straight, 1e-9)
    # and the adaptix state saves and restores as any pytree
    checkpointer.save(tmp_path / "adaptix_run", state)
    checkpointer.wait_until_finished()
    again = checkpointer.restore(tmp_path / "adaptix_run", jax.eval_shape(tx.init, params0))
    assert jax.tree.structure(again) == jax.tree.structure(state)


def test_conversions_refuse_different_algorithms():
    params = _params()
    with pytest.raises(ValueError, match="one step late"):
        adaptix.from_optax(optax.rprop(1e-3).init(params), adaptix.rprop(1e-3), params)
    with pytest.raises(ValueError, match="one step late"):
        adaptix.to_optax(adaptix.rprop(1e-3).init(params), optax.rprop(1e-3), params)
    with pytest.raises(ValueError, match="mu_product"):  # PyTorch's NAdam keeps a product Optax has not
        adaptix.from_optax(optax.nadam(1e-3).init(params), adaptix.nadam(1e-3, momentum_decay=4e-3), params)
    optax_tx = optax.adadelta(None)
    state = optax_tx.update(_grads(0), optax_tx.init(params), params)[1]
    with pytest.raises(ValueError, match="ascends"):
        adaptix.from_optax(state, adaptix.adadelta(None), params, optax_tx=optax_tx)
    optax_tx = optax.amsgrad(0.1)
    _, state = _steps(optax_tx, params, optax_tx.init(params), 0, 3, jnp.float32)
    with pytest.raises(ValueError, match="PyTorch's AMSGrad"):
        adaptix.from_optax(state, adaptix.amsgrad(0.1, debias_before_max=False), params, optax_tx=optax_tx)
    with pytest.raises(ValueError, match="algorithms differ"):
        adaptix.from_optax(optax.adam(0.1).init(params), adaptix.sgd(0.1, momentum=0.9), params)
    with pytest.raises(ValueError, match=r"\['w'\].*\(3, 4\)"):
        adaptix.from_optax(optax.adam(0.1).init(params), adaptix.adam(0.1), {"w": jnp.ones((4, 3)), "b": params["b"]})


# ----------------------------------------------------------------------------
# 4. Dtypes as Optax.
# ----------------------------------------------------------------------------

# Where Optax is inconsistent with itself: its NAdam turns int32 gradients of bf16 parameters into
# float32 updates while its Adam gives bf16 (adaptix: bf16 for both, the state's dtype).
OPTAX_QUIRKS = {("nadam", "bfloat16", "int32"), ("nadamw", "bfloat16", "int32")}
DTYPES = ["float32", "bfloat16", "float16", "int32"]


@pytest.mark.parametrize("case", [c.param for c in MATCHING])
def test_update_dtypes_as_optax(case):
    for param_dtype, grad_dtype in itertools.product(["float32", "bfloat16"], DTYPES):
        params = {"w": jnp.ones(3, param_dtype)}
        grads = {"w": jnp.asarray([1, 2, -3]).astype(grad_dtype)}
        tx, optax_tx = case.make(), _optax_of(case)
        state = tx.init(params)
        ours, new_state = tx.update(grads, state, params)
        theirs, _ = optax_tx.update(grads, optax_tx.init(params), params)
        if (case.id, param_dtype, grad_dtype) not in OPTAX_QUIRKS:
            assert ours["w"].dtype == theirs["w"].dtype, (param_dtype, grad_dtype, ours["w"].dtype, theirs["w"].dtype)
        assert jnp.issubdtype(ours["w"].dtype, jnp.floating)  # int32 gradients train (Optax: float32 updates)
        if grad_dtype == "int32":
            assert bool(jnp.any(ours["w"] != 0)), "int32 gradients must move the parameters"
        # unlike Optax's, the state keeps its dtypes (a jitted step is traced once)
        assert [x.dtype for x in jax.tree.leaves(new_state)] == [x.dtype for x in jax.tree.leaves(state)]


# ----------------------------------------------------------------------------
# 5. None leaves pass through.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", [c.param for c in OPTIMIZERS if c.id != "packed_adamw"])
def test_none_leaves_pass_through(case):
    tx = case.make()
    params = {"w": jnp.ones((2, 3)), "frozen": None}
    state = tx.init(params)
    updates, new_state = tx.update({"w": jnp.full((2, 3), 0.5), "frozen": None}, state, params)
    assert updates["frozen"] is None and updates["w"].shape == (2, 3)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    # a None gradient for a leaf that has a parameter: no update there, its state unchanged
    params = {"w": jnp.ones((2, 3)), "b": jnp.ones(2)}
    state = tx.init(params)
    updates, new_state = tx.update({"w": jnp.full((2, 3), 0.5), "b": None}, state, params)
    assert updates["b"] is None
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    if case.id in SAME_ALGORITHM:
        try:  # several Optax aliases (adam, adagrad, lion, ...) refuse a None gradient under a parameter
            ref, _ = _optax_of(case).update({"w": jnp.full((2, 3), 0.5), "b": None}, _optax_of(case).init(params),
                                            params)
        except (ValueError, TypeError):
            ref = _optax_of(case).update({"w": jnp.full((2, 3), 0.5)}, _optax_of(case).init({"w": params["w"]}),
                                         {"w": params["w"]})[0]
        # float32: Optax's 1 - b2 of a Python b2 is 0.001 rounded, its bias correction 1 - float32(b2):
        # v-hat = 1.000013 after one step of g = 0.5, where adaptix's is 1 (README, "differs on purpose").
        np.testing.assert_allclose(updates["w"], ref["w"], rtol=1e-5)
    assert tx.update(None, state, params)[0] is None


# ----------------------------------------------------------------------------
# 6. The state's structure never depends on how a hyperparameter is passed.
# ----------------------------------------------------------------------------

PRIMITIVES = [
    (adaptix.trace, dict(decay=0.9)), (adaptix.ema, dict(decay=0.9)), (adaptix.nesterov_ema, {}),
    (adaptix.lion_momentum, {}), (adaptix.scale_by_rms, dict(bias_correction=True)), (adaptix.scale_by_stddev, {}),
    (adaptix.scale_by_rss, {}), (adaptix.scale_by_max_rms, {}), (adaptix.scale_by_inf_norm, {}),
    (adaptix.scale_by_rectified_rms, {}), (adaptix.scale_by_update_rms, {}),
    (adaptix.scale_by_rprop, dict(learning_rate=0.1)),
    (adaptix.bias_correction, dict(decay=0.9)), (adaptix.add_decayed_weights, dict(weight_decay=0.1)),
    (adaptix.scale, dict(step_size=-0.5)), (adaptix.scale_by_learning_rate, dict(learning_rate=0.1)),
    (adaptix.parameter_difference_momentum, dict(beta=0.9)), (adaptix.scale_by_posterior_variance, {}),
]
ALIAS_FACTORIES = [(c.fn, c.kwargs) for c in ALIASES]  # adabayes, adabayes_fp and full_matrix_adagrad among them


def _numeric_arguments(fn, kwargs):
    """The real-valued hyperparameters of ``fn``: those in ``kwargs`` and the float defaults.

    Integer arguments (``batch_size``, ``max_size``, ``history``) are sizes that shape the
    computation, not hyperparameters that could be traced.
    """

    def real(v):
        return isinstance(v, numbers.Real) and not isinstance(v, numbers.Integral)

    out = {k: v for k, v in kwargs.items() if real(v)}
    for name, p in inspect.signature(fn).parameters.items():
        if name not in out and real(p.default):
            out[name] = p.default
    return out


def _state_and_updates(tx):
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)}
    state = tx.init(params)
    updates = None
    for t in range(2):
        updates, state = tx.update({"w": jnp.cos(jnp.arange(6.0) + t).reshape(2, 3)}, state, params)
    return state, updates


@pytest.mark.parametrize("fn, kwargs", [pytest.param(f, k, id=f.__name__ + ("_" + "_".join(k) if k else ""))
                                        for f, k in ALIAS_FACTORIES + PRIMITIVES])
def test_state_structure_and_updates_do_not_depend_on_how_a_number_is_passed(fn, kwargs):
    for name, value in _numeric_arguments(fn, kwargs).items():
        # the reference: the value rounded to float32, as the array variants hold it (1 - b2 of a float32
        # b2 = 0.999 differs from a Python 1 - 0.999 by 1e-5)
        base_state, base_updates = _state_and_updates(fn(**{**kwargs, name: float(np.float32(value))}))
        dtype = jnp.float32
        variants = {"numpy": np.asarray(value, dtype)[()], "jax": jnp.asarray(value, dtype)}
        for how, passed in variants.items():
            state, updates = _state_and_updates(fn(**{**kwargs, name: passed}))
            assert jax.tree.structure(state) == jax.tree.structure(base_state), (name, how)
            _close(updates, base_updates, 1e-6)
        traced = jax.jit(lambda x, name=name: _state_and_updates(fn(**{**kwargs, name: x})))(jnp.asarray(value, dtype))
        assert jax.tree.structure(traced[0]) == jax.tree.structure(base_state), (name, "tracer")
        _close(traced[1], base_updates, 1e-5)


# ----------------------------------------------------------------------------
# 7. Errors that name the place.
# ----------------------------------------------------------------------------


def test_a_leaf_of_the_wrong_shape_is_named_with_both_shapes():
    tx = adaptix.adam(0.1)
    state = tx.init({"layer": {"kernel": jnp.ones((3, 4))}})
    with pytest.raises(ValueError, match=r"\['layer'\]\['kernel'\] has shape \(4, 3\).*shape \(3, 4\)"):
        tx.update({"layer": {"kernel": jnp.ones((4, 3))}}, state)


@pytest.mark.parametrize("tx", [adaptix.adam(0.1), adaptix.sgd(0.1), adaptix.scale_by_rms(), adaptix.trace(0.9),
                                adaptix.bias_correction(0.9)], ids=["adam", "sgd", "scale_by_rms", "trace",
                                                                    "bias_correction"])
def test_a_missing_state_says_so(tx):
    with pytest.raises(ValueError, match="state is missing"):
        tx.update({"w": jnp.ones(2)}, None)


def test_a_mask_of_the_wrong_structure_names_both_structures():
    params = {"a": jnp.ones(2), "b": {"c": jnp.ones(3)}}
    for tx in (adaptix.adamw(0.1, mask={"a": True, "x": False}), adaptix.add_decayed_weights(0.1, mask=[True])):
        with pytest.raises(ValueError, match=r"mask tree does not match the params tree(.|\n)*mask: (.|\n)*params: "):
            tx.init(params)
