"""``adaptix.inject_hyperparams``: Optax's wrapper as a drop-in, without its pitfalls.

* For every optimizer of the table, wrapped with all its numeric hyperparameters in the state:
  the updates equal the plain alias's bit for bit, in float32, float64 and bfloat16, and the inner
  state has the plain state's tree, shapes and dtypes (``optax.inject_hyperparams`` drifts in
  float32, and rounds ``b2 = 0.999`` to 1 with bfloat16 parameters).
* A value set in ``state.hyperparams`` (Python float, NumPy scalar, jax scalar weakly typed or
  not) never retraces a jitted step: counted directly, through ``flax.nnx.Optimizer`` and through
  ``flax.training.train_state.TrainState``.
* ``tree_get``, schedules, serialization, vmapping over the state, and the errors.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx, serialization
from flax.training import train_state

import adaptix

from optimizers import OPTIMIZER_PARAMS

DTYPES = {"float32": jnp.float32, "float64": jnp.float64, "bfloat16": jnp.bfloat16}


def params_and_grads(dtype, steps=3):
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(3, 4)), dtype), "b": jnp.asarray(rng.normal(size=4), dtype)}
    grads = [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape) * 10.0 ** rng.uniform(-3, 1), dtype),
                          params) for _ in range(steps)]
    return params, grads


def trajectory(tx, params, grads):
    state, out = tx.init(params), []
    for g in grads:
        u, state = tx.update(g, state, params)
        params = optax.apply_updates(params, u)
        out.append(u)
    return out, state


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", OPTIMIZER_PARAMS)
def test_same_updates_and_state_as_the_plain_alias(case, dtype):
    if dtype == "bfloat16" and case.id == "chain_clipped_adam":
        pytest.skip("optax.clip_by_global_norm given a float32 max_norm with bfloat16 updates: see the README")
    with jax.enable_x64(dtype == "float64"):
        params, grads = params_and_grads(DTYPES[dtype])
        plain_updates, plain_state = trajectory(case.make(), params, grads)
        injected = adaptix.inject_hyperparams(case.fn, static_args=case.static_args)(**case.kwargs)
        updates, state = trajectory(injected, params, grads)
        for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(plain_updates)):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(np.asarray(a, np.float64), np.asarray(b, np.float64))
        assert jax.tree.structure(state.inner_state) == jax.tree.structure(plain_state)
        assert jax.tree.map(jax.typeof, state.inner_state) == jax.tree.map(jax.typeof, plain_state)
        stored = jnp.float64 if dtype == "float64" else jnp.float32
        assert all(h.dtype == stored for h in state.hyperparams.values()), state.hyperparams


def test_bfloat16_params_keep_b2():
    params = jnp.ones(3, jnp.bfloat16)
    state = adaptix.inject_hyperparams(adaptix.adam)(learning_rate=1e-3).init(params)
    assert state.hyperparams["b2"].dtype == jnp.float32
    assert float(state.hyperparams["b2"]) == float(np.float32(0.999))
    # Optax's wrapper stores it in the parameters' dtype, where 0.999 rounds to 1.
    assert float(optax.inject_hyperparams(optax.adam)(learning_rate=1e-3).init(params).hyperparams["b2"]) == 1.0


NEW_VALUES = {
    "python float": lambda x: x,
    "numpy float64": np.float64,
    "numpy float32": np.float32,
    "jax weak": jnp.asarray,
    "jax float32": lambda x: jnp.asarray(x, jnp.float32),
}


def test_setting_a_value_never_retraces():
    opt = adaptix.inject_hyperparams(adaptix.adam)(learning_rate=1e-2)
    params = jnp.ones(4)
    traces = []

    @jax.jit
    def step(state):
        traces.append(1)
        return opt.update(jnp.ones(4), state, params)

    state = opt.init(params)
    for i, convert in enumerate(NEW_VALUES.values()):
        state.hyperparams["learning_rate"] = convert(1e-3 * (i + 1))
        u, state = step(state)
        np.testing.assert_allclose(np.asarray(u), -1e-3 * (i + 1), rtol=1e-5)
    assert len(traces) == 1


def test_optax_wrapper_retraces():
    """The pitfall this wrapper removes: Optax's keeps the new value's type, and the step is traced again."""
    opt = optax.inject_hyperparams(adaptix.adam)(learning_rate=1e-2)
    traces = []

    @jax.jit
    def step(state):
        traces.append(1)
        return opt.update(jnp.ones(4), state, jnp.ones(4))

    state = opt.init(jnp.ones(4))
    for convert in NEW_VALUES.values():
        state.hyperparams["learning_rate"] = convert(1e-3)
        _, state = step(state)
    assert len(traces) > 1


class Linear(nnx.Module):
    def __init__(self, rngs):
        self.layer = nnx.Linear(3, 1, rngs=rngs)

    def __call__(self, x):
        return self.layer(x)


def test_nnx_optimizer_learning_rate_between_steps():
    model = Linear(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, adaptix.inject_hyperparams(adaptix.sgd)(learning_rate=0.1), wrt=nnx.Param)
    x, traces = jnp.ones((4, 3)), []

    @nnx.jit
    def step(model, optimizer):
        traces.append(1)
        grads = nnx.grad(lambda m: jnp.mean(m(x)))(model)
        return optimizer.update(model, grads)

    for i, convert in enumerate(NEW_VALUES.values()):
        optimizer.opt_state.hyperparams["learning_rate"] = convert(0.01 * (i + 1))
        updates = step(model, optimizer)
        # d mean(x @ W + b) / db = 1: the bias moves by exactly -learning_rate.
        np.testing.assert_allclose(np.asarray(updates["layer"]["bias"][...]), -0.01 * (i + 1), rtol=1e-6)
    assert len(traces) == 1
    assert float(optax.tree_utils.tree_get(optimizer.opt_state, "learning_rate")[...]) == pytest.approx(0.05)


def test_train_state_learning_rate_between_steps():
    params = {"w": jnp.ones(3)}
    state = train_state.TrainState.create(apply_fn=None, params=params,
                                          tx=adaptix.inject_hyperparams(adaptix.adamw)(learning_rate=0.1))
    traces = []

    @jax.jit
    def step(state):
        traces.append(1)
        grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(state.params)
        return state.apply_gradients(grads=grads)

    for i, convert in enumerate(NEW_VALUES.values()):
        state.opt_state.hyperparams["learning_rate"] = convert(0.01 * (i + 1))
        state = step(state)
    assert len(traces) == 1
    assert float(state.opt_state.hyperparams["learning_rate"]) == pytest.approx(0.05)


def test_tree_get_and_schedules():
    schedule = optax.linear_schedule(1e-2, 1e-3, transition_steps=4)
    injected = adaptix.inject_hyperparams(adaptix.adam)(learning_rate=schedule, b1=0.8)
    plain = adaptix.adam(schedule, b1=0.8)
    params, grads = params_and_grads(jnp.float32, steps=5)
    updates, state = trajectory(injected, params, grads)
    plain_updates, _ = trajectory(plain, params, grads)
    for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(plain_updates)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # The value shown is the one the last update used (step 5, count 4). As in Optax, a scheduled
    # name is also a key of ``hyperparams_states``: tree_get needs a filter to choose.
    value = optax.tree_utils.tree_get(state, "learning_rate", filtering=lambda path, x: not isinstance(x, tuple))
    assert float(value) == pytest.approx(float(schedule(4)))
    assert float(optax.tree_utils.tree_get(state, "b1")) == pytest.approx(0.8)
    assert isinstance(state, optax.InjectStatefulHyperparamsState)


def test_flax_serialization_keeps_the_dict_type():
    opt = adaptix.inject_hyperparams(adaptix.adam)(learning_rate=1e-3)
    params = jnp.ones(3)
    _, state = opt.update(jnp.ones(3), opt.init(params), params)
    restored = serialization.from_bytes(opt.init(params), serialization.to_bytes(state))
    assert isinstance(restored.hyperparams, adaptix.Hyperparams)
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    restored.hyperparams["learning_rate"] = 2e-3
    assert restored.hyperparams["learning_rate"].dtype == jnp.float32


def test_vmap_over_learning_rates():
    """A sweep as one program: the state holds the rate, so the step is vmapped over states."""
    opt = adaptix.inject_hyperparams(adaptix.adam)(learning_rate=1e-3)
    params = jnp.ones(3)
    rates = jnp.asarray([1e-3, 1e-2, 1e-1])

    def init(rate):
        state = opt.init(params)
        state.hyperparams["learning_rate"] = rate
        return state

    states = jax.vmap(init)(rates)
    updates, states = jax.jit(jax.vmap(lambda s: opt.update(jnp.ones(3), s, params)))(states)
    np.testing.assert_allclose(np.asarray(updates[:, 0]), -np.asarray(rates), rtol=1e-5)
    assert states.hyperparams["learning_rate"].shape == (3,)


def test_errors():
    with pytest.raises(ValueError, match="adam: b2 must be"):
        adaptix.inject_hyperparams(adaptix.adam)(learning_rate=1e-3, b2=1.5)
    with pytest.raises(ValueError, match=r"static_args \['max_sise'\] are not parameters"):
        adaptix.inject_hyperparams(adaptix.full_matrix_adagrad, static_args="max_sise")
    with pytest.raises(TypeError, match="hyperparam_dtype must be a floating dtype"):
        adaptix.inject_hyperparams(adaptix.adam, hyperparam_dtype=jnp.int32)
    with pytest.raises(TypeError, match="hyperparam_dtype must be a real floating dtype"):
        adaptix.inject_hyperparams(adaptix.adam, hyperparam_dtype=jnp.complex64)
    state = adaptix.inject_hyperparams(adaptix.adam)(learning_rate=1e-3).init(jnp.ones(2))
    with pytest.raises(ValueError, match=r"shape \(\) cannot be replaced by one of shape \(2,\)"):
        state.hyperparams["learning_rate"] = np.ones(2)


def test_hyperparam_dtype_override():
    sgd = adaptix.inject_hyperparams(adaptix.sgd, hyperparam_dtype=jnp.bfloat16)(learning_rate=1e-3, momentum=0.9)
    assert all(h.dtype == jnp.bfloat16 for h in sgd.init(jnp.ones(2)).hyperparams.values())
    # Asked for, bfloat16 rounds Adam's b2 = 0.999 to 1, which the alias refuses (where Optax's wrapper gives NaN).
    adam = adaptix.inject_hyperparams(adaptix.adam, hyperparam_dtype=jnp.bfloat16)(learning_rate=1e-3)
    with pytest.raises(ValueError, match="b2 must be finite and in"):
        adam.init(jnp.ones(2))
