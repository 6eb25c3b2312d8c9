"""Meta-gradients: d(loss after K steps)/d(learning rate) is finite and equals a finite difference.

The quadratic's target coincides with one initial coordinate, so that coordinate's gradient is
exactly 0 at every step and its second moment stays 0: there the chain rule through
:math:`\\sqrt{v}` is :math:`0/0`, which made ``optax.adam`` and (before ``moment_sqrt``)
``adaptix.adam`` return NaN.
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

from optimizers import OPTIMIZERS

TARGET = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])
START = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # [0, 0] is at its target: g = 0 there throughout
STEPS = 4
CASES = [pytest.param(c, id=c.id) for c in OPTIMIZERS if c.elementwise]  # eigh's derivative is
# undefined at the degenerate eigenvalues of full-matrix AdaGrad's rank-deficient G


def _loss_after(learning_rate, case):
    tx = case.make(learning_rate=learning_rate)
    params = {"w": jnp.asarray(START)}
    state = tx.init(params)
    for _ in range(STEPS):
        grads = jax.grad(lambda p: 0.5 * jnp.sum((p["w"] - TARGET) ** 2))(params)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return 0.5 * jnp.sum((params["w"] - TARGET) ** 2)


@pytest.mark.parametrize("case", CASES)
def test_learning_rate_gradient_matches_central_difference(case, x64):
    lr, h = case.kwargs["learning_rate"], 1e-6 * case.kwargs["learning_rate"]
    loss = jax.jit(lambda rate: _loss_after(rate, case))
    grad = float(jax.jit(jax.grad(lambda rate: _loss_after(rate, case)))(lr))
    central = float((loss(lr + h) - loss(lr - h)) / (2 * h))
    assert np.isfinite(grad), f"{case.id}: d loss / d lr = {grad}"
    if case.quantized:  # finite is what can be asked: see the docstring of _quantized_derivative
        _quantized_derivative(case, grad, central)
        return
    np.testing.assert_allclose(grad, central, rtol=1e-4, atol=1e-6 * max(1.0, abs(central)))


def _quantized_derivative(case, grad, central):
    """8-bit codes are piecewise constant in the learning rate: ``jax.grad`` differentiates the run with
    the codes held (only the blocks' scales move), while a central difference also sees the codes that
    change between ``lr - h`` and ``lr + h``. The two agree to a few percent, not to 1e-4."""
    np.testing.assert_allclose(grad, central, rtol=0.1, err_msg=case.id)


@pytest.mark.parametrize("make", [optax.inject_hyperparams(adaptix.adam), adaptix.inject_hyperparams(adaptix.adam),
                                  optax.inject_hyperparams(adaptix.nadamw)], ids=["adam", "adaptix_adam", "nadamw"])
def test_injected_learning_rate_gradient_is_finite(make, x64):
    """The learning rate set in ``state.hyperparams`` (as a schedule-free sweep does) differentiates too."""

    def loss(lr):
        tx = make(learning_rate=0.0)
        p = jnp.asarray(START)
        s = tx.init(p)
        s.hyperparams["learning_rate"] = lr
        for _ in range(STEPS):
            u, s = tx.update(p - TARGET, s, p)
            p = p + u
        return 0.5 * jnp.sum((p - TARGET) ** 2)

    grad, h = float(jax.grad(loss)(0.01)), 1e-8
    np.testing.assert_allclose(grad, float((loss(0.01 + h) - loss(0.01 - h)) / (2 * h)), rtol=1e-4)


def test_optax_adam_is_nan_there(x64):
    """The reference does return NaN on this problem (the reason for ``moment_sqrt``)."""

    def loss(lr):
        tx = optax.adam(lr)
        p = jnp.asarray(START)
        s = tx.init(p)
        for _ in range(STEPS):
            u, s = tx.update(p - TARGET, s, p)
            p = p + u
        return 0.5 * jnp.sum((p - TARGET) ** 2)

    assert np.isnan(float(jax.grad(loss)(0.01)))


THEORY = Path(__file__).resolve().parents[1] / "docs" / "theory.md"


@pytest.mark.skipif(not THEORY.is_file(), reason="docs/theory.md is not here")
def test_the_theory_example_runs_and_is_finite(capsys):
    block = next(b for b in re.findall(r"```python\n(.*?)```", THEORY.read_text(), re.S) if "hypergradient" in b)
    namespace = {}
    exec(block, namespace)
    assert np.isfinite(float(namespace["hypergradient"]))
    np.testing.assert_allclose(float(namespace["hypergradient"]), float(namespace["central"]), rtol=1e-2)
