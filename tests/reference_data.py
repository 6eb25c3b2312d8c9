"""Shared helpers for the reference tests (``test_reference_optax.py``, ``test_reference_torch.py``).

* :func:`enable_x64` — a context manager that turns on ``jax_enable_x64`` and restores the previous
  value; the test modules wrap it in a module-scoped autouse fixture, so float64 never leaks into
  other test modules of the same pytest process.
* :func:`gradient_sequence` / :func:`initial_params` — a fixed, seeded sequence of ``STEPS`` gradients
  over the pytree ``{"w": (3, 4), "b": (4,)}`` (NumPy float64; nothing is built at import time).
* :func:`run_jax_many` / :func:`run_jax` / :func:`run_torch` — run optimizers over the sequence,
  parameters evolving, and return every step's updates and parameters as NumPy arrays with a
  leading step axis.
* :func:`assert_close` — relative-error check, which records the worst relative error per label in
  :data:`WORST` (printed by the test modules at teardown; visible with ``pytest -s``).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import numpy as np

STEPS = 120
SEED = 20240611
SHAPES = {"w": (3, 4), "b": (4,)}

# Coordinates with a special role in the sequence (for tests that want to point at them).
LATE_START = ("w", (0, 0))  # exactly zero for the first LATE_START_STEPS steps
LATE_START_STEPS = 8
ALTERNATING = ("b", (3,))  # flips sign at every step (drives Rprop to its minimum step size)
TINY = ("w", (0, 1))  # magnitude ~1e-6
HUGE = ("w", (2, 3))  # magnitude ~10
ZERO_STEP = 50  # the whole gradient is zero at this step

# Denominator floor of the relative error, for exact zeros: 0 == 0 passes, nothing else is hidden.
TINY_DENOMINATOR = 1e-300
EPS64 = float(np.finfo(np.float64).eps)

WORST: dict[str, float] = {}


def enable_x64():
    """float64 in JAX inside the ``with`` block, the previous setting restored after."""
    import jax

    return jax.enable_x64(True)


@contextlib.contextmanager
def torch_float64_default():
    """PyTorch's default dtype float64 inside, restored after.

    PyTorch keeps per-step scalars of its optimizers (``step``, NAdam's ``mu_product``) in float32
    unless the default dtype is float64; float64 parameters alone are not enough.
    """
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def gradient_sequence(steps: int = STEPS, seed: int = SEED) -> dict[str, np.ndarray]:
    """A fixed pytree of float64 gradients with a leading step axis.

    Per-coordinate magnitudes are ``10**U(-6, 1)`` (one coordinate pinned at 1e-6, one at 10); half
    the coordinates have a persistent sign (Rprop grows its step there), the others change sign at
    random, and one alternates at every step. About 4% of the entries are exact zeros, ``LATE_START``
    is zero for the first ``LATE_START_STEPS`` steps, and step ``ZERO_STEP`` is entirely zero.
    """
    rng = np.random.default_rng(seed)
    grads = {}
    for name in sorted(SHAPES):
        shape = SHAPES[name]
        scale = 10.0 ** rng.uniform(-6.0, 1.0, size=shape)
        drift = rng.choice([0.0, 1.5, -1.5], size=shape)  # a persistent sign on about 2/3
        z = rng.standard_normal((steps, *shape))
        g = scale * (z + drift)
        g[rng.random(g.shape) < 0.04] = 0.0
        grads[name] = g
    grads[TINY[0]][(slice(None), *TINY[1])] *= 1e-6 / np.abs(grads[TINY[0]][(slice(None), *TINY[1])]).mean()
    grads[HUGE[0]][(slice(None), *HUGE[1])] *= 10.0 / np.abs(grads[HUGE[0]][(slice(None), *HUGE[1])]).mean()
    grads[ALTERNATING[0]][(slice(None), *ALTERNATING[1])] = 0.3 * (-1.0) ** np.arange(steps)
    grads[LATE_START[0]][(slice(0, LATE_START_STEPS), *LATE_START[1])] = 0.0
    for g in grads.values():
        g[ZERO_STEP] = 0.0
    return grads


def initial_params(seed: int = SEED + 1) -> dict[str, np.ndarray]:
    """Float64 starting parameters, standard normal (so weight decay matters)."""
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(SHAPES[name]) for name in sorted(SHAPES)}


def step_slice(tree: dict[str, np.ndarray], t: int) -> dict[str, np.ndarray]:
    return {k: v[t] for k, v in tree.items()}


# Faster compilation of the small scans below (about 1.5x); XLA's CPU backend does not use
# fast-math at any level, so the floating-point results are the same.
_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def run_jax_many(opts, grads: dict, params0: dict, params_seq=None, *, states: bool = False) -> list:
    """Runs each optimizer of ``opts`` over ``grads`` (leading step axis), all in one ``lax.scan``.

    One compilation for all of them (compiling is what costs time here). For every optimizer, step
    ``t`` calls ``opt.update(g_t, state, p_t)`` and ``p_{t+1} = optax.apply_updates(p_t, u_t)``, each
    on its own trajectory. With ``params_seq`` (parameters before each step, leading step axis)
    those are fed to ``update`` instead, and the returned parameters are ``params_seq + u``;
    ``params_seq`` may also be a list with one such tree (or ``None``) per optimizer.

    Returns a list with, per optimizer, NumPy ``(updates, params_after)`` — plus the stacked states
    with ``states=True``.
    """
    import jax
    import jax.numpy as jnp
    import optax

    assert jax.config.read("jax_enable_x64"), "the reference tests run in float64"
    opts = tuple(opts)
    g_seq = jax.tree.map(jnp.asarray, grads)
    p0 = jax.tree.map(jnp.asarray, params0)
    assert all(x.dtype == jnp.float64 for x in jax.tree.leaves((g_seq, p0)))
    if not isinstance(params_seq, (list, tuple)):
        params_seq = [params_seq] * len(opts)
    assert len(params_seq) == len(opts)
    fed = tuple(None if s is None else jax.tree.map(jnp.asarray, s) for s in params_seq)

    def body(carry, xs):
        g, fed_now = xs
        new_carry, outs = [], []
        for opt, (params, state), p_fed in zip(opts, carry, fed_now):
            p_in = params if p_fed is None else p_fed
            updates, state = opt.update(g, state, p_in)
            new_params = optax.apply_updates(p_in, updates)
            new_carry.append((new_params, state))
            outs.append((updates, new_params, state) if states else (updates, new_params))
        return tuple(new_carry), tuple(outs)

    @functools.partial(jax.jit, compiler_options=_COMPILER_OPTIONS)
    def run(p0, g_seq, fed):
        carry = tuple((p0, opt.init(p0)) for opt in opts)
        return jax.lax.scan(body, carry, (g_seq, fed))[1]

    return [jax.tree.map(np.asarray, out) for out in run(p0, g_seq, fed)]


def run_jax(opt, grads: dict, params0: dict, params_seq=None, *, states: bool = False):
    """:func:`run_jax_many` for one optimizer: ``(updates, params_after[, states])``."""
    return run_jax_many([opt], grads, params0, params_seq, states=states)[0]


def run_torch(
    make_opt: Callable[[list], Any],
    grads: dict[str, np.ndarray],
    params0: dict[str, np.ndarray],
    lr_at: Callable[[int], float] | None = None,
    *,
    with_state: Callable[[Any, dict], Any] | None = None,
):
    """Runs a ``torch.optim`` optimizer over ``grads``, float64 tensors, ``p.grad`` set each step.

    ``lr_at(t)``, if given, is written into every ``group["lr"]`` before step ``t``.
    ``with_state(opt, tensors)``, if given, is called after every step and its results are returned
    as a list (e.g. to read Rprop's step sizes).

    Returns NumPy ``(params_after, implied_updates, params_before)`` with a leading step axis (and the
    list from ``with_state`` when given).
    """
    import torch

    names = sorted(params0)
    tensors = {k: torch.tensor(params0[k], dtype=torch.float64, requires_grad=True) for k in names}
    opt = make_opt([tensors[k] for k in names])
    steps = len(next(iter(grads.values())))
    after = {k: [] for k in names}
    extra = []
    for t in range(steps):
        for k in names:
            tensors[k].grad = torch.tensor(grads[k][t], dtype=torch.float64)
        if lr_at is not None:
            for group in opt.param_groups:
                group["lr"] = float(lr_at(t))
        opt.step()
        for k in names:
            after[k].append(tensors[k].detach().numpy().copy())
        if with_state is not None:
            extra.append(with_state(opt, tensors))
    params_after = {k: np.stack(after[k]) for k in names}
    params_before = {k: np.concatenate([params0[k][None], params_after[k][:-1]]) for k in names}
    implied = {k: params_after[k] - params_before[k] for k in names}
    if with_state is not None:
        return params_after, implied, params_before, extra
    return params_after, implied, params_before


def relative_error(actual, desired, atol=None) -> np.ndarray:
    """``|a - b| / max(|b|, TINY_DENOMINATOR)``; with ``atol`` (elementwise), the excess over it."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    err = np.abs(actual - desired)
    if atol is not None:
        err = np.maximum(err - atol, 0.0)
    return err / np.maximum(np.abs(desired), TINY_DENOMINATOR)


def assert_close(actual, desired, label: str, *, rtol: float = 1e-9, atol_tree=None) -> float:
    """Asserts ``|a - b| <= rtol * |b| (+ atol)`` leaf by leaf and step by step.

    Returns (and records in :data:`WORST`) the worst plain relative error ``|a - b| / |b|``, i.e.
    before any ``atol_tree`` slack.

    The only absolute slack is ``TINY_DENOMINATOR`` (1e-300), so that exact zeros compare equal;
    ``atol_tree`` (elementwise, same tree) is for quantities that are differences of rounded
    parameters (see ``test_reference_torch.ulp_slack``). The message names the first failing step.
    """
    worst = 0.0
    for k in sorted(desired):
        a, b = np.asarray(actual[k]), np.asarray(desired[k])
        assert a.shape == b.shape, (label, k, a.shape, b.shape)
        assert not np.isnan(b).any(), f"{label}[{k}]: the reference produced NaN"
        slack = None if atol_tree is None else atol_tree[k]
        rel = relative_error(a, b, slack)
        bad = ~(rel <= rtol)  # NaN in `a` counts as bad
        if bad.any():
            t = int(np.argwhere(bad.reshape(len(b), -1).any(axis=1))[0, 0]) if b.ndim > 1 else 0
            raise AssertionError(
                f"{label}[{k}]: relative error {np.nanmax(rel):.3e} > {rtol:g} (beyond any slack); "
                f"first at step {t}:\n"
                f"  actual  {a[t]!r}\n  desired {b[t]!r}"
            )
        worst = max(worst, float(relative_error(a, b).max(initial=0.0)))
    WORST[label] = max(WORST.get(label, 0.0), worst)
    return worst


def max_relative_difference(a: dict, b: dict) -> float:
    """The largest ``|a - b| / max(|b|, tiny)`` over all leaves and steps (for "these differ" checks)."""
    return max(float(relative_error(a[k], b[k]).max()) for k in b)


def report_worst(prefix: str) -> None:
    """Prints the worst relative error per recorded label starting with ``prefix``."""
    rows = sorted((k, v) for k, v in WORST.items() if k.startswith(prefix))
    if rows:
        width = max(len(k) for k, _ in rows)
        print(f"\nworst relative error ({prefix}):")
        for k, v in rows:
            print(f"  {k:<{width}}  {v:.2e}")
