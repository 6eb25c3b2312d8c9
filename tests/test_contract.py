"""The contract every optimizer of the table keeps (see ``tests/optimizers.py``).

eager == jit, no recompilation on the second update, dtypes preserved, complex
parameters, a stable state tree (also under ``jax.lax.cond``), unknown extra
keywords accepted, Optax wrappers (``inject_hyperparams``, ``MultiSteps``,
``masked``, ``apply_if_finite``) and no arrays held by the transformation.
"""

from __future__ import annotations

import functools
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import adaptix

from optimizers import COMPLEX_PARAMS, LR_SCALING_PARAMS, OPTIMIZER_PARAMS, OptCase

# ----------------------------------------------------------------------------
# Helpers.
# ----------------------------------------------------------------------------


def make_params(dtype=jnp.float32):
    rng = np.random.default_rng(0)
    return {
        "w": jnp.asarray(rng.normal(size=(3, 4)), dtype),
        "b": jnp.asarray(rng.normal(size=(4,)), dtype),
    }


def make_grads(step, dtype=jnp.float32):
    rng = np.random.default_rng(100 + step)
    # A shared bias plus noise, so signs sometimes agree and sometimes flip.
    return {
        "w": jnp.asarray(0.3 + rng.normal(size=(3, 4)), dtype),
        "b": jnp.asarray(-0.2 + rng.normal(size=(4,)), dtype),
    }


def avals(tree):
    """Structure, shapes, dtypes and weak types of a tree: what jit keys its cache on."""
    return jax.tree.map(lambda x: jax.typeof(x), tree)


def assert_same_avals(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        ax, ay = jax.typeof(x), jax.typeof(y)
        assert (ax.shape, ax.dtype, ax.weak_type) == (ay.shape, ay.dtype, ay.weak_type), (ax, ay)


def assert_trees_close(a, b, rtol, atol):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert jnp.result_type(x) == jnp.result_type(y)
        np.testing.assert_allclose(
            np.asarray(x, np.float64 if not jnp.iscomplexobj(x) else np.complex128),
            np.asarray(y, np.float64 if not jnp.iscomplexobj(y) else np.complex128),
            rtol=rtol,
            atol=atol,
        )


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert jnp.result_type(x) == jnp.result_type(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# Why the few-ulp comparisons of two compilations of a step cannot apply to a non-elementwise entry: its
# eigh couples the coordinates of a leaf and amplifies float32 rounding by the matrix's conditioning; eager
# and jit differ by up to 5e-4 relative for eps=1e-3, each as far from a float64 reference as the other.
NOT_ELEMENTWISE = "{}: not elementwise: eigh amplifies float32 rounding; compilations agree to ~1e-4, not a few ulps"

_JITTED = {}


def jitted_update(case):
    """One jitted update per table entry, shared by the eager/jit and recompilation tests.

    Returns ``(opt, jitted update, list of traces)``: the list grows by one each
    time the update is traced (a Python side effect), so a retrace is visible.
    """
    if case.id not in _JITTED:
        opt = case.make()
        traces = []

        def step(g, s, p):
            traces.append(None)
            return opt.update(g, s, p)

        _JITTED[case.id] = (opt, jax.jit(step), traces)
    return _JITTED[case.id]


# ----------------------------------------------------------------------------
# eager == jit, no recompilation.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", OPTIMIZER_PARAMS)
def test_eager_equals_jit(case):
    if not case.elementwise:
        pytest.skip(NOT_ELEMENTWISE.format(case.id))
    opt, jupdate, _ = jitted_update(case)
    params = make_params()
    s_eager = s_jit = opt.init(params)
    for t in range(5):
        g = make_grads(t)
        u_eager, s_eager = opt.update(g, s_eager, params)
        u_jit, s_jit = jupdate(g, s_jit, params)
        assert_trees_close(u_eager, u_jit, rtol=2e-6, atol=1e-7)
        assert_trees_close(s_eager, s_jit, rtol=2e-6, atol=1e-7)
        params = optax.apply_updates(params, u_eager)


@pytest.mark.parametrize("case", OPTIMIZER_PARAMS)
def test_no_recompilation(case):
    # Shares the compiled update with test_eager_equals_jit (whichever runs first
    # traces it); every further update, from any state it returned, must hit the cache.
    opt, jupdate, traces = jitted_update(case)
    params = make_params()
    state = opt.init(params)
    for t in range(3):
        updates, state = jupdate(make_grads(t), state, params)
        params = optax.apply_updates(params, updates)
    jax.block_until_ready(state)
    assert len(traces) == 1, f"{case.id}: traced {len(traces)} times"
    assert jupdate._cache_size() == 1


def _state_dtype_drifts():
    """A deliberately broken transformation: its state dtype changes on update."""

    def init(params):
        del params
        return jnp.zeros([], jnp.int32)

    def update(updates, state, params=None, **extra):
        return updates, state.astype(jnp.float32) + 1.0

    return optax.GradientTransformationExtraArgs(init, update)


def test_recompilation_counter_can_fail():
    """``test_no_recompilation`` fails for a transformation that does retrace."""
    drifting = OptCase("state_dtype_drifts", _state_dtype_drifts)
    with pytest.raises(AssertionError, match="traced 2 times"):
        test_no_recompilation(drifting)


# ----------------------------------------------------------------------------
# dtypes.
# ----------------------------------------------------------------------------


def _run_dtype_check(case, dtype):
    opt = case.make()
    params = make_params(dtype)
    state0 = opt.init(params)
    state = state0
    for t in range(3):
        g = make_grads(t, dtype)
        updates, state = opt.update(g, state, params)
        for u, gg in zip(jax.tree.leaves(updates), jax.tree.leaves(g)):
            # quantized moments read as float32, so bf16 gradients give float32 updates (Optax's rule)
            expected = jnp.promote_types(gg.dtype, jnp.float32) if case.quantized else gg.dtype
            assert u.dtype == expected, f"{case.id}: update dtype {u.dtype} != {expected} (gradients: {gg.dtype})"
            assert bool(jnp.all(jnp.isfinite(u.astype(jnp.float32))))
        assert_same_avals(state, state0)
        params = optax.apply_updates(params, updates)
        for p in jax.tree.leaves(params):
            assert p.dtype == dtype


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32], ids=["bf16", "f32"])
@pytest.mark.parametrize("case", OPTIMIZER_PARAMS)
def test_dtype_preserved(case, dtype):
    _run_dtype_check(case, dtype)


@pytest.mark.parametrize("case", OPTIMIZER_PARAMS)
def test_dtype_preserved_f64(case):
    before = jax.config.jax_enable_x64
    with jax.enable_x64(True):  # scoped: x64 is not switched on for the module
        _run_dtype_check(case, jnp.float64)
    assert jax.config.jax_enable_x64 == before


# ----------------------------------------------------------------------------
# complex parameters.
# ----------------------------------------------------------------------------

# AdaBayes's posterior variance and the diagnostics stage's EMA of |g|^2 are real too.
_SECOND_MOMENT_FIELDS = {"nu", "nu_max", "sum_of_squares", "e_x", "step_sizes", "variance", "snr_nu"}


COMPLEX_CASES = COMPLEX_PARAMS


def test_complex_second_moment_minimal():
    opt = adaptix.scale_by_rms(0.5, eps=0.0)
    z = jnp.asarray([3 + 4j, 1j], jnp.complex64)
    out, state = opt.update(z, opt.init(z))
    assert state.nu.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(state.nu), [12.5, 0.5], rtol=1e-6)  # 0.5 * |z|^2
    np.testing.assert_allclose(np.asarray(out), np.asarray(z) / np.sqrt([12.5, 0.5]), rtol=1e-6)


@pytest.mark.parametrize("case", COMPLEX_CASES)
def test_complex_params(case):
    opt = case.make()
    target = {"z": jnp.asarray([1 + 2j, -1j, 0.5, 2 - 1j], jnp.complex64)}
    params = {"z": jnp.zeros(4, jnp.complex64)}

    def loss(p):
        return jnp.sum(jnp.abs(p["z"] - target["z"]) ** 2)

    @jax.jit
    def step(p, s):
        value, g = jax.value_and_grad(loss)(p)
        g = jax.tree.map(jnp.conj, g)  # the descent direction for a real loss of complex z
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, value, u

    state = opt.init(params)
    # Second moments are moments of |g|^2: real; first moments stay complex.
    seen_real_moment = False
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        names = {getattr(k, "name", None) for k in path}
        if names & _SECOND_MOMENT_FIELDS:
            quantized_codes = case.quantized and "codes" in names  # 8-bit codes of a real moment
            assert leaf.dtype == (jnp.uint8 if quantized_codes else jnp.float32), (path, leaf.dtype)
            seen_real_moment = True
    # A non-elementwise second moment is the outer product sum g g^H: complex Hermitian, as it must be.
    needs_second_moment = case.elementwise and case.id not in {"sgd", "sgd_momentum", "sgd_nesterov"}
    assert seen_real_moment or not needs_second_moment, f"{case.id}: no real second moment in the state"

    init_state = state
    losses = []
    for _ in range(20):
        params, state, value, updates = step(params, state)
        losses.append(float(value))
        assert updates["z"].dtype == jnp.complex64
        assert bool(jnp.all(jnp.isfinite(updates["z"])))
    assert_same_avals(state, init_state)
    assert float(loss(params)) < losses[0], f"{case.id}: {losses[0]} -> {float(loss(params))}"


# ----------------------------------------------------------------------------
# state structure stability, jax.lax.cond.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", OPTIMIZER_PARAMS)
def test_state_stable_across_updates(case):
    opt = case.make()
    params = make_params()
    state0 = opt.init(params)
    state = state0
    for t in range(3):
        updates, state = opt.update(make_grads(t), state, params)
        assert_same_avals(state, state0)
        assert_same_avals(updates, params)


@pytest.mark.parametrize("case", OPTIMIZER_PARAMS)
def test_state_stable_under_cond(case):
    opt = case.make()
    params = make_params()
    state0 = opt.init(params)

    @jax.jit
    def maybe_update(pred, g, s, p):
        # Both branches must return identical structures and dtypes, or cond raises.
        return jax.lax.cond(
            pred,
            lambda: opt.update(g, s, p),
            lambda: (jax.tree.map(jnp.zeros_like, g), s),
        )

    g0, g1 = make_grads(0), make_grads(1)
    u, s = maybe_update(True, g0, state0, params)
    assert_same_avals(s, state0)

    u2, s2 = maybe_update(False, g1, s, params)  # no-op branch: old state back
    assert_same_avals(s2, state0)
    assert_trees_equal(s2, s)
    for x in jax.tree.leaves(u2):
        assert not bool(jnp.any(x))

    if not case.elementwise:
        pytest.skip(NOT_ELEMENTWISE.format(case.id) + " (values under cond vs eager; structure checked)")
    ref_u, ref_s = opt.update(g0, state0, params)
    assert_trees_close(u, ref_u, rtol=2e-6, atol=1e-7)
    assert_trees_close(s, ref_s, rtol=2e-6, atol=1e-7)


# ----------------------------------------------------------------------------
# extra keyword arguments.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", OPTIMIZER_PARAMS)
def test_extra_kwargs_accepted(case):
    opt = case.make()
    params = make_params()
    state = opt.init(params)
    g = make_grads(0)
    ref_u, ref_s = opt.update(g, state, params)
    u, s = opt.update(g, state, params, foo=1, value=jnp.asarray(3.0))
    assert_trees_equal(u, ref_u)
    assert_trees_equal(s, ref_s)


# ----------------------------------------------------------------------------
# Optax wrappers.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", LR_SCALING_PARAMS)
def test_inject_hyperparams_learning_rate(case):
    lr = case.kwargs["learning_rate"]
    injected = case.make_injected()
    params = make_params()
    g = make_grads(0)
    state = injected.init(params)
    assert set(state.hyperparams) >= {"learning_rate"}

    u1, s1 = injected.update(g, state, params)
    ref_u, _ = case.make().update(g, case.make().init(params), params)
    assert_trees_close(u1, ref_u, rtol=1e-5, atol=1e-7)

    # Changing the learning rate in the state rescales the update accordingly.
    halved = state._replace(hyperparams={**state.hyperparams, "learning_rate": jnp.asarray(lr / 2, jnp.float32)})
    u2, s2 = injected.update(g, halved, params)
    assert_trees_close(u2, jax.tree.map(lambda x: x / 2, u1), rtol=1e-5, atol=1e-8)
    assert_same_avals(s2, s1)

    # Two more steps in the injected form keep the state stable.
    for t in (1, 2):
        _, s2 = injected.update(make_grads(t), s2, params)
        assert_same_avals(s2, s1)


def test_inject_hyperparams_rprop_initial_step():
    """Rprop's learning rate is the initial step size: injecting it at init equals the alias."""
    params = make_params()
    g = make_grads(0)
    injected = optax.inject_hyperparams(adaptix.rprop)(learning_rate=0.05)
    u, _ = injected.update(g, injected.init(params), params)
    ref = adaptix.rprop(0.05)
    ref_u, _ = ref.update(g, ref.init(params), params)
    assert_trees_close(u, ref_u, rtol=1e-6, atol=0)
    np.testing.assert_allclose(np.abs(np.asarray(u["w"])), 0.05, rtol=1e-6)


@pytest.mark.parametrize("case", OPTIMIZER_PARAMS)
def test_multi_steps(case):
    k = 3
    opt = case.make()
    ms = optax.MultiSteps(opt, every_k_schedule=k)
    params = make_params()
    grads = [make_grads(t) for t in range(k)]
    state = ms.init(params)
    update = jax.jit(ms.update)  # MultiSteps' lax.cond retraces on every eager call
    for t, g in enumerate(grads):
        u, state = update(g, state, params)
        if t < k - 1:
            for x in jax.tree.leaves(u):
                assert not bool(jnp.any(x)), "MultiSteps must emit zeros while accumulating"
    mean = jax.tree.map(lambda *xs: sum(xs) / k, *grads)
    ref_u, ref_s = opt.update(mean, opt.init(params), params)
    assert_trees_close(u, ref_u, rtol=1e-5, atol=1e-6)
    assert_trees_close(state.inner_opt_state, ref_s, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", OPTIMIZER_PARAMS)
def test_masked(case):
    mask = {"w": True, "b": False}
    opt = case.make()
    masked = optax.masked(opt, mask)
    params = make_params()
    sub_params = {"w": params["w"]}
    state, sub_state = masked.init(params), opt.init(sub_params)
    for t in range(2):
        g = make_grads(t)
        u, state = masked.update(g, state, params)
        ref_u, sub_state = opt.update({"w": g["w"]}, sub_state, sub_params)
        np.testing.assert_array_equal(np.asarray(u["b"]), np.asarray(g["b"]))  # untouched
        np.testing.assert_allclose(np.asarray(u["w"]), np.asarray(ref_u["w"]), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("case", OPTIMIZER_PARAMS)
def test_apply_if_finite(case):
    opt = optax.apply_if_finite(case.make(), max_consecutive_errors=3)
    update = jax.jit(opt.update)
    params = make_params()
    state = opt.init(params)
    u, state = update(make_grads(0), state, params)
    params = optax.apply_updates(params, u)

    bad = make_grads(1)
    bad = {**bad, "w": bad["w"].at[1, 2].set(jnp.nan)}
    u_bad, state_bad = update(bad, state, params)
    new_params = optax.apply_updates(params, u_bad)
    assert_trees_equal(new_params, params)
    assert_trees_equal(state_bad.inner_state, state.inner_state)
    assert int(state_bad.notfinite_count) == 1

    u_ok, state_ok = update(make_grads(2), state_bad, params)
    assert int(state_ok.notfinite_count) == 0
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(u_ok))


# ----------------------------------------------------------------------------
# The transformation holds no arrays.
# ----------------------------------------------------------------------------


def find_arrays(obj, path="opt", seen=None):
    """Paths to every array reachable from ``obj`` through closures and containers."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, (jax.Array, np.ndarray, np.generic)):
        return [f"{path}: {type(obj).__name__}"]
    found = []
    if isinstance(obj, types.FunctionType):
        for name, cell in zip(obj.__code__.co_freevars, obj.__closure__ or ()):
            try:
                value = cell.cell_contents
            except ValueError:  # empty cell
                continue
            found += find_arrays(value, f"{path}.{obj.__name__}<{name}>", seen)
        for i, value in enumerate(obj.__defaults__ or ()):
            found += find_arrays(value, f"{path}.{obj.__name__}<default {i}>", seen)
        for name, value in (obj.__kwdefaults__ or {}).items():
            found += find_arrays(value, f"{path}.{obj.__name__}<{name}=>", seen)
    elif isinstance(obj, types.MethodType):
        found += find_arrays(obj.__func__, path, seen)
        found += find_arrays(obj.__self__, f"{path}.__self__", seen)
    elif isinstance(obj, functools.partial):
        found += find_arrays(obj.func, f"{path}.func", seen)
        found += find_arrays(obj.args, f"{path}.args", seen)
        found += find_arrays(obj.keywords, f"{path}.keywords", seen)
    elif isinstance(obj, (tuple, list, set, frozenset)):
        for i, value in enumerate(obj):
            found += find_arrays(value, f"{path}[{i}]", seen)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            found += find_arrays(value, f"{path}[{key!r}]", seen)
    return found


def test_find_arrays_can_fail():
    """The walker of ``test_holds_no_arrays`` finds an array captured in a closure."""
    assert find_arrays(optax.scale(jnp.asarray(2.0)))
    assert find_arrays(adaptix.chain(optax.scale(np.float32(2.0))))


@pytest.mark.parametrize("case", OPTIMIZER_PARAMS)
def test_holds_no_arrays(case):
    opt = case.make()
    assert isinstance(opt, optax.GradientTransformationExtraArgs)
    leaves = jax.tree.leaves(opt)
    assert all(callable(x) and not isinstance(x, (jax.Array, np.ndarray)) for x in leaves), leaves
    assert find_arrays(opt) == []
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, opt, wrt=nnx.Param)  # rejects array data in `tx`
    assert optimizer.tx is opt
