"""adaptix.diagnostics: a pass-through stage whose summaries match a NumPy reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptix

B1, B2, EPS = 0.9, 0.999, 1e-8


def _grads(steps, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        a = rng.standard_normal((3, 4)).astype(np.float32)
        a[0, :2] = 0.0  # some exact zeros (sparse coordinates)
        out.append({"a": a, "b": rng.standard_normal(5).astype(np.float32) * 0.01})
    return out


def _params():
    return {"a": jnp.ones((3, 4)), "b": jnp.zeros(5)}


def _flat(tree):
    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


def _run(opt, grads, params=None, jit=False):
    params = _params() if params is None else params
    state = opt.init(params)
    update = jax.jit(opt.update) if jit else opt.update  # eager: compared bit for bit with eager Adam
    outs = []
    for g in grads:
        u, state = update(jax.tree.map(jnp.asarray, g), state, params)
        outs.append(u)
        params = optax.apply_updates(params, u)
    return outs, state


@pytest.mark.parametrize("position", ["first", "middle", "last"])
def test_updates_pass_through_bit_for_bit(position):
    diag = adaptix.diagnostics(keep_full=True, history=4)
    stages = [adaptix.trace(B1, ema=True),
              adaptix.scale_by_rms(B2, EPS, eps_in_sqrt=False, bias_correction=True),
              adaptix.bias_correction(B1), adaptix.scale_by_learning_rate(1e-2)]
    at = {"first": 0, "middle": 2, "last": len(stages)}[position]
    with_diag = adaptix.chain(*stages[:at], diag, *stages[at:])
    grads = _grads(6)
    ref, _ = _run(adaptix.adam(1e-2), grads)
    got, _ = _run(with_diag, grads)
    for r, o in zip(ref, got):
        for x, y in zip(jax.tree.leaves(r), jax.tree.leaves(o)):
            np.testing.assert_array_equal(x, y)
    # and under jit too (compared with jitted Adam)
    g0 = jax.tree.map(jnp.asarray, grads[0])
    u_ref, _ = jax.jit(adaptix.adam(1e-2).update)(g0, adaptix.adam(1e-2).init(_params()), _params())
    u, _ = jax.jit(with_diag.update)(g0, with_diag.init(_params()), _params())
    for x, y in zip(jax.tree.leaves(u_ref), jax.tree.leaves(u)):
        np.testing.assert_array_equal(x, y)


def test_summaries_match_numpy_reference():
    lr = 1e-2
    opt = adaptix.chain(adaptix.adam(lr), adaptix.diagnostics(B1, B2, EPS, snr_threshold=0.1, keep_full=True))
    grads = _grads(7)
    outs, state = _run(opt, grads)
    d = adaptix.read_diagnostics(state)

    m = v = 0.0
    t = len(grads)  # the last step
    for g in grads:
        gf = _flat(g)
        m = B1 * m + (1 - B1) * gf
        v = B2 * v + (1 - B2) * gf**2
    snr = (m / (1 - B1**t)) / (np.sqrt(v / (1 - B2**t)) + EPS)
    u = _flat(outs[-1])
    nz = gf != 0
    eff = np.abs(u[nz]) / np.abs(gf[nz])
    expected = {
        "step": 7,
        "grad_norm": np.linalg.norm(gf),
        "grad_max": np.abs(gf).max(),
        "grad_zero_fraction": 1 - nz.mean(),
        "update_norm": np.linalg.norm(u),
        "update_max": np.abs(u).max(),
        "update_grad_cosine": u @ gf / (np.linalg.norm(u) * np.linalg.norm(gf)),
        "effective_lr_mean": eff.mean(),
        "effective_lr_max": eff.max(),
        "bias_correction": np.sqrt(1 - B2**t) / (1 - B1**t),
        "abs_snr_mean": np.abs(snr).mean(),
        "abs_snr_max": np.abs(snr).max(),
        "low_snr_fraction": (np.abs(snr) < 0.1).mean(),
    }
    assert set(d) == set(expected)
    for k, val in expected.items():
        assert isinstance(d[k], float)
        assert d[k] == pytest.approx(val, rel=1e-4, abs=1e-6), k
    # full copies
    diag_state = state.inner_state[-1]
    np.testing.assert_allclose(_flat(diag_state.snr), snr, rtol=1e-4, atol=1e-6)
    full_eff = _flat(diag_state.effective_lr)
    np.testing.assert_allclose(full_eff[nz], eff, rtol=1e-5)
    assert np.all(full_eff[~nz] == 0)
    # Adam's step bound: every coordinate moves by at most about lr
    assert d["update_max"] <= lr * 1.01
    assert d["update_grad_cosine"] < 0  # a descent direction


def test_bias_correction_factor_curve():
    opt = adaptix.diagnostics(history=1000)
    state = opt.init(jnp.zeros(1))
    step = jax.jit(opt.update)
    for _ in range(1000):
        _, state = step(jnp.ones(1), state)
    assert step._cache_size() == 1  # the history buffer keeps its avals: one trace for 1000 steps
    c = adaptix.read_diagnostics_history(state)["bias_correction"]
    assert c.shape == (1000,)
    assert c[0] == pytest.approx(0.3162, abs=1e-4)
    assert int(np.argmin(c)) + 1 == 12 and c.min() == pytest.approx(0.1522, abs=1e-4)
    assert c[99] == pytest.approx(0.3086, abs=1e-3)
    assert c[999] == pytest.approx(0.7952, abs=1e-3)


def test_history_ring_buffer_order():
    opt = adaptix.diagnostics(history=3, snr=False)
    state = opt.init(jnp.zeros(2))
    hist_steps = []
    for t in range(1, 6):
        _, state = opt.update(jnp.full(2, float(t)), state)
        hist_steps.append(adaptix.read_diagnostics_history(state)["step"].tolist())
    assert hist_steps == [[1.0], [1.0, 2.0], [1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [3.0, 4.0, 5.0]]
    np.testing.assert_allclose(adaptix.read_diagnostics_history(state)["grad_norm"], np.sqrt(2) * np.array([3, 4, 5]),
                               rtol=1e-6)


def test_snr_false_keeps_no_per_coordinate_state():
    opt = adaptix.diagnostics(snr=False)
    state = opt.init({"w": jnp.zeros(10)})
    assert state.inner_state.snr_mu is None and state.inner_state.snr_nu is None and state.inner_state.snr is None
    assert len(jax.tree.leaves(state)) == 1 + 9  # count + the base summaries
    _, state = opt.update({"w": jnp.ones(10)}, state)
    assert "abs_snr_mean" not in adaptix.read_diagnostics(state)


def test_zero_gradients_give_no_nan():
    opt = adaptix.chain(adaptix.adam(1e-3), adaptix.diagnostics(keep_full=True))
    state = opt.init({"w": jnp.zeros(4)})
    _, state = opt.update({"w": jnp.zeros(4)}, state, {"w": jnp.zeros(4)})
    d = adaptix.read_diagnostics(state)
    assert all(np.isfinite(list(d.values())))
    assert d["grad_zero_fraction"] == 1.0 and d["effective_lr_mean"] == 0.0 and d["update_grad_cosine"] == 0.0


def test_read_diagnostics_finds_several_and_nested_states():
    inner = adaptix.chain(adaptix.diagnostics(), adaptix.adam(1e-3))
    opt = adaptix.chain(inner, adaptix.diagnostics(snr=False))
    state = opt.init(jnp.zeros(3))
    _, state = opt.update(jnp.array([1.0, 2.0, 2.0]), state)
    d = adaptix.read_diagnostics(state)
    assert d["[0][0]/grad_norm"] == pytest.approx(3.0)
    assert d["[1]/grad_norm"] == pytest.approx(3.0)
    assert d["[1]/update_norm"] == pytest.approx(np.sqrt(3) * 1e-3, rel=1e-4)
    # inside optax.inject_hyperparams
    injected = optax.inject_hyperparams(lambda learning_rate: adaptix.chain(adaptix.adam(learning_rate),
                                                                             adaptix.diagnostics()))(learning_rate=0.1)
    s = injected.init(jnp.zeros(2))
    _, s = injected.update(jnp.ones(2), s)
    assert adaptix.read_diagnostics(s)["update_max"] == pytest.approx(0.1, rel=1e-5)
    with pytest.raises(ValueError, match="no DiagnosticsState"):
        adaptix.read_diagnostics(adaptix.adam(1e-3).init(jnp.zeros(1)))
    with pytest.raises(ValueError, match="keeps no history"):
        adaptix.read_diagnostics_history(state)


def test_works_in_flax_nnx_optimizer():
    nnx = pytest.importorskip("flax.nnx")
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, adaptix.chain(adaptix.adam(1e-2), adaptix.diagnostics(history=4)), wrt=nnx.Param)
    x = jnp.ones((5, 3))

    @nnx.jit
    def train_step(model, optimizer):
        grads = nnx.grad(lambda m: jnp.mean(m(x) ** 2))(model)
        optimizer.update(model, grads)

    for _ in range(3):
        train_step(model, optimizer)
    d = adaptix.read_diagnostics(optimizer.opt_state)
    assert d["step"] == 3.0 and 0.9e-2 < d["update_max"] <= 1.01e-2
    assert adaptix.read_diagnostics_history(optimizer.opt_state)["step"].tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("kwargs, match", [
    ({"b1": 1.0}, r"diagnostics: b1 must be finite and in \[0, 1\), got 1.0"),
    ({"b2": -0.1}, r"diagnostics: b2 must be finite and in \[0, 1\), got -0.1"),
    ({"eps": -1.0}, r"diagnostics: eps must be finite and in \[0, inf\), got -1.0"),
    ({"snr_threshold": float("nan")}, r"diagnostics: snr_threshold must be finite"),
    ({"history": -1}, r"diagnostics: history must be an int in \[0, inf\), got -1"),
    ({"history": 2.5}, r"diagnostics: history must be an int"),
])
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        adaptix.diagnostics(**kwargs)
    with pytest.raises(TypeError, match="keep_full must be True or False"):
        adaptix.diagnostics(keep_full=1)


def test_every_records_every_kth_step_and_emas_see_all_gradients():
    grads = _grads(7)
    _, dense = _run(adaptix.chain(adaptix.adam(1e-2), adaptix.diagnostics(history=8)), grads, jit=True)
    sparse_opt = adaptix.chain(adaptix.adam(1e-2), adaptix.diagnostics(history=2, every=3))
    outs, sparse = _run(sparse_opt, grads[:5], jit=True)  # every > 1: a lax.cond, cheaper compiled once
    assert adaptix.read_diagnostics(sparse)["step"] == 4.0  # steps 1, 4, 7, ... are recorded
    _, sparse = _run(sparse_opt, grads, jit=True)
    d_sparse, d_dense = adaptix.read_diagnostics(sparse), adaptix.read_diagnostics(dense)
    assert d_sparse["step"] == 7.0
    for k in d_dense:
        assert d_sparse[k] == pytest.approx(d_dense[k], rel=1e-5, abs=1e-7), k
    h_sparse = adaptix.read_diagnostics_history(sparse)
    h_dense = adaptix.read_diagnostics_history(dense)
    assert h_sparse["step"].tolist() == [4.0, 7.0]
    np.testing.assert_allclose(h_sparse["abs_snr_mean"], h_dense["abs_snr_mean"][[3, 6]], rtol=1e-5)
    with pytest.raises(ValueError, match=r"every must be an int in \[1, inf\), got 0"):
        adaptix.diagnostics(every=0)


def test_bf16_params_and_empty_leaves():
    params = {"w": jnp.ones(4, jnp.bfloat16), "empty": jnp.zeros((0,), jnp.float32)}
    opt = adaptix.chain(adaptix.adam(1e-2), adaptix.diagnostics(keep_full=True))
    state = opt.init(params)
    grads = {"w": jnp.full(4, 3.0, jnp.bfloat16), "empty": jnp.zeros((0,), jnp.float32)}
    u, state = jax.jit(opt.update)(grads, state, params)
    assert u["w"].dtype == jnp.bfloat16
    d = adaptix.read_diagnostics(state)
    assert d["grad_norm"] == pytest.approx(6.0) and d["grad_max"] == pytest.approx(3.0)
    assert d["abs_snr_mean"] == pytest.approx(1.0, rel=1e-2)


def _blocks(x, stride, block=64):
    """Every ``stride``-th block of ``block`` contiguous entries of ``ravel(x)``: the documented sample."""
    x = np.ravel(np.asarray(x, np.float64))
    b = max(min(block, x.size), 1)
    rows = x.size // b
    return x[: rows * b].reshape(rows, b)[::stride].ravel()


def test_sample_tracks_fixed_blocks_and_keeps_exact_norms():
    rng = np.random.default_rng(3)
    shapes = {"w": (300, 50), "b": (50,), "tiny": (3,)}
    params = {k: jnp.zeros(s) for k, s in shapes.items()}
    grads = [{k: rng.standard_normal(s).astype(np.float32) * (0.1 if k == "b" else 1.0) for k, s in shapes.items()}
             for _ in range(4)]
    for g in grads:
        g["w"][:7] = 0.0
    n = sum(int(np.prod(s)) for s in shapes.values())
    sample = 2000
    stride = -(-n // sample)
    sampled = adaptix.chain(adaptix.adam(1e-2), adaptix.diagnostics(B1, B2, EPS, sample=sample))
    full = adaptix.chain(adaptix.adam(1e-2), adaptix.diagnostics(B1, B2, EPS, sample=None))
    outs, s_state = _run(sampled, grads, params, jit=True)
    _, f_state = _run(full, grads, params, jit=True)
    d, d_full = adaptix.read_diagnostics(s_state), adaptix.read_diagnostics(f_state)
    # the EMAs are kept for the sampled blocks only
    mu = s_state.inner_state[-1].snr_mu
    assert {k: x.shape for k, x in mu.items()} == {k: _blocks(np.zeros(s), stride).shape for k, s in shapes.items()}
    assert sum(x.size for x in jax.tree.leaves(mu)) <= sample + 64 * len(shapes)
    # exact summaries are the same as with every coordinate tracked
    for k in ("grad_norm", "grad_max", "update_norm", "update_max", "update_grad_cosine", "bias_correction", "step"):
        assert d[k] == pytest.approx(d_full[k], rel=1e-6), k
    # sampled summaries follow the equations on the documented blocks
    keys = sorted(shapes)
    m = v = 0.0
    t = len(grads)  # the last step
    for g in grads:
        gs = np.concatenate([_blocks(g[k], stride) for k in keys])
        m = B1 * m + (1 - B1) * gs
        v = B2 * v + (1 - B2) * gs**2
    snr = np.abs((m / (1 - B1**t)) / (np.sqrt(v / (1 - B2**t)) + EPS))
    us = np.concatenate([_blocks(outs[-1][k], stride) for k in keys])
    nz = gs != 0
    eff = np.abs(us[nz]) / np.abs(gs[nz])
    expected = {"abs_snr_mean": snr.mean(), "abs_snr_max": snr.max(), "low_snr_fraction": (snr < 0.1).mean(),
                "grad_zero_fraction": 1 - nz.mean(), "effective_lr_mean": eff.mean(), "effective_lr_max": eff.max()}
    for k, val in expected.items():
        assert d[k] == pytest.approx(val, rel=1e-4, abs=1e-6), k
    # ... and estimate the full-coordinate values (not effective_lr_mean: a mean of |u|/|g|, heavy-tailed)
    assert d["abs_snr_mean"] == pytest.approx(d_full["abs_snr_mean"], rel=0.05)
    assert d["grad_zero_fraction"] == pytest.approx(d_full["grad_zero_fraction"], abs=0.01)


def test_small_trees_and_keep_full_track_every_coordinate():
    grads = _grads(3)
    _, a = _run(adaptix.chain(adaptix.adam(1e-2), adaptix.diagnostics(sample=17)), grads)  # 17 == N: all tracked
    _, b = _run(adaptix.chain(adaptix.adam(1e-2), adaptix.diagnostics(sample=None)), grads)
    assert adaptix.read_diagnostics(a) == adaptix.read_diagnostics(b)
    _, c = _run(adaptix.chain(adaptix.adam(1e-2), adaptix.diagnostics(sample=1, keep_full=True)), grads)
    assert c.inner_state[-1].snr["a"].shape == (3, 4)
    assert adaptix.read_diagnostics(c) == pytest.approx(adaptix.read_diagnostics(b), rel=1e-6)


@pytest.mark.parametrize("sample, match", [
    (0, r"diagnostics: sample must be None or an int in \[1, inf\), got 0"),
    (-3, r"diagnostics: sample must be None or an int in \[1, inf\), got -3"),
    (2.5, r"diagnostics: sample must be None or an int"),
])
def test_sample_validation(sample, match):
    with pytest.raises(ValueError, match=match):
        adaptix.diagnostics(sample=sample)
