"""Full-matrix AdaGrad against a NumPy reference, and the rotation-invariance demonstration."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptix
from adaptix.experiments import landscapes as L


def _reference_steps(grads, lr, eps, eps_in_sqrt):
    """Full-matrix AdaGrad written from Duchi et al.'s equations in NumPy (float64), one leaf, flattened."""
    n = grads[0].size
    G = np.zeros((n, n), dtype=np.result_type(grads[0], np.float64))
    outs = []
    for g in grads:
        gv = g.ravel()
        G = G + np.outer(gv, gv.conj())
        lam, Q = np.linalg.eigh(G)
        lam = np.maximum(lam, 0.0)
        f = 1.0 / np.sqrt(lam + eps) if eps_in_sqrt else 1.0 / (np.sqrt(lam) + eps)
        outs.append((-lr * (Q @ (f * (Q.conj().T @ gv)))).reshape(g.shape))
    return outs


@pytest.mark.parametrize("eps_in_sqrt", [True, False])
def test_matches_numpy_reference_float64(x64, eps_in_sqrt):
    rng = np.random.default_rng(0)
    grads = [{"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(4) * 10.0} for _ in range(8)]
    opt = adaptix.full_matrix_adagrad(0.3, eps=1e-3, eps_in_sqrt=eps_in_sqrt)
    params = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(4)}
    state = opt.init(params)
    step = jax.jit(opt.update)
    ref_w = _reference_steps([g["w"] for g in grads], 0.3, 1e-3, eps_in_sqrt)
    ref_b = _reference_steps([g["b"] for g in grads], 0.3, 1e-3, eps_in_sqrt)
    for t, g in enumerate(grads):
        u, state = step(jax.tree.map(jnp.asarray, g), state, params)
        assert u["w"].dtype == jnp.float64 and u["w"].shape == (3, 2)
        np.testing.assert_allclose(u["w"], ref_w[t], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(u["b"], ref_b[t], rtol=1e-10, atol=1e-12)
    # the state is the sum of outer products of the flattened gradients
    np.testing.assert_allclose(state[0].sum_of_outer_products["w"],
                               sum(np.outer(g["w"].ravel(), g["w"].ravel()) for g in grads), rtol=1e-12)


def test_matches_numpy_reference_float32_and_complex():
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(5).astype(np.float32) for _ in range(6)]
    opt = adaptix.full_matrix_adagrad(0.1, eps=1e-2)
    state = opt.init(jnp.zeros(5))
    ref = _reference_steps(grads, 0.1, 1e-2, True)
    for t, g in enumerate(grads):
        u, state = opt.update(jnp.asarray(g), state)
        assert u.dtype == jnp.float32
        np.testing.assert_allclose(u, ref[t], rtol=2e-4, atol=1e-6)
    cgrads = [(rng.standard_normal(3) + 1j * rng.standard_normal(3)).astype(np.complex64) for _ in range(4)]
    state = opt.init(jnp.zeros(3, jnp.complex64))
    cref = _reference_steps(cgrads, 0.1, 1e-2, True)
    for t, g in enumerate(cgrads):
        u, state = opt.update(jnp.asarray(g), state)
        assert u.dtype == jnp.complex64
        np.testing.assert_allclose(u, cref[t], rtol=2e-4, atol=1e-6)


def test_first_step_is_normalised_gradient_and_second_closed_form():
    opt = adaptix.scale_by_full_matrix_rss(eps=0.0)
    state = opt.init(jnp.zeros(3))
    g1 = jnp.array([1.0, 2.0, 2.0])
    u, state = opt.update(g1, state)
    np.testing.assert_allclose(u, g1 / 3.0, rtol=1e-5)  # pseudo-inverse root of g g^T applied to g
    # with a diagonal accumulator it is diagonal AdaGrad
    diag = adaptix.scale_by_full_matrix_rss(eps=0.0)
    s = diag.init(jnp.zeros(2))
    for g in [jnp.array([3.0, 0.0]), jnp.array([0.0, 2.0])]:
        u, s = diag.update(g, s)
    np.testing.assert_allclose(u, [0.0, 1.0], atol=1e-6)


def test_zero_gradient_gives_zero_not_nan():
    opt = adaptix.full_matrix_adagrad(1.0, eps=0.0)
    u, _ = opt.update(jnp.zeros(4), opt.init(jnp.zeros(4)))
    np.testing.assert_array_equal(u, jnp.zeros(4))


def test_empty_leaf_passes_through():
    opt = adaptix.full_matrix_adagrad(0.1)
    params = {"w": jnp.ones(3), "empty": jnp.zeros((0,))}
    u, _ = opt.update(params, opt.init(params))
    assert u["empty"].shape == (0,)


def test_in_chain_it_measures_grad_and_rescales_its_input():
    """After a momentum stage, the preconditioner is still built from the raw gradient."""
    chained = adaptix.chain(adaptix.trace(0.5), adaptix.scale_by_full_matrix_rss(eps=0.1))
    s = chained.init(jnp.zeros(2))
    g1, g2 = jnp.array([1.0, 0.0]), jnp.array([1.0, 1.0])
    _, s = chained.update(g1, s)
    u, s = chained.update(g2, s)
    G = np.outer(g1, g1) + np.outer(g2, g2)
    lam, Q = np.linalg.eigh(G)
    expected = Q @ ((Q.T @ np.array([1.5, 1.0])) / np.sqrt(lam + 0.1))
    np.testing.assert_allclose(u, expected, rtol=1e-5)


def test_leaf_size_limit_and_validation():
    with pytest.raises(ValueError, match=r"the leaf \['big'\] of shape \(80, 60\) has 4800 entries, more than "
                                         r"max_size=4096.*optax.masked"):
        adaptix.scale_by_full_matrix_rss().init({"big": jnp.zeros((80, 60)), "small": jnp.zeros(3)})
    adaptix.scale_by_full_matrix_rss(max_size=5000).init({"big": jnp.zeros((80, 60))})
    with pytest.raises(ValueError, match=r"max_size must be an int in \[1, inf\), got 0"):
        adaptix.scale_by_full_matrix_rss(max_size=0)
    with pytest.raises(ValueError, match=r"scale_by_full_matrix_rss: eps must be finite and in \[0, inf\), got -1"):
        adaptix.scale_by_full_matrix_rss(eps=-1.0)
    with pytest.raises(ValueError, match=r"full_matrix_adagrad: learning_rate must be finite"):
        adaptix.full_matrix_adagrad(-0.1)
    with pytest.raises(ValueError, match="does not match"):
        opt = adaptix.scale_by_full_matrix_rss()
        opt.update({"a": jnp.zeros(2)}, opt.init({"b": jnp.zeros(2), "c": jnp.zeros(1)}))


def test_masked_to_small_leaves_inside_optax():
    params = {"big": jnp.zeros((100, 100)), "small": jnp.zeros(4)}
    opt = optax.partition(
        {"full": adaptix.full_matrix_adagrad(0.1), "diag": adaptix.adagrad(0.1)},
        {"big": "diag", "small": "full"},
    )
    state = opt.init(params)
    u, state = jax.jit(opt.update)(jax.tree.map(jnp.ones_like, params), state, params)
    assert u["big"].shape == (100, 100) and u["small"].shape == (4,)


# --------------------------------------------------------------------------------------------
# Rotation invariance: diagonal methods degrade on a rotated quadratic, full-matrix AdaGrad does not
# --------------------------------------------------------------------------------------------

CASES = [(2, L.rotation_2d(np.pi / 4), 200), (10, L.random_rotation(10, seed=0), 300)]


@pytest.mark.parametrize("dim, R, steps", CASES, ids=["2d", "10d"])
def test_full_matrix_trajectory_is_rotation_equivariant(x64, dim, R, steps):
    axis, rotated = L.quadratic(100.0, dim=dim), L.quadratic(100.0, dim=dim, rotation=R)
    np.testing.assert_allclose(rotated.x0, R @ axis.x0, rtol=1e-14)
    opt = adaptix.full_matrix_adagrad(0.5, eps=0.0)
    xa = np.asarray(L.trajectory(opt, axis, steps=steps, dtype=jnp.float64))
    xr = np.asarray(L.trajectory(opt, rotated, steps=steps, dtype=jnp.float64))
    # x_t(rotated) = R x_t(axis-aligned), to float64 rounding (amplified by the conditioning of G_t)
    assert np.max(np.linalg.norm(xr - xa @ R.T, axis=1)) < 1e-9 * np.linalg.norm(axis.x0)
    # so the losses agree, and it converges on both
    fa, fr = np.asarray(L.losses(axis, xa)), np.asarray(L.losses(rotated, xr))
    np.testing.assert_allclose(fr, fa, rtol=1e-6, atol=1e-30)
    assert fr[-1] < 1e-12 * fr[0]


@pytest.mark.parametrize("dim, R, steps", CASES, ids=["2d", "10d"])
@pytest.mark.parametrize("name, opt", [
    ("adagrad", adaptix.adagrad(0.5, initial_accumulator_value=0.0, eps=1e-10)),
    ("adam", adaptix.adam(0.05)),
])
def test_diagonal_methods_degrade_under_rotation(x64, dim, R, steps, name, opt):
    axis, rotated = L.quadratic(100.0, dim=dim), L.quadratic(100.0, dim=dim, rotation=R)
    fa = float(axis.loss(L.trajectory(opt, axis, steps=steps, dtype=jnp.float64)[-1]))
    fr = float(rotated.loss(L.trajectory(opt, rotated, steps=steps, dtype=jnp.float64)[-1]))
    # same problem in other coordinates, same start, same budget: the rotated run ends >= 1000x worse
    assert fr > 1e3 * fa, (name, fa, fr)
    full = adaptix.full_matrix_adagrad(0.5, eps=0.0)
    f_full = float(rotated.loss(L.trajectory(full, rotated, steps=steps, dtype=jnp.float64)[-1]))
    assert f_full < 1e-3 * fr
