"""Curvature from gradient differences: a per-coordinate secant estimate, and vSGD built on it.

LeCun's diagonal-Hessian approximation measures, coordinate by coordinate, how much the gradient
changes per unit of parameter change. Schaul & LeCun (2013) replaced the exact diagonal
(bbprop) of Schaul, Zhang & LeCun's vSGD (2013) by such a finite difference and made it robust
to noise: the rate uses :math:`\\bar h / \\overline{h^2}` instead of :math:`1 / \\bar h`, and a
sample far from its running average lengthens the memory. Both stages here take the two
gradients of the difference from *consecutive* updates (a gradient transformation sees one
gradient per step), so they need ``params``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptix import _validate as v
from adaptix._base import Transformation, stage
from adaptix._combine import chain
from adaptix._scale import scale_by_learning_rate
from adaptix._tree import abs_sq, check_matches, check_matches_state, is_none, measured, real_dtype_of

#: A difference within this many machine epsilons of its terms' size is rounding: a parameter step, a variance.
ROUNDING = 8.0


def _working_dtype(x: Any) -> jnp.dtype:
    """float32, or wider: the precision a leaf's statistics are computed in (float64 for float64 leaves)."""
    return jnp.promote_types(real_dtype_of(jnp.result_type(x)), jnp.float32)


def _widen(x: jax.Array) -> jax.Array:
    """``x`` in the working precision (complex stays complex)."""
    dtype = _working_dtype(x)
    if jnp.iscomplexobj(x):
        dtype = jnp.promote_types(dtype, jnp.complex64)
    return x.astype(dtype)


def _as_stored(new: jax.Array, stored: jax.Array) -> jax.Array:
    """``new`` rounded to the stored leaf's dtype and read back: a moment is used as it is stored."""
    return new.astype(stored.dtype).astype(new.dtype)


def _secant(g, g_prev, p, p_prev, ready):
    r"""One curvature sample per coordinate, :math:`|g_t - g_{t-1}| / |\theta_t - \theta_{t-1}|`, and where it exists.

    A sample exists where ``ready`` (a previous gradient is stored) and the parameter moved by more
    than rounding: :math:`|\Delta\theta| > 8\,\epsilon_{mach} \max(|\theta_t|, |\theta_{t-1}|)` in the
    parameters' dtype (a coordinate that did not move, or moved by an ulp, carries no secant). The
    differences are taken in the working precision (float32 or wider).
    """
    dtype = jnp.result_type(p)
    tiny = ROUNDING * jnp.finfo(real_dtype_of(dtype)).eps
    p, p_prev = _widen(p), _widen(p_prev)
    step = jnp.abs(p - p_prev)
    size = jnp.maximum(jnp.abs(p), jnp.abs(p_prev))
    valid = ready & (step > 0) & (step > jnp.asarray(tiny, step.dtype) * size)
    change = jnp.abs(_widen(g) - _widen(g_prev)).astype(step.dtype)
    h = jnp.where(valid, change / jnp.where(valid, step, 1), 0)
    return h, valid


def _outlier(x, mean, sq, threshold, where):
    r""":math:`|x - \bar x|^2 > k^2 (\overline{x^2} - |\bar x|^2) > 0`: more than ``k`` s.d. from the average.

    A variance of 0 (one sample so far, or identical samples) gives no scale for "far": no outlier.
    The variance is a difference of two moments, so one within rounding of 0 (:math:`8\epsilon_{mach}
    \overline{x^2}`, whether or not the compiler fuses a multiply-add there) counts as 0.
    """
    variance = sq - abs_sq(mean)
    k = jnp.asarray(threshold, variance.dtype)
    known = variance > jnp.asarray(ROUNDING * jnp.finfo(variance.dtype).eps, variance.dtype) * sq
    return where & known & (abs_sq(x - mean) > k * k * variance)


def _inverse_curvature(h_mean, h_sq, initial_curvature):
    r""":math:`\bar h / \overline{h^2}` (robust :math:`1/h`), or :math:`1/h_0` where no positive curvature is known."""
    seen = h_sq > 0
    return jnp.where(seen, h_mean / jnp.where(seen, h_sq, 1), 1 / jnp.asarray(initial_curvature, h_mean.dtype))


def _per_leaf(updates, trees: tuple, leaf_fn, state_trees: tuple):
    """``leaf_fn(u, *leaves)`` for every leaf of ``updates``; ``(outputs, new state trees)``.

    ``leaf_fn`` returns ``(out, *new_state_leaves)``. Where ``u`` is ``None`` the output is ``None``
    and the state leaves are kept, so the state's structure never changes.
    """
    leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=is_none)
    flat = [treedef.flatten_up_to(t) for t in trees]
    flat_state = [treedef.flatten_up_to(t) for t in state_trees]
    outs, new_state = [], [[] for _ in state_trees]
    for i, u in enumerate(leaves):
        old = [s[i] for s in flat_state]
        if u is None:
            outs.append(None)
            results = old
        else:
            out, *results = leaf_fn(u, *(t[i] for t in flat), *old)
            outs.append(out)
        for column, value in zip(new_state, results):
            column.append(value)
    unflatten = lambda xs: jax.tree_util.tree_unflatten(treedef, xs)
    return unflatten(outs), tuple(unflatten(column) for column in new_state)


def _require_params(owner, params, updates):
    if params is None:
        raise ValueError(
            f"{owner}: params are required (call update(updates, state, params)); the curvature is "
            "|g_t - g_(t-1)| / |params_t - params_(t-1)|, coordinate by coordinate."
        )
    check_matches(updates, params, owner, "updates", "params")


def _zeros(params, real: bool = False, wide: bool = False):
    """Zeros laid out like ``params``: in their dtype, their real dtype, or their real working dtype."""

    def leaf(p):
        dtype = jnp.result_type(p)
        if wide:
            dtype = _working_dtype(p)
        elif real:
            dtype = real_dtype_of(dtype)
        return jnp.zeros(jnp.shape(p), dtype)

    return jax.tree.map(leaf, params)


def _check_curvature_hyperparameters(owner, outlier_threshold, initial_curvature):
    v.check_range(owner, "outlier_threshold", outlier_threshold, 0.0, low_open=True,
                  why="it is the number of standard deviations that marks an outlier")
    v.check_range(owner, "initial_curvature", initial_curvature, 0.0, low_open=True,
                  why="the first steps divide by it")


class ScaleBySecantCurvatureState(NamedTuple):
    """The previous gradient and parameters, the running :math:`\\bar h`, :math:`\\overline{h^2}` and their memory.

    ``memory`` is 0 before the first update, 1 until the first curvature sample, then the
    memory :math:`\\tau` of the averages (float32 or wider).
    """

    prev_grad: Any
    prev_params: Any
    h_mean: Any
    h_sq: Any
    memory: Any


def scale_by_secant_curvature(outlier_threshold: float = 2.0, initial_curvature: float = 1.0) -> Transformation:
    r"""Divides the input by a per-coordinate curvature measured from consecutive gradients.

    With :math:`g_t` the gradient entering the chain (``chain_input``) at the parameters
    :math:`\theta_t`, each coordinate's curvature sample is the secant

    .. math::

        h_t = \frac{|g_t - g_{t-1}|}{|\theta_t - \theta_{t-1}|},

    taken where the coordinate moved (by more than rounding). The samples are averaged with a
    memory :math:`\tau` that follows vSGD's rule on the curvature's own statistics, lengthened
    by one for an outlier (a sample more than :math:`k` standard deviations from the average,
    Schaul & LeCun 2013):

    .. math::

        \tau \leftarrow \tau + [\,(h_t - \bar h)^2 > k^2 (\overline{h^2} - \bar h^2)\,], \qquad
        \bar h \leftarrow (1 - \tfrac1\tau)\,\bar h + \tfrac1\tau h_t, \qquad
        \overline{h^2} \leftarrow (1 - \tfrac1\tau)\,\overline{h^2} + \tfrac1\tau h_t^2, \\
        \tau \leftarrow \Big(1 - \frac{\bar h^2}{\overline{h^2}}\Big)\,\tau + 1, \qquad
        \text{out} = \frac{\bar h}{\overline{h^2}}\, u_t.

    The first sample of a coordinate sets both averages (weight 1). :math:`\bar h/\overline{h^2}
    \le 1/\bar h` is the paper's robust inverse curvature: it equals :math:`1/h` for a constant
    curvature and shrinks the step when the samples scatter. Until a coordinate has a positive
    sample (the first update, a coordinate that never moved or whose gradient never changed) the
    output is :math:`u_t / h_0`. The memory shrinks to 1 when the samples agree (a
    deterministic curvature is followed at once) and grows as :math:`1 + \mathrm{CV}^2` when they
    scatter. ``chain(scale_by_secant_curvature(), scale_by_learning_rate(1.0))`` is a diagonal
    secant (quasi-Newton) method; :func:`vsgd` multiplies the same estimate by a noise factor.

    Args:
      outlier_threshold: :math:`k > 0`, in standard deviations (the paper's 2).
      initial_curvature: :math:`h_0 > 0`, assumed before a coordinate has a curvature sample.
        The paper's finite-difference probe :math:`\delta = \bar g` makes the same unit
        assumption (:math:`h_0 = 1`).

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> opt = adaptix.scale_by_secant_curvature()
      >>> h = jnp.array([4.0, 0.5])  # f = sum(h * theta**2) / 2, gradient h * theta
      >>> theta = jnp.array([1.0, 1.0]); state = opt.init(theta)
      >>> _, state = opt.update(h * theta, state, theta)
      >>> theta2 = jnp.array([0.5, 3.0])
      >>> opt.update(h * theta2, state, theta2)[0]  # Newton: g / h = theta
      Array([0.5, 3. ], dtype=float32)

    Note:
      The paper differences two gradients of the *same* sample, at :math:`\theta` and
      :math:`\theta + \bar g`; here the two gradients are consecutive minibatch gradients, one
      step apart, since a transformation sees one gradient per update and a second gradient
      would cost a second backward pass. Their noise does not cancel: near a minimum the secant
      overestimates the curvature by about :math:`\sigma/|\Delta\theta|`, which makes the step
      conservative. Needs ``params``; the state keeps a copy of the gradient and of the parameters.

    References:
      Schaul & LeCun, 2013, Adaptive learning rates and parallelization for stochastic, sparse,
      non-smooth gradients, section 4, https://arxiv.org/abs/1301.3764;
      LeCun, Bottou, Orr & Müller, 1998, Efficient BackProp, section 9,
      https://doi.org/10.1007/3-540-49430-8_2
    """
    owner = "scale_by_secant_curvature"
    _check_curvature_hyperparameters(owner, outlier_threshold, initial_curvature)

    def init(params):
        return ScaleBySecantCurvatureState(
            prev_grad=_zeros(params), prev_params=_zeros(params), h_mean=_zeros(params, real=True),
            h_sq=_zeros(params, real=True), memory=_zeros(params, wide=True))

    def leaf(u, g, p, g_prev, p_prev, h_mean, h_sq, memory):
        tau = memory.astype(_working_dtype(p))
        h, valid = _secant(g, g_prev, p, p_prev, tau > 0)
        mean, sq = h_mean.astype(h.dtype), h_sq.astype(h.dtype)
        seen = sq > 0
        tau = jnp.where(tau > 0, tau, 1) + _outlier(h, mean, sq, outlier_threshold, valid & seen)
        w = jnp.where(seen, 1 / tau, 1)
        mean = _as_stored(jnp.where(valid, (1 - w) * mean + w * h, mean), h_mean)
        sq = _as_stored(jnp.where(valid, (1 - w) * sq + w * h * h, sq), h_sq)
        agreement = jnp.where(sq > 0, jnp.clip(mean * mean / jnp.where(sq > 0, sq, 1), 0, 1), 0)
        tau = jnp.where(valid, (1 - agreement) * tau + 1, tau)
        scale = _inverse_curvature(mean, sq, initial_curvature)
        out = (u * scale.astype(real_dtype_of(jnp.result_type(u, h_mean)))).astype(jnp.result_type(u, h_mean))
        return (out, g.astype(g_prev.dtype), p.astype(p_prev.dtype), mean.astype(h_mean.dtype),
                sq.astype(h_sq.dtype), tau.astype(memory.dtype))

    def update(updates, state, params=None, *, chain_input=None, **extra):
        del extra
        _require_params(owner, params, updates)
        g = measured(updates, chain_input, owner)
        check_matches_state(g, state.h_mean, owner)
        out, new = _per_leaf(updates, (g, params), leaf, tuple(state))
        return out, ScaleBySecantCurvatureState(*new)

    return stage(owner, init, update)


class ScaleByVsgdState(NamedTuple):
    """vSGD's running averages :math:`\\bar g, \\bar v, \\bar h, \\overline{h^2}`, its memory and the previous step.

    ``memory`` (:math:`\\tau`, float32 or wider) is 0 before a coordinate's first update.
    """

    g_mean: Any
    g_sq: Any
    h_mean: Any
    h_sq: Any
    memory: Any
    prev_grad: Any
    prev_params: Any


def _check_vsgd_hyperparameters(owner, slow_start, initial_memory, outlier_threshold, initial_curvature):
    v.check_range(owner, "slow_start", slow_start, 1.0,
                  why="it is the factor C >= 1 by which the first variance estimate is inflated")
    v.check_range(owner, "initial_memory", initial_memory, 1.0,
                  why="it is the number of samples the first gradient counts for")
    _check_curvature_hyperparameters(owner, outlier_threshold, initial_curvature)


def scale_by_vsgd(
    slow_start: float = 2.0,
    initial_memory: float = 2.0,
    outlier_threshold: float = 2.0,
    initial_curvature: float = 1.0,
) -> Transformation:
    r"""Multiplies the input by vSGD's per-coordinate rate :math:`\eta^*_i`, curvature from gradient differences.

    For each coordinate, with :math:`g_t` the gradient entering the chain at :math:`\theta_t`
    and :math:`h_t = |g_t - g_{t-1}| / |\theta_t - \theta_{t-1}|` the secant curvature (where the
    coordinate moved by more than rounding, as :func:`scale_by_secant_curvature`):

    .. math::

        \tau &\leftarrow \tau + [\,|g_t - \bar g|^2 > k^2(\bar v - |\bar g|^2)
              \ \text{or}\ (h_t - \bar h)^2 > k^2(\overline{h^2} - \bar h^2)\,] \\
        \bar g &\leftarrow (1 - \tau^{-1})\,\bar g + \tau^{-1} g_t, \qquad
        \bar v \leftarrow (1 - \tau^{-1})\,\bar v + \tau^{-1} |g_t|^2, \\
        \bar h &\leftarrow (1 - \tau^{-1})\,\bar h + \tau^{-1} h_t, \qquad
        \overline{h^2} \leftarrow (1 - \tau^{-1})\,\overline{h^2} + \tau^{-1} h_t^2, \\
        \eta^* &= \frac{|\bar g|^2}{\bar v}\cdot\frac{\bar h}{\overline{h^2}}, \qquad
        \tau \leftarrow \Big(1 - \frac{|\bar g|^2}{\bar v}\Big)\,\tau + 1, \qquad
        \text{out} = \eta^*\, u_t.

    The first update of a coordinate initialises instead (the slow start):
    :math:`\bar g = g_1`, :math:`\bar v = C\,|g_1|^2`, :math:`\tau = n_0`, so the first rates are
    at most :math:`1/C` of the estimate. The curvature averages start at the first sample
    (weight 1); before it, and wherever no positive curvature was seen, :math:`\bar h /
    \overline{h^2}` is replaced by :math:`1/h_0`. Where :math:`\bar v = 0` (only zero gradients)
    the rate is 0. :math:`|\bar g|^2/\bar v \in [0, 1]` is the fraction of the gradient's second
    moment that is signal: the rate is the Newton step :math:`1/h` far from a minimum and
    anneals as the noise takes over; the memory shrinks to 1 on a clean signal and grows near a
    minimum, where the averages must be long.

    ``vsgd = chain(scale_by_vsgd(...), scale_by_learning_rate(1.0))``. The four averages share
    one memory (the gradient's signal fraction shortens it, an outlier of either the gradient or
    the curvature lengthens it), which is why they live in one stage rather than in a chain of
    :func:`scale_by_secant_curvature` and a gradient statistic.

    Args:
      slow_start: :math:`C \ge 1`, the factor of the first :math:`\bar v`. The authors' code
        uses 2; the paper's rule of thumb for single samples, :math:`C = d/10` for :math:`d`
        parameters, can be passed.
      initial_memory: :math:`n_0 \ge 1`, the number of samples the first gradient counts for.
      outlier_threshold: :math:`k > 0`, in standard deviations (the paper's 2).
      initial_curvature: :math:`h_0 > 0`, assumed before a coordinate has a curvature sample
        (the unit scale that the paper's probe :math:`\theta + \bar g` assumes too).

    Example:
      >>> import jax.numpy as jnp, numpy as np, adaptix
      >>> opt = adaptix.scale_by_vsgd()
      >>> theta = jnp.array([1.0]); state = opt.init(theta)
      >>> np.asarray(opt.update(2.0 * theta, state, theta)[0])  # first step: g / (C h_0) = 2 / 2
      array([1.], dtype=float32)

    Note:
      The paper's vSGD takes the diagonal curvature from bbprop, and Schaul & LeCun's
      finite-difference variant from two gradients of the same sample; here the curvature comes
      from consecutive (minibatch) gradients, one per update (see
      :func:`scale_by_secant_curvature`), so it needs ``params``. The paper initialises the
      averages from :math:`n_0` extra gradients before the first step; a transformation has
      only the first one, which counts for :math:`n_0`. Not the variational "VSGD" of Chen et
      al. (2024).

    References:
      Schaul, Zhang & LeCun, 2013, No More Pesky Learning Rates, Algorithm 1 (vSGD-l),
      https://arxiv.org/abs/1206.1106;
      Schaul & LeCun, 2013, Adaptive learning rates and parallelization for stochastic, sparse,
      non-smooth gradients, https://arxiv.org/abs/1301.3764
    """
    owner = "scale_by_vsgd"
    _check_vsgd_hyperparameters(owner, slow_start, initial_memory, outlier_threshold, initial_curvature)

    def init(params):
        real = _zeros(params, real=True)
        return ScaleByVsgdState(
            g_mean=_zeros(params), g_sq=real, h_mean=real, h_sq=real, memory=_zeros(params, wide=True),
            prev_grad=_zeros(params), prev_params=_zeros(params))

    def leaf(u, g, p, g_mean, g_sq, h_mean, h_sq, memory, g_prev, p_prev):
        tau = memory.astype(_working_dtype(p))
        started = tau > 0
        h, valid = _secant(g, g_prev, p, p_prev, started)
        gw = _widen(g)
        dtype = h.dtype
        gbar, vbar = _widen(g_mean), g_sq.astype(dtype)
        hbar, hsq = h_mean.astype(dtype), h_sq.astype(dtype)
        seen = hsq > 0
        outlier = _outlier(h, hbar, hsq, outlier_threshold, valid & seen)
        tau = jnp.where(started, tau + outlier, jnp.asarray(initial_memory, dtype))
        w = 1 / tau
        gsq = abs_sq(gw)
        gbar = _as_stored(jnp.where(started, (1 - w) * gbar + w * gw, gw), g_mean)
        vbar = _as_stored(jnp.where(started, (1 - w) * vbar + w * gsq, jnp.asarray(slow_start, dtype) * gsq), g_sq)
        wh = jnp.where(seen, w, 1)
        hbar = _as_stored(jnp.where(valid, (1 - wh) * hbar + wh * h, hbar), h_mean)
        hsq = _as_stored(jnp.where(valid, (1 - wh) * hsq + wh * h * h, hsq), h_sq)
        signal = jnp.where(vbar > 0, jnp.clip(abs_sq(gbar) / jnp.where(vbar > 0, vbar, 1), 0, 1), 0)
        rate = signal * _inverse_curvature(hbar, hsq, initial_curvature)
        tau = (1 - signal) * tau + 1
        out_dtype = jnp.result_type(u, g_sq)
        out = (u * rate.astype(real_dtype_of(out_dtype))).astype(out_dtype)
        return (out, gbar.astype(g_mean.dtype), vbar.astype(g_sq.dtype), hbar.astype(h_mean.dtype),
                hsq.astype(h_sq.dtype), tau.astype(memory.dtype), g.astype(g_prev.dtype), p.astype(p_prev.dtype))

    def update(updates, state, params=None, *, chain_input=None, **extra):
        del extra
        _require_params(owner, params, updates)
        g = measured(updates, chain_input, owner)
        check_matches_state(g, state.g_sq, owner)
        out, new = _per_leaf(updates, (g, params), leaf, tuple(state))
        return out, ScaleByVsgdState(*new)

    return stage(owner, init, update)


def vsgd(
    learning_rate: Any = 1.0,
    slow_start: float = 2.0,
    initial_memory: float = 2.0,
    outlier_threshold: float = 2.0,
    initial_curvature: float = 1.0,
) -> Transformation:
    r"""vSGD: per-coordinate rates from the gradient's signal fraction and curvature; no learning rate to tune.

    ``chain(scale_by_vsgd(slow_start, initial_memory, outlier_threshold, initial_curvature),
    scale_by_learning_rate(learning_rate))``:

    .. math::

        \theta_{t+1} = \theta_t - \lambda\, \eta^*_t \odot g_t, \qquad
        \eta^*_{t,i} = \frac{\bar g_i^2}{\bar v_i}\cdot\frac{\bar h_i}{\overline{h^2_i}}
        \approx \frac{(\mathbb E g_i)^2}{\mathbb E[g_i^2]\; h_i},

    the rate that minimises the expected loss after the step on a noisy quadratic (Schaul,
    Zhang & LeCun, eq. 8), from running averages with an adaptive memory (see
    :func:`scale_by_vsgd`); the curvature :math:`h_i` is the secant of consecutive gradients
    (:func:`scale_by_secant_curvature`). The rate is :math:`1/h` (Newton) when the gradient is
    noiseless and anneals by itself, roughly as :math:`1/t`, as noise dominates.

    Args:
      learning_rate: a multiplier :math:`\lambda` of vSGD's own rate (a number ``>= 0`` or a
        schedule); the method needs none: keep 1.
      slow_start: :math:`C \ge 1`, the first variance estimate's factor (the authors' code: 2).
      initial_memory: :math:`n_0 \ge 1`, what the first gradient counts for.
      outlier_threshold: :math:`k > 0` standard deviations mark an outlier (paper: 2).
      initial_curvature: :math:`h_0 > 0`, the curvature assumed before the first secant.

    Example:
      >>> import jax, jax.numpy as jnp, optax, adaptix
      >>> loss = lambda w: 0.5 * jnp.sum(jnp.array([10.0, 0.1]) * w ** 2)  # curvatures 10 and 0.1
      >>> opt = adaptix.vsgd()
      >>> w = jnp.array([1.0, 1.0]); state = opt.init(w)
      >>> for _ in range(100):
      ...     u, state = opt.update(jax.grad(loss)(w), state, w)
      ...     w = optax.apply_updates(w, u)
      >>> bool(loss(w) < 1e-3)  # from 5.05: coordinates a hundredfold apart in curvature, no rate to tune
      True

    Note:
      Needs ``params`` (the secant's :math:`\Delta\theta`). The curvature is measured between
      consecutive minibatch gradients, not between two gradients of one sample as in the paper
      (see :func:`scale_by_secant_curvature`), and the averages start from the first gradient
      alone (see :func:`scale_by_vsgd`). Not the variational "VSGD" of Chen et al. (2024).

    References:
      Schaul, Zhang & LeCun, 2013, No More Pesky Learning Rates, ICML,
      https://arxiv.org/abs/1206.1106;
      Schaul & LeCun, 2013, Adaptive learning rates and parallelization for stochastic, sparse,
      non-smooth gradients, ICLR, https://arxiv.org/abs/1301.3764
    """
    owner = "vsgd"
    if learning_rate is None:
        learning_rate = 1.0
    v.check_rate(owner, "learning_rate", learning_rate)
    _check_vsgd_hyperparameters(owner, slow_start, initial_memory, outlier_threshold, initial_curvature)
    return chain(scale_by_vsgd(slow_start, initial_memory, outlier_threshold, initial_curvature),
                 scale_by_learning_rate(learning_rate))
