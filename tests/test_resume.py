"""Exact resume: optimizer state through Flax serialization and Orbax, bit for bit.

For every optimizer of the table (and adaptix inside ``optax.apply_if_finite``,
``optax.inject_hyperparams``, ``adaptix.inject_hyperparams`` and ``optax.MultiSteps``), and for each way of saving:

* ``flax_bytes``: ``flax.serialization.to_bytes`` / ``from_bytes(target, ...)``;
* ``flax_msgpack``: ``msgpack_serialize(to_state_dict(state))`` / ``from_state_dict(target,
  msgpack_restore(...))``;
* ``orbax``: ``orbax.checkpoint.StandardCheckpointer`` to ``tmp_path``, restored with the target
  ``opt.init(params)``;

the restored state has the original tree structure (NamedTuple types included), dtypes and
values, and training N steps straight equals N/2 steps, save, restore, N/2 steps bit for bit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import serialization

import adaptix

from optimizers import OPTIMIZERS, OptCase, named_tuples

ocp = pytest.importorskip("orbax.checkpoint")

N_STEPS = 8

WRAPPED = (
    OptCase("apply_if_finite_adam", lambda learning_rate: optax.apply_if_finite(adaptix.adam(learning_rate), 3),
            dict(learning_rate=0.01)),
    OptCase("inject_hyperparams_adamw", optax.inject_hyperparams(adaptix.adamw),
            dict(learning_rate=0.01, weight_decay=0.1), needs_params=True),
    OptCase("adaptix_inject_hyperparams_adamw", adaptix.inject_hyperparams(adaptix.adamw),
            dict(learning_rate=0.01, weight_decay=0.1), needs_params=True),
    OptCase("multisteps_nadam", lambda learning_rate: optax.MultiSteps(adaptix.nadam(learning_rate), 3),
            dict(learning_rate=0.01)),
)
CASES = [c.param for c in OPTIMIZERS + WRAPPED]
METHODS = ["flax_bytes", "flax_msgpack", "orbax"]


def initial_params():
    rng = np.random.default_rng(7)
    return {
        "dense": {"kernel": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
                  "bias": jnp.asarray(rng.normal(size=4), jnp.float32)},
        "scale": jnp.asarray(1.5, jnp.float32),
    }


def gradient(step):
    rng = np.random.default_rng(1000 + step)
    return {
        "dense": {"kernel": jnp.asarray(0.1 + rng.normal(size=(3, 4)), jnp.float32),
                  "bias": jnp.asarray(rng.normal(size=4), jnp.float32)},
        "scale": jnp.asarray(rng.normal(), jnp.float32),
    }


def run(opt, params, state, steps):
    for step in steps:
        updates, state = opt.update(gradient(step), state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def save_and_restore(method, tree, target, path):
    if method == "flax_bytes":
        return serialization.from_bytes(target, serialization.to_bytes(tree))
    if method == "flax_msgpack":
        blob = serialization.msgpack_serialize(serialization.to_state_dict(tree))
        return serialization.from_state_dict(target, serialization.msgpack_restore(blob))
    if method == "orbax":
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(path / "checkpoint", tree)
        checkpointer.wait_until_finished()
        return checkpointer.restore(path / "checkpoint", target)
    raise ValueError(method)


def assert_identical(restored, original):
    assert jax.tree.structure(restored) == jax.tree.structure(original)  # NamedTuple types included
    for x, y in zip(jax.tree.leaves(restored), jax.tree.leaves(original)):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        assert np.shape(x) == np.shape(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def named_tuple_types(tree) -> list[type]:
    return [type(node) for node in named_tuples(tree)]


_JITTED: dict[str, optax.GradientTransformation] = {}


def make(case: OptCase) -> optax.GradientTransformation:
    """The table's optimizers run eagerly. The wrappers run jitted, once compiled per case:
    eagerly, their ``lax.cond`` closes over the state, and a state restored as NumPy arrays
    becomes a compile-time constant that XLA may fold with different rounding than the same
    computation on arguments (seen: 1 ulp). Inside ``jit`` the state is always an argument."""
    if case not in WRAPPED:
        return case.make()
    if case.id not in _JITTED:
        opt = case.make()
        _JITTED[case.id] = optax.GradientTransformationExtraArgs(opt.init, jax.jit(opt.update))
    return _JITTED[case.id]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES)
def test_resume_is_bit_identical(case, method, tmp_path):
    opt = make(case)
    params0 = initial_params()

    straight_params, straight_state = run(opt, params0, opt.init(params0), range(N_STEPS))

    half = N_STEPS // 2
    params, state = run(opt, params0, opt.init(params0), range(half))
    checkpoint = {"params": params, "opt_state": state}
    target = {"params": params0, "opt_state": opt.init(params0)}
    restored = save_and_restore(method, checkpoint, target, tmp_path)
    assert_identical(restored, checkpoint)
    assert named_tuple_types(restored["opt_state"]) == named_tuple_types(state)
    assert named_tuple_types(state), "the state holds NamedTuples"

    resumed_params, resumed_state = run(opt, restored["params"], restored["opt_state"], range(half, N_STEPS))
    assert_identical(resumed_params, straight_params)
    assert_identical(resumed_state, straight_state)


def test_orbax_restore_with_abstract_target_and_no_retracing(tmp_path):
    # The target may be abstract (jax.eval_shape of init); the restored state feeds the jitted
    # update traced for the original state without a new trace (same avals, weak types included).
    opt = adaptix.adamw(1e-2)
    params = initial_params()
    traces = []

    @jax.jit
    def update(grads, state, params):
        traces.append(1)
        return opt.update(grads, state, params)

    state = opt.init(params)
    _, state = update(gradient(0), state, params)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "ckpt", state)
    checkpointer.wait_until_finished()
    abstract = jax.eval_shape(opt.init, params)
    restored = checkpointer.restore(tmp_path / "ckpt", abstract)
    assert_identical(restored, state)
    assert isinstance(restored.inner_state[1], adaptix.ScaleByRmsState)
    update(gradient(1), restored, params)
    assert len(traces) == 1


def test_restore_into_the_wrong_optimizer_fails_loudly():
    # Restoring Adam's state into an SGD-momentum target is an error, not a silent mix-up.
    params = initial_params()
    blob = serialization.to_bytes(adaptix.adam(1e-3).init(params))
    with pytest.raises((ValueError, KeyError, TypeError)):
        serialization.from_bytes(adaptix.sgd(1e-3, momentum=0.9).init(params), blob)
