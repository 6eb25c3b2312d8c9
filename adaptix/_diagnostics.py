"""``diagnostics``: a pass-through stage that records what the adaptive-methods literature reasons with.

It leaves the updates untouched (the very same arrays come out) and keeps, in
its state, a handful of scalar summaries per step: Adam's signal-to-noise ratio
:math:`\\hat m/\\sqrt{\\hat v}`, the effective per-coordinate step size
:math:`|\\Delta|/|g|`, the bias-correction factor, update and gradient norms.
:func:`read_diagnostics` finds them in any (nested) optimizer state.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from adaptix import _validate as v
from adaptix._base import (
    CountedTransformation,
    abs_sq,
    cast_like,
    check_matches,
    check_matches_state,
    counted,
    ema_of,
    ema_of_squares,
    measured,
    power,
    real_dtype_of,
    scalar_dtype,
    tree_real_full_like,
    tree_zeros_like,
)

#: The summaries always recorded (see :func:`diagnostics`).
BASE_NAMES = (
    "step",
    "grad_norm",
    "grad_max",
    "grad_zero_fraction",
    "update_norm",
    "update_max",
    "update_grad_cosine",
    "effective_lr_mean",
    "effective_lr_max",
)
#: The summaries recorded with ``snr=True``.
SNR_NAMES = ("bias_correction", "abs_snr_mean", "abs_snr_max", "low_snr_fraction")


class DiagnosticsState(NamedTuple):
    """State of :func:`diagnostics`.

    Attributes:
      snr_mu, snr_nu: the stage's own EMAs of the chain's input and of its
        square on the sampled coordinates (``None`` with ``snr=False``). The
        step count is the chain's (``summary["step"]`` records it).
      summary: a dict of float scalars, the latest step's summaries (names in
        ``BASE_NAMES`` and, with ``snr=True``, ``SNR_NAMES``).
      snr, effective_lr: full per-coordinate trees with ``keep_full=True``, else ``None``.
      history: with ``history=H > 0``, an ``(H, len(summary))`` ring buffer of
        the last ``H`` recorded steps (columns in sorted name order, unwritten
        rows NaN); else ``None``.
    """

    snr_mu: Any
    snr_nu: Any
    summary: dict
    snr: Any
    effective_lr: Any
    history: Any


def _check_count(owner: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{owner}: {name} must be an int in [0, inf), got {value!r}.")


def _wide(x: jax.Array) -> jax.Array:
    """``x`` in float32 or wider, so that sums over many entries of bf16/f16 leaves stay accurate."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


#: Sampled coordinates come in blocks of this many contiguous entries (whole cache lines), so that the
#: blocks skipped are never read from memory.
_BLOCK = 64


def _stride(tree: Any, sample: int | None) -> int:
    """Every ``stride``-th block of each leaf is tracked: 1 (all coordinates) when the tree has ``<= sample``."""
    n = sum(int(np.size(x)) for x in jax.tree.leaves(tree))
    if sample is None or n <= sample:
        return 1
    return -(-n // sample)


def _pick(x: jax.Array, stride: int) -> jax.Array:
    """The tracked coordinates of one leaf: ``x`` itself for ``stride == 1``, else every
    ``stride``-th block of ``_BLOCK`` contiguous entries of ``ravel(x)`` (at least one block; the
    last ``size % _BLOCK`` entries are never tracked)."""
    if stride == 1:
        return x
    x = jnp.ravel(x)
    block = max(min(_BLOCK, x.size), 1)
    rows = x.size // block
    return x[: rows * block].reshape(rows, block)[::stride].ravel()


def _picked_size(x: Any, stride: int) -> int:
    n = int(np.size(x))
    if stride == 1:
        return n
    block = max(min(_BLOCK, n), 1)
    return -(-(n // block) // stride) * block


def _sum(x: jax.Array) -> jax.Array:
    return jnp.sum(_wide(x))


def _max(x: jax.Array) -> jax.Array:
    """The maximum of non-negative ``x`` (0 for an empty leaf)."""
    return jnp.max(_wide(x), initial=0)


def _effective_lr(u: jax.Array, g: jax.Array) -> jax.Array:
    """``|u| / |g|`` where ``g != 0``, else 0."""
    a, b = jnp.abs(u), jnp.abs(g)
    return jnp.where(b != 0, a / jnp.where(b != 0, b, 1), 0).astype(a.dtype)


def _inner(g: jax.Array, u: jax.Array) -> jax.Array:
    return jnp.real(jnp.conj(g) * u) if (jnp.iscomplexobj(u) or jnp.iscomplexobj(g)) else g * u


def _total(values: list) -> jax.Array:
    return sum(values) if values else jnp.zeros([], jnp.float32)


def _largest(values: list) -> jax.Array:
    return jnp.max(jnp.stack(values)) if values else jnp.zeros([], jnp.float32)


def diagnostics(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    snr: bool = True,
    snr_threshold: float = 0.1,
    keep_full: bool = False,
    history: int = 0,
    every: int = 1,
    sample: int | None = 65536,
) -> CountedTransformation:
    r"""A pass-through stage that records per-step summaries of Adam's quantities in its state.

    The updates come out unchanged (the same arrays, bit for bit), so the stage
    may stand anywhere in a chain. With :math:`g_t` the gradient entering the
    chain (``chain_input``; the stage's input when used alone) and :math:`u_t` the
    stage's input, it keeps its own EMAs and records

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) |g_t|^2, \quad
        \mathrm{snr}_t = \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}, \\
        c_t = \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}, \qquad
        \eta^{\mathrm{eff}}_{t,i} = \frac{|u_{t,i}|}{|g_{t,i}|}\ \ (g_{t,i} \ne 0),

    summarised over the coordinates :math:`i` of all leaves:

    - over **all** :math:`N` coordinates, exactly: ``grad_norm``
      :math:`\|g_t\|_2`, ``grad_max`` :math:`\|g_t\|_\infty`, ``update_norm``
      :math:`\|u_t\|_2`, ``update_max`` :math:`\|u_t\|_\infty`,
      ``update_grad_cosine`` :math:`\langle u_t, g_t\rangle / (\|u_t\|\|g_t\|)`
      (0 if either is 0; :math:`-1` for a gradient-descent step); ``step``
      :math:`t` and ``bias_correction`` :math:`= c_t`, the factor multiplying
      Adam's step size;
    - over the **tracked** coordinates (all of them when the tree has at most
      ``sample`` coordinates, else a fixed subset of about ``sample``, see below):
      ``abs_snr_mean`` (the mean of :math:`|\mathrm{snr}_{t,i}|`) and
      ``abs_snr_max``: Kingma & Ba's "cautiousness" (near 0 means the moments
      disagree and Adam takes tiny steps); ``low_snr_fraction``, the fraction
      with :math:`|\mathrm{snr}| <` ``snr_threshold``; ``effective_lr_mean`` /
      ``effective_lr_max`` of :math:`\eta^{\mathrm{eff}}` over the coordinates
      with :math:`g \ne 0` (0 if there are none): placed last in a chain, the
      step each coordinate actually takes per unit gradient; and
      ``grad_zero_fraction`` (sparsity).

    Read them with :func:`read_diagnostics`. The SNR uses the stage's own EMAs
    (with this stage's ``b1``, ``b2``, ``eps``), whatever the optimizer is, so it
    measures the gradient stream, not the optimizer.

    **Cost.** The exact summaries are five reductions over the tree per
    recorded step. The per-coordinate ones would need two EMA buffers the size
    of the parameters and a division per coordinate, which costs more than
    Adam's own step; so on a tree with more than ``sample`` coordinates the
    stage tracks every :math:`s`-th block of 64 contiguous entries of each
    (flattened) leaf, :math:`s = \lceil N/\mathrm{sample} \rceil`, and keeps
    EMAs of those only. The blocks are fixed, so the EMAs follow the same
    coordinates from step to step, and the means and fractions are estimates
    from a systematic sample of about ``sample`` coordinates (the maxima are
    maxima over the sample). Means of bounded quantities (the SNR, the
    fractions) are estimated well; ``effective_lr_mean`` is a mean of ratios
    :math:`|u|/|g|`, heavy-tailed where :math:`|g|` is small, and its estimate is
    noisy. ``sample=None`` tracks every coordinate.

    Args:
      b1: decay of the EMA of ``chain_input``, in ``[0, 1)``.
      b2: decay of the EMA of ``|grad|**2``, in ``[0, 1)``.
      eps: added to :math:`\sqrt{\hat v}` in the SNR, ``>= 0``.
      snr: keep the two EMAs and record the SNR summaries and the bias-correction
        factor; ``False`` keeps no per-coordinate state (cheaper).
      snr_threshold: the threshold of ``low_snr_fraction``, ``>= 0``.
      keep_full: also keep the latest full per-coordinate ``snr`` and
        ``effective_lr`` trees in the state (memory: two more copies of the
        parameters); tracks every coordinate, whatever ``sample`` is.
      history: length of a ring buffer of past summaries (0: none); read it with
        :func:`read_diagnostics_history`.
      every: record the summaries on steps :math:`t = 1, 1 + k, 1 + 2k, \dots`
        only (``lax.cond`` skips the reductions in between; the EMAs still see
        every gradient).
      sample: the number of coordinates (about) whose per-coordinate summaries
        are tracked, an int ``>= 1``, or ``None`` for all of them.

    Example:
      >>> import jax.numpy as jnp, numpy as np, adaptix
      >>> opt = adaptix.chain(adaptix.adam(0.1), adaptix.diagnostics())
      >>> params = {"w": jnp.array([1.0, -2.0, 3.0])}
      >>> state = opt.init(params)
      >>> updates, state = opt.update({"w": jnp.array([0.5, -1.0, 0.0])}, state, params)
      >>> d = adaptix.read_diagnostics(state)
      >>> round(d["bias_correction"], 4), round(d["update_max"], 4), round(d["grad_zero_fraction"], 4)
      (0.3162, 0.1, 0.3333)
      >>> round(d["effective_lr_mean"], 4)  # |0.1/0.5| and |0.1/1.0| over the two nonzero coordinates
      0.15

    Note:
      The stage cannot see another stage's state, so Adam's own moments are
      not reused. Its outputs are its inputs, so it never changes numerics.
      ``python notebooks/scripts/diagnostics_overhead.py`` measures its cost.

    References:
      Kingma & Ba, 2015, Adam, sections 2.1 (SNR, "cautiousness") and 3
      (bias correction), https://arxiv.org/abs/1412.6980
    """
    owner = "diagnostics"
    v.check_debiased_decay(owner, "b1", b1)
    v.check_debiased_decay(owner, "b2", b2)
    v.check_nonnegative(owner, "eps", eps)
    v.check_bool(owner, "snr", snr)
    v.check_nonnegative(owner, "snr_threshold", snr_threshold)
    v.check_bool(owner, "keep_full", keep_full)
    _check_count(owner, "history", history)
    _check_count(owner, "every", every)
    if every < 1:
        raise ValueError(f"{owner}: every must be an int in [1, inf), got {every!r}.")
    if sample is not None:
        _check_count(owner, "sample", sample)
        if sample < 1:
            raise ValueError(f"{owner}: sample must be None or an int in [1, inf), got {sample!r}.")
    tracked = None if keep_full else sample
    names = tuple(sorted(BASE_NAMES + (SNR_NAMES if snr else ())))

    def sampled_zeros(params, real: bool):
        stride = _stride(params, tracked)
        if stride == 1:
            return tree_real_full_like(params, 0.0) if real else tree_zeros_like(params)

        def zeros(p):
            dtype = real_dtype_of(jnp.result_type(p)) if real else jnp.result_type(p)
            return jnp.zeros([_picked_size(p, stride)], dtype)

        return jax.tree.map(zeros, params)

    def init(params):
        dtype = scalar_dtype(params)
        summary = {name: jnp.zeros([], dtype) for name in names}
        return DiagnosticsState(
            snr_mu=sampled_zeros(params, real=False) if snr else None,
            snr_nu=sampled_zeros(params, real=True) if snr else None,
            summary=summary,
            snr=tree_zeros_like(params) if (snr and keep_full) else None,
            effective_lr=tree_real_full_like(params, 0.0) if keep_full else None,
            history=jnp.full((history, len(names)), jnp.nan, dtype) if history else None,
        )

    def summarize(updates, g, mu, nu, count, hist):
        """The summaries of one step (and the full trees, and the history with the new row)."""
        dtype = hist.dtype
        stride = _stride(g, tracked)
        # Reductions read the updates and gradients from memory: without the barrier XLA may recompute
        # the optimizer's arithmetic inside each of them (measured: the default costs ~5% more).
        us, gs = jax.lax.optimization_barrier((jax.tree.leaves(updates), jax.tree.leaves(g)))
        # exact, over all coordinates
        grad_sq = _total([_sum(abs_sq(x)) for x in gs])
        update_sq = _total([_sum(abs_sq(u)) for u in us])
        inner = _total([_sum(_inner(x, u)) for u, x in zip(us, gs)])
        grad_max = _largest([_max(jnp.abs(x)) for x in gs])
        update_max = _largest([_max(jnp.abs(u)) for u in us])
        # over the tracked coordinates
        g_picked = [_pick(x, stride) for x in gs]
        n_tracked = max(sum(int(np.size(x)) for x in g_picked), 1)
        eff = [_effective_lr(_pick(u, stride), x) for u, x in zip(us, g_picked)]
        n_nonzero = _total([_sum((x != 0).astype(jnp.float32)) for x in g_picked])
        denom = jnp.sqrt(grad_sq) * jnp.sqrt(update_sq)
        summary = {
            "step": count,
            "grad_norm": jnp.sqrt(grad_sq),
            "grad_max": grad_max,
            "grad_zero_fraction": 1.0 - n_nonzero / n_tracked,
            "update_norm": jnp.sqrt(update_sq),
            "update_max": update_max,
            "update_grad_cosine": jnp.where(denom > 0, inner / jnp.where(denom > 0, denom, 1), 0),
            "effective_lr_mean": _total([_sum(e) for e in eff]) / jnp.maximum(n_nonzero, 1),
            "effective_lr_max": _largest([_max(e) for e in eff]),
        }
        snr_tree = None
        if snr:
            bc1 = 1.0 - power(b1, count, dtype)
            bc2 = 1.0 - power(b2, count, dtype)
            snr_tree = jax.tree.map(
                lambda m, s: (m / bc1.astype(m.dtype)) / (jnp.sqrt(s / bc2.astype(s.dtype)) + eps), mu, nu
            )
            abs_snr = [jnp.abs(r) for r in jax.tree.leaves(snr_tree)]
            summary.update(
                bias_correction=jnp.sqrt(bc2) / bc1,
                abs_snr_mean=_total([_sum(r) for r in abs_snr]) / n_tracked,
                abs_snr_max=_largest([_max(r) for r in abs_snr]),
                low_snr_fraction=_total([_sum((r < snr_threshold).astype(jnp.float32)) for r in abs_snr])
                / n_tracked,
            )
        summary = {k: summary[k].astype(dtype) for k in names}
        if history:
            row = jnp.stack([summary[k] for k in names])
            index = ((count - 1) // every) % history
            hist = jax.lax.dynamic_update_slice(hist, row[None, :], (index, jnp.zeros([], index.dtype)))
        eff_tree = jax.tree.unflatten(jax.tree.structure(g), eff) if keep_full else None
        return summary, snr_tree, eff_tree, hist

    def update(updates, state, params=None, *, chain_step, chain_input=None, **extra):
        del params, extra
        g = measured(updates, chain_input, owner)
        if state.snr_nu is not None:
            check_matches(g, state.snr_nu, owner, shapes=False)
        elif state.effective_lr is not None:
            check_matches_state(g, state.effective_lr, owner)
        count = chain_step
        mu = nu = None
        if snr:
            stride = _stride(g, tracked)
            g_picked = jax.tree.map(lambda x: _pick(x, stride), g)
            mu = jax.tree.map(lambda x, m: ema_of(m, x, b1), g_picked, state.snr_mu)
            nu = jax.tree.map(lambda x, s: ema_of_squares(s, x, b2), g_picked, state.snr_nu)
            mu, nu = cast_like(mu, state.snr_mu), cast_like(nu, state.snr_nu)
        hist = state.history if history else jnp.zeros([], state.summary["step"].dtype)  # carries the dtype

        def record(operands):
            summary, snr_tree, eff, new_hist = summarize(*operands)
            return (summary, cast_like(snr_tree, state.snr) if keep_full else None,
                    cast_like(eff, state.effective_lr) if keep_full else None, new_hist)

        def skip(operands):
            return state.summary, state.snr, state.effective_lr, operands[-1]

        operands = (updates, g, mu, nu, count, hist)
        if every == 1:
            summary, snr_full, eff_full, hist = record(operands)
        else:
            summary, snr_full, eff_full, hist = jax.lax.cond((count - 1) % every == 0, record, skip, operands)
        new_state = DiagnosticsState(
            snr_mu=mu,
            snr_nu=nu,
            summary=summary,
            snr=snr_full,
            effective_lr=eff_full,
            history=hist if history else None,
        )
        return updates, new_state

    return counted(owner, init, update)


def _to_array(x: Any) -> Any:
    """Unwraps Flax NNX variables (``nnx.Optimizer.opt_state`` leaves) to arrays."""
    if isinstance(x, (jax.Array, np.ndarray, numbers.Number)):
        return x
    if hasattr(x, "get_value"):
        return x.get_value()
    return getattr(x, "value", x)


def _find(opt_state: Any) -> list[tuple[str, DiagnosticsState]]:
    found = []
    flat, _ = jax.tree_util.tree_flatten_with_path(opt_state, is_leaf=lambda x: isinstance(x, DiagnosticsState))
    for path, leaf in flat:
        if isinstance(leaf, DiagnosticsState):
            # the chain's step counter wraps the stages' states: leave its field out of the name
            name = jax.tree_util.keystr(tuple(k for k in path if getattr(k, "name", None) != "inner_state"))
            found.append((name, leaf))
    if not found:
        raise ValueError(
            "read_diagnostics: no DiagnosticsState in this optimizer state; put adaptix.diagnostics() "
            "in the chain (e.g. adaptix.chain(adaptix.adam(1e-3), adaptix.diagnostics()))."
        )
    return found


def read_diagnostics(opt_state: Any) -> dict[str, float]:
    """The latest summaries of the :func:`diagnostics` stage(s) in ``opt_state``, as Python floats.

    ``opt_state`` may be any (nested) optimizer state: a chain's tuple, an
    ``optax.inject_hyperparams`` or ``optax.MultiSteps`` state, or the
    ``opt_state`` of a ``flax.nnx.Optimizer``. With one diagnostics stage the keys
    are the summary names (``"abs_snr_mean"``, ``"update_norm"``, ...); with
    several, each key is prefixed by the stage's path in the state
    (``"[0][2]/abs_snr_mean"``). Call it outside ``jit`` (it converts to floats).

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> opt = adaptix.chain(adaptix.diagnostics(), adaptix.sgd(0.5))
      >>> state = opt.init(jnp.zeros(2))
      >>> _, state = opt.update(jnp.array([3.0, 4.0]), state)
      >>> adaptix.read_diagnostics(state)["grad_norm"]
      5.0
    """
    found = _find(opt_state)
    out = {}
    for path, st in found:
        prefix = f"{path}/" if len(found) > 1 else ""
        for name, value in st.summary.items():
            out[prefix + name] = float(np.asarray(_to_array(value)))
    return out


def read_diagnostics_history(opt_state: Any) -> dict[str, np.ndarray]:
    """The ring buffer of a :func:`diagnostics` stage built with ``history=H``, oldest first.

    Returns ``name -> array`` of the last ``H`` recorded values of each summary
    (keys prefixed by the stage's path when there are several stages).

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> opt = adaptix.chain(adaptix.diagnostics(history=3), adaptix.sgd(0.5))
      >>> state = opt.init(jnp.zeros(1))
      >>> for g in [1.0, 2.0, 3.0, 4.0]:
      ...     _, state = opt.update(jnp.array([g]), state)
      >>> adaptix.read_diagnostics_history(state)["grad_norm"]
      array([2., 3., 4.], dtype=float32)
    """
    found = _find(opt_state)
    out = {}
    for path, st in found:
        if st.history is None:
            raise ValueError(f"read_diagnostics_history: the diagnostics stage at {path or 'the top'} keeps no "
                             "history; build it with diagnostics(history=H).")
        prefix = f"{path}/" if len(found) > 1 else ""
        hist = np.asarray(_to_array(st.history))
        names = sorted(st.summary)
        steps = hist[:, names.index("step")]
        rows = np.flatnonzero(~np.isnan(steps))
        rows = rows[np.argsort(steps[rows], kind="stable")]
        for j, name in enumerate(names):
            out[prefix + name] = hist[rows, j]
    return out
