"""Every optimizer of the table trains a small ``flax.nnx`` MLP; adaptix.adam drives a ``TrainState``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen, nnx
from flax.training import train_state

import adaptix

from optimizers import OPTIMIZER_PARAMS

STEPS = 30


def regression_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    w = rng.normal(size=(4,)).astype(np.float32)
    y = (np.tanh(x @ w) + 0.5 * x[:, 0] * x[:, 1]).astype(np.float32)[:, None]
    return jnp.asarray(x), jnp.asarray(y)


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(4, 16, rngs=rngs)
        self.out = nnx.Linear(16, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(jnp.tanh(self.hidden(x)))


def mse(model, x, y):
    return jnp.mean((model(x) - y) ** 2)


@nnx.jit
def train_step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(mse)(model, x, y)
    optimizer.update(model, grads, value=loss)  # extra keywords reach tx.update
    return loss


@pytest.mark.parametrize("case", OPTIMIZER_PARAMS)
def test_nnx_optimizer_trains(case):
    x, y = regression_data()
    model = MLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, case.make_flax(), wrt=nnx.Param)
    state_before = jax.tree.map(jax.typeof, nnx.state(optimizer, nnx.OptState))
    initial = float(mse(model, x, y))
    losses = [float(train_step(model, optimizer, x, y)) for _ in range(STEPS)]
    final = float(mse(model, x, y))
    assert np.all(np.isfinite(losses))
    # Every entry reaches at most ~0.5 of the initial loss in 30 steps (RAdam, in
    # its warm-up, is the slowest); 0.75 leaves room while still catching a stall.
    assert final < 0.75 * initial, f"{case.id}: loss {initial:.5f} -> {final:.5f}"
    assert int(optimizer.step[...]) == STEPS
    assert jax.tree.map(jax.typeof, nnx.state(optimizer, nnx.OptState)) == state_before


class LinenMLP(linen.Module):
    @linen.compact
    def __call__(self, x):
        return linen.Dense(1)(jnp.tanh(linen.Dense(16)(x)))


def test_train_state_adam():
    x, y = regression_data()
    module = LinenMLP()
    params = module.init(jax.random.key(0), x)["params"]
    tx = adaptix.adam(1e-2)
    state = train_state.TrainState.create(apply_fn=module.apply, params=params, tx=tx)

    def loss_fn(p):
        return jnp.mean((state.apply_fn({"params": p}, x) - y) ** 2)

    @jax.jit
    def step(state):
        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss

    initial = float(loss_fn(state.params))
    opt_state_avals = jax.tree.map(jax.typeof, state.opt_state)
    for _ in range(STEPS):
        state, _ = step(state)
    final = float(loss_fn(state.params))
    assert final < 0.9 * initial, (initial, final)
    assert int(state.step) == STEPS
    assert jax.tree.map(jax.typeof, state.opt_state) == opt_state_avals

    # Same run with optax.adam: the same trajectory to float32 rounding.
    ref = train_state.TrainState.create(apply_fn=module.apply, params=params, tx=optax.adam(1e-2))
    for _ in range(STEPS):
        ref, _ = step(ref)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
