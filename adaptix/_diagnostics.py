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
from adaptix._accumulators import (
    debias,
    ema_of_squares_rule,
    ema_rule,
    moment_sqrt,
    power,
    scalar_dtype,
    update_moment,
)
from adaptix._base import CountedTransformation, counted
from adaptix._tree import (
    abs_sq,
    cast_like,
    check_matches,
    check_matches_state,
    is_none,
    measured,
    real_dtype_of,
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


def _sampled_zeros(params: Any, tracked: int | None, *, real: bool) -> Any:
    """Zero EMAs of the tracked coordinates of each leaf (real ones for the second moment)."""
    stride = _stride(params, tracked)
    if stride == 1:
        return tree_real_full_like(params, 0.0) if real else tree_zeros_like(params)

    def zeros(p):
        dtype = real_dtype_of(jnp.result_type(p)) if real else jnp.result_type(p)
        return jnp.zeros([_picked_size(p, stride)], dtype)

    return jax.tree.map(zeros, params)


def _initial_state(params: Any, names: tuple[str, ...], tracked: int | None, *, snr: bool, keep_full: bool,
                   history: int) -> DiagnosticsState:
    dtype = scalar_dtype(params)
    return DiagnosticsState(
        snr_mu=_sampled_zeros(params, tracked, real=False) if snr else None,
        snr_nu=_sampled_zeros(params, tracked, real=True) if snr else None,
        summary={name: jnp.zeros([], dtype) for name in names},
        snr=tree_zeros_like(params) if (snr and keep_full) else None,
        effective_lr=tree_real_full_like(params, 0.0) if keep_full else None,
        history=jnp.full((history, len(names)), jnp.nan, dtype) if history else None,
    )


def _exact_summaries(us: list, gs: list) -> dict:
    """Norms, maxima and the update-gradient cosine, over all coordinates of the leaves."""
    grad_sq = _total([_sum(abs_sq(x)) for x in gs])
    update_sq = _total([_sum(abs_sq(u)) for u in us])
    inner = _total([_sum(_inner(x, u)) for u, x in zip(us, gs)])
    denom = jnp.sqrt(grad_sq) * jnp.sqrt(update_sq)
    return {
        "grad_norm": jnp.sqrt(grad_sq),
        "grad_max": _largest([_max(jnp.abs(x)) for x in gs]),
        "update_norm": jnp.sqrt(update_sq),
        "update_max": _largest([_max(jnp.abs(u)) for u in us]),
        "update_grad_cosine": jnp.where(denom > 0, inner / jnp.where(denom > 0, denom, 1), 0),
    }


def _sampled_summaries(us: list, gs: list, stride: int) -> tuple[dict, list, int]:
    """Sparsity and the effective step size over the tracked coordinates.

    Returns the summaries, the per-leaf effective step sizes and the number of tracked coordinates.
    """
    g_picked = [_pick(x, stride) for x in gs]
    n_tracked = max(sum(int(np.size(x)) for x in g_picked), 1)
    eff = [_effective_lr(_pick(u, stride), x) for u, x in zip(us, g_picked)]
    n_nonzero = _total([_sum((x != 0).astype(jnp.float32)) for x in g_picked])
    summary = {
        "grad_zero_fraction": 1.0 - n_nonzero / n_tracked,
        "effective_lr_mean": _total([_sum(e) for e in eff]) / jnp.maximum(n_nonzero, 1),
        "effective_lr_max": _largest([_max(e) for e in eff]),
    }
    return summary, eff, n_tracked


def _snr_summaries(mu: Any, nu: Any, count: jax.Array, b1: float, b2: float, eps: float, threshold: float,
                   n_tracked: int, dtype: Any) -> tuple[dict, Any]:
    """Adam's signal-to-noise ratio from the stage's EMAs, summarised, and the bias-correction factor."""
    # in float32 or wider: eps = 1e-8 rounds to 0 in float16, where a zero gradient would give 0/0
    snr_tree = jax.tree.map(
        lambda m, s: debias(_wide(m), b1, count) / (moment_sqrt(debias(_wide(s), b2, count)) + eps), mu, nu
    )
    abs_snr = [jnp.abs(r) for r in jax.tree.leaves(snr_tree)]
    summary = {
        "bias_correction": jnp.sqrt(1.0 - power(b2, count, dtype)) / (1.0 - power(b1, count, dtype)),
        "abs_snr_mean": _total([_sum(r) for r in abs_snr]) / n_tracked,
        "abs_snr_max": _largest([_max(r) for r in abs_snr]),
        "low_snr_fraction": _total([_sum((r < threshold).astype(jnp.float32)) for r in abs_snr]) / n_tracked,
    }
    return summary, snr_tree


def _with_leaves(old: Any, grads: Any, new_leaves: list) -> Any:
    """``old`` with its leaves replaced, in order, by ``new_leaves`` where ``grads`` has an array.

    ``grads`` fits ``old`` leaf by leaf (``None`` leaves counted), as :func:`check_matches` makes sure.
    """
    fresh = iter(new_leaves)
    flat = jax.tree_util.tree_leaves(grads, is_leaf=is_none)
    leaves = [o if x is None else next(fresh) for x, o in zip(flat, jax.tree.leaves(old))]
    return jax.tree.unflatten(jax.tree.structure(old), leaves)


def _with_row(history: jax.Array, row: jax.Array, index: jax.Array) -> jax.Array:
    """The ring buffer ``history`` with ``row`` written at ``index`` modulo its length."""
    index = index % history.shape[0]
    return jax.lax.dynamic_update_slice(history, row[None, :], (index, jnp.zeros([], index.dtype)))


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
    v.check_int(owner, "history", history, 0)
    v.check_int(owner, "every", every, 1)
    v.check_int(owner, "sample", sample, 1, none_ok=True)
    tracked = None if keep_full else sample
    names = tuple(sorted(BASE_NAMES + (SNR_NAMES if snr else ())))

    def init(params):
        return _initial_state(params, names, tracked, snr=snr, keep_full=keep_full, history=history)

    def summarize(updates, g, mu, nu, count, hist):
        """The summaries of one step, the full trees (``keep_full``) and the history with the new row."""
        # Reductions read the updates and gradients from memory: without the barrier XLA may recompute
        # the optimizer's arithmetic inside each of them (measured: the default costs ~5% more).
        us, gs = jax.lax.optimization_barrier((jax.tree.leaves(updates), jax.tree.leaves(g)))
        summary = _exact_summaries(us, gs)
        sampled, eff, n_tracked = _sampled_summaries(us, gs, _stride(g, tracked))
        summary.update(sampled, step=count)
        snr_tree = None
        if snr:
            snr_summary, snr_tree = _snr_summaries(mu, nu, count, b1, b2, eps, snr_threshold, n_tracked, hist.dtype)
            summary.update(snr_summary)
        summary = {k: summary[k].astype(hist.dtype) for k in names}
        if history:
            hist = _with_row(hist, jnp.stack([summary[k] for k in names]), (count - 1) // every)
        return summary, snr_tree, eff, hist

    def update(updates, state, params=None, *, chain_step, chain_input=None, **extra):
        del params, extra
        g = measured(updates, chain_input, owner)
        if g is None:  # no updates at all (as in Optax, None passes): nothing to record
            return updates, state
        if state.snr_nu is not None:
            check_matches(g, state.snr_nu, owner, shapes=False)
        elif state.effective_lr is not None:
            check_matches_state(g, state.effective_lr, owner)
        mu = nu = None
        if snr:  # the EMAs see every gradient, recorded or not
            stride = _stride(g, tracked)
            g_picked = jax.tree.map(lambda x: _pick(x, stride), g)
            _, mu = update_moment(ema_rule(b1), g_picked, state.snr_mu)
            _, nu = update_moment(ema_of_squares_rule(b2), g_picked, state.snr_nu)
        hist = state.history if history else jnp.zeros([], state.summary["step"].dtype)  # carries the dtype

        def record(operands):
            summary, snr_tree, eff, new_hist = summarize(*operands)
            if not keep_full:
                return summary, None, None, new_hist
            eff_tree = _with_leaves(state.effective_lr, g, eff)  # a None gradient keeps its leaf
            return summary, cast_like(snr_tree, state.snr), cast_like(eff_tree, state.effective_lr), new_hist

        def skip(operands):
            return state.summary, state.snr, state.effective_lr, operands[-1]

        operands = (updates, g, mu, nu, chain_step, hist)
        if every == 1:
            summary, snr_full, eff_full, hist = record(operands)
        else:
            summary, snr_full, eff_full, hist = jax.lax.cond((chain_step - 1) % every == 0, record, skip, operands)
        new_state = DiagnosticsState(snr_mu=mu, snr_nu=nu, summary=summary, snr=snr_full, effective_lr=eff_full,
                                     history=hist if history else None)
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
