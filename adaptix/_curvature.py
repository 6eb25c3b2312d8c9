"""Curvature from gradient differences: a per-coordinate secant estimate, and vSGD built on it.

LeCun's diagonal-Hessian approximation measures, coordinate by coordinate, how much the gradient
changes per unit of parameter change. Schaul & LeCun (2013) replaced the exact diagonal
(bbprop) of Schaul, Zhang & LeCun's vSGD (2013) by such a finite difference, made robust to
noise (a sample far from its running average lengthens the memory). Both stages here take the
two gradients of the difference from *consecutive* updates (a gradient transformation sees one
gradient per step), so they need ``params``, and average the secants weighted by the squared
step (a least-squares slope), which keeps the estimate bounded where the steps become small.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptix import _validate as v
from adaptix._base import Transformation, stage
from adaptix._combine import chain
from adaptix._scale import scale_by_learning_rate
from adaptix._tree import (
    abs_sq,
    check_matches,
    check_matches_state,
    full_like_sharded,
    is_none,
    measured,
    real_dtype_of,
)

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
    r"""Differences :math:`\Delta g = g_t - g_{t-1}`, :math:`\Delta\theta = \theta_t - \theta_{t-1}`: where they count.

    They count where ``ready`` (a previous gradient is stored) and the parameter moved by more than
    rounding: :math:`|\Delta\theta| > 8\,\epsilon_{mach} \max(|\theta_t|, |\theta_{t-1}|)` in the
    parameters' dtype (a coordinate that did not move, or moved by an ulp, carries no secant).
    Returns the three products the statistics average, in the working precision (float32 or wider):
    :math:`\mathrm{Re}(\Delta g\,\overline{\Delta\theta})`, :math:`|\Delta\theta|^2`,
    :math:`|\Delta g|^2`, and the mask.
    """
    dtype = jnp.result_type(p)
    tiny = ROUNDING * jnp.finfo(real_dtype_of(dtype)).eps
    p, p_prev = _widen(p), _widen(p_prev)
    step = p - p_prev
    size = jnp.maximum(jnp.abs(p), jnp.abs(p_prev))
    valid = ready & (jnp.abs(step) > 0) & (jnp.abs(step) > jnp.asarray(tiny, size.dtype) * size)
    change = (_widen(g) - _widen(g_prev)).astype(step.dtype)
    cross = jnp.real(change * jnp.conj(step))
    return (jnp.where(valid, cross, 0), jnp.where(valid, abs_sq(step), 0),
            jnp.where(valid, abs_sq(change), 0), valid)


def _curvature_statistics(cross, step_sq, change_sq, valid, old, tau, threshold):
    r"""The :math:`|\Delta\theta|^2`-weighted running mean and second moment of the secants, and the outliers.

    A secant :math:`h_t = \Delta g\,\Delta\theta / \Delta\theta^2` weighted by :math:`\Delta\theta^2`
    makes the averages :math:`a = \langle \Delta g\,\Delta\theta\rangle`, :math:`b = \langle
    \Delta\theta^2\rangle`, :math:`c = \langle \Delta g^2\rangle`: mean :math:`a/b`, variance
    :math:`c/b - (a/b)^2`. ``old`` holds the stored :math:`(a, b, c)`; the new sample enters with
    weight :math:`1/\tau` (1 for the first one, where :math:`b = 0`), after :math:`\tau` grew by one if
    it is an outlier (more than ``threshold`` s.d. from the mean, when a variance is known).
    Returns ``(a, b, c, tau)``.
    """
    a, b, c = old
    seen = b > 0
    mean = a / jnp.where(seen, b, 1)
    variance = c / jnp.where(seen, b, 1) - mean * mean
    # c/b - (a/b)^2 cancels: one sample (or identical ones) leaves rounding noise of a few ulps of c/b, on which
    # the compiler's fusions decide; a variance below sqrt(eps) of c/b is taken for 0 (no scale, no outlier)
    cancelled = jnp.asarray(jnp.sqrt(jnp.finfo(variance.dtype).eps), variance.dtype) * c / jnp.where(seen, b, 1)
    known = seen & (variance > cancelled)
    sample = cross / jnp.where(valid, step_sq, 1)
    k = jnp.asarray(threshold, variance.dtype)
    outlier = valid & known & ((sample - mean) ** 2 > k * k * variance)
    tau = tau + outlier
    w = jnp.where(seen, 1 / tau, 1)
    average = lambda old, new: jnp.where(valid, (1 - w) * old + w * new, old)
    return average(a, cross), average(b, step_sq), average(c, change_sq), tau


def _inverse_curvature(a, b, initial_curvature):
    r""":math:`\langle\Delta\theta^2\rangle / |\langle\Delta g\,\Delta\theta\rangle|`, else :math:`1/h_0`."""
    known = (b > 0) & (a != 0)
    return jnp.where(known, b / jnp.where(known, jnp.abs(a), 1), 1 / jnp.asarray(initial_curvature, a.dtype))


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


def _with_same_batch_gradient(owner, state, grad_fn, g):
    """``state`` whose ``prev_grad`` is ``grad_fn(prev_params)``: this step's minibatch at the previous parameters.

    Without ``grad_fn`` the state as stored (the previous step's gradient, on its own minibatch).
    """
    if grad_fn is None:
        return state
    if not callable(grad_fn):
        raise TypeError(f"{owner}: grad_fn must be a function params -> gradient of this step's minibatch loss, "
                        f"got {type(grad_fn).__name__}.")
    then = grad_fn(state.prev_params)
    check_matches(then, g, owner, "grad_fn(previous params)", "gradient")
    stored = jax.tree.map(lambda x, s: None if x is None else jnp.asarray(x).astype(s.dtype), then, state.prev_grad,
                          is_leaf=is_none)
    return state._replace(prev_grad=stored)


def _secant_update(owner, leaf, updates, state, params, chain_input, grad_fn, state_like):
    """The update of both secant stages: check the inputs, take the previous gradient (as stored, or this
    minibatch's at the previous parameters with ``grad_fn``), run ``leaf`` per leaf; ``(updates, new state)``."""
    _require_params(owner, params, updates)
    g = measured(updates, chain_input, owner)
    check_matches_state(g, state_like, owner)
    state = _with_same_batch_gradient(owner, state, grad_fn, g)
    out, new = _per_leaf(updates, (g, params), leaf, tuple(state))
    return out, type(state)(*new)


def _zeros(params, real: bool = False, wide: bool = False):
    """Zeros laid out (and sharded) like ``params``: in their dtype, their real dtype, or their real working dtype."""

    def leaf(p):
        dtype = jnp.result_type(p)
        if wide:
            dtype = _working_dtype(p)
        elif real:
            dtype = real_dtype_of(dtype)
        return full_like_sharded(p, 0, dtype)

    return jax.tree.map(leaf, params)


def _check_curvature_hyperparameters(owner, outlier_threshold, initial_curvature):
    v.check_range(owner, "outlier_threshold", outlier_threshold, 0.0, low_open=True,
                  why="it is the number of standard deviations that marks an outlier")
    v.check_range(owner, "initial_curvature", initial_curvature, 0.0, low_open=True,
                  why="the first steps divide by it")


class ScaleBySecantCurvatureState(NamedTuple):
    r"""The previous gradient and parameters, the secant's running averages and their memory.

    ``cross``, ``step_sq``, ``change_sq`` are :math:`\langle\Delta g\,\Delta\theta\rangle`,
    :math:`\langle\Delta\theta^2\rangle`, :math:`\langle\Delta g^2\rangle`; ``memory`` is 0 before the
    first update, 1 until the first secant, then the memory :math:`\tau` (float32 or wider).
    """

    prev_grad: Any
    prev_params: Any
    cross: Any
    step_sq: Any
    change_sq: Any
    memory: Any


def scale_by_secant_curvature(outlier_threshold: float = 2.0, initial_curvature: float = 1.0) -> Transformation:
    r"""Divides the input by a per-coordinate curvature measured from consecutive gradients.

    With :math:`g_t` the gradient entering the chain (``chain_input``) at the parameters
    :math:`\theta_t`, :math:`\Delta g = g_t - g_{t-1}` and :math:`\Delta\theta = \theta_t - \theta_{t-1}`
    (per coordinate, where it moved by more than rounding), each step gives a secant
    :math:`h_t = \Delta g / \Delta\theta`. The estimate is their mean weighted by
    :math:`\Delta\theta^2` over a memory :math:`\tau`, i.e. a least-squares slope of the gradient
    change on the step:

    .. math::

        a \leftarrow (1 - \tfrac1\tau)\, a + \tfrac1\tau\, \Delta g\,\Delta\theta, \quad
        b \leftarrow (1 - \tfrac1\tau)\, b + \tfrac1\tau\, \Delta\theta^2, \quad
        c \leftarrow (1 - \tfrac1\tau)\, c + \tfrac1\tau\, \Delta g^2, \qquad
        \bar h = \frac{|a|}{b}, \quad \text{out} = \frac{u_t}{\bar h} = \frac{b}{|a|}\, u_t.

    Before the averages, :math:`\tau` grows by one if :math:`h_t` is an outlier: more than
    :math:`k` standard deviations from the weighted mean :math:`a/b`, the variance being
    :math:`c/b - (a/b)^2` (Schaul & LeCun 2013; none is declared while that variance is 0, as
    after a single sample: below :math:`\sqrt{\epsilon_{mach}}\, c/b` it is cancellation noise).
    After them the memory follows vSGD's rule on the secant's own
    agreement, :math:`\tau \leftarrow (1 - a^2/(bc))\,\tau + 1`: :math:`a^2/(bc)` is the squared
    correlation of :math:`\Delta g` and :math:`\Delta\theta`, 1 for a noiseless curvature (which is
    then followed at once, :math:`\tau = 1`) and small when noise dominates (long averages). The
    first secant of a coordinate sets the averages (weight 1). Until a coordinate has a nonzero
    :math:`a` the output is :math:`u_t / h_0`. On a quadratic :math:`\bar h` is exact from the
    second update on. ``chain(scale_by_secant_curvature(), scale_by_learning_rate(1.0))`` is a
    diagonal secant (quasi-Newton) method; :func:`vsgd` multiplies the same estimate by its
    noise factor.

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
      :math:`\theta + \bar g`, and averages :math:`|h_t|`, using :math:`\bar h/\overline{h^2}`
      for :math:`1/h`. Here the two gradients are consecutive minibatch gradients, one step
      apart (a transformation sees one gradient per update; a second gradient would cost a
      second backward pass), and their noise does not cancel: a single secant is off by about
      :math:`\sigma/|\Delta\theta|`, which explodes as the steps shrink, and the paper's average
      of :math:`|h_t|` then runs away (measured on a noisy quadratic: :math:`\bar h` a million times
      the true curvature after 2,000 steps, the rates frozen). Weighting by
      :math:`\Delta\theta^2` bounds the bias: since the step :math:`\Delta\theta_t` was made with
      :math:`g_{t-1}`, the slope still overestimates :math:`h` by about :math:`\sigma^2 /
      (\eta\,\mathbb E g^2)`, which only makes the step conservative. Needs ``params``; the state
      keeps a copy of the gradient and of the parameters.

      The paper's same-sample difference is available too: pass ``grad_fn`` to ``update``
      (``update(g, state, params, grad_fn=...)``, a function of the parameters returning the
      gradient of *this step's* minibatch loss, which :func:`adaptix.chain` and
      ``nnx.Optimizer.update`` hand on as an extra argument). Then
      :math:`\Delta g = g_t - \nabla f_{B_t}(\theta_{t-1})`: the minibatch noise cancels (on a
      quadratic the secant is exact whatever the noise), at the cost of a second gradient per step.
      The estimate is then unbiased, and small where the curvature is: on sparse features the
      rate :math:`1/\bar h` of a rarely active coordinate is huge (vSGD on MNIST's logistic
      regression diverged within 8 steps this way; the consecutive secant's upward bias hides
      it). The paper's treatment of sparse gradients is not built.

    References:
      Schaul & LeCun, 2013, Adaptive learning rates and parallelization for stochastic, sparse,
      non-smooth gradients, section 4, https://arxiv.org/abs/1301.3764;
      LeCun, Bottou, Orr & Müller, 1998, Efficient BackProp, section 9,
      https://doi.org/10.1007/3-540-49430-8_2
    """
    owner = "scale_by_secant_curvature"
    _check_curvature_hyperparameters(owner, outlier_threshold, initial_curvature)

    def init(params):
        real = _zeros(params, real=True)
        return ScaleBySecantCurvatureState(prev_grad=_zeros(params), prev_params=_zeros(params), cross=real,
                                           step_sq=real, change_sq=real, memory=_zeros(params, wide=True))

    def leaf(u, g, p, g_prev, p_prev, cross, step_sq, change_sq, memory):
        tau = memory.astype(_working_dtype(p))
        x, dd, gg, valid = _secant(g, g_prev, p, p_prev, tau > 0)
        old = tuple(m.astype(x.dtype) for m in (cross, step_sq, change_sq))
        a, b, c, tau = _curvature_statistics(x, dd, gg, valid, old, jnp.maximum(tau, 1), outlier_threshold)
        a, b, c = _as_stored(a, cross), _as_stored(b, step_sq), _as_stored(c, change_sq)
        positive = (b > 0) & (c > 0)
        agreement = jnp.where(positive, jnp.clip(a * a / jnp.where(positive, b * c, 1), 0, 1), 0)
        tau = jnp.where(valid, (1 - agreement) * tau + 1, tau)
        out_dtype = jnp.result_type(u, cross)
        scale = _inverse_curvature(a, b, initial_curvature).astype(real_dtype_of(out_dtype))
        return ((u * scale).astype(out_dtype), g.astype(g_prev.dtype), p.astype(p_prev.dtype), a.astype(cross.dtype),
                b.astype(step_sq.dtype), c.astype(change_sq.dtype), tau.astype(memory.dtype))

    def update(updates, state, params=None, *, chain_input=None, grad_fn=None, **extra):
        del extra
        return _secant_update(owner, leaf, updates, state, params, chain_input, grad_fn, state.cross)

    return stage(owner, init, update)


class ScaleByVsgdState(NamedTuple):
    r"""vSGD's running averages, its memory and the previous step.

    ``mu``, ``nu`` are :math:`\bar g` and :math:`\bar v` (Optax's names for first and second moments);
    ``cross``, ``step_sq``, ``change_sq`` the secant's :math:`\langle\Delta g\,\Delta\theta\rangle`,
    :math:`\langle\Delta\theta^2\rangle`, :math:`\langle\Delta g^2\rangle`; ``memory`` (:math:`\tau`,
    float32 or wider) is 0 before a coordinate's first update.
    """

    mu: Any
    nu: Any
    cross: Any
    step_sq: Any
    change_sq: Any
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

    For each coordinate, with :math:`g_t` the gradient entering the chain at :math:`\theta_t`,
    :math:`\Delta g = g_t - g_{t-1}` and :math:`\Delta\theta = \theta_t - \theta_{t-1}` (where the
    coordinate moved by more than rounding, as :func:`scale_by_secant_curvature`):

    .. math::

        \tau &\leftarrow \tau + [\,h_t = \Delta g/\Delta\theta \text{ is more than } k
              \text{ s.d. from } a/b\,] \\
        \bar g &\leftarrow (1 - \tau^{-1})\,\bar g + \tau^{-1} g_t, \qquad
        \bar v \leftarrow (1 - \tau^{-1})\,\bar v + \tau^{-1} |g_t|^2, \\
        a &\leftarrow (1 - \tau^{-1})\, a + \tau^{-1} \Delta g\,\Delta\theta, \quad
        b \leftarrow (1 - \tau^{-1})\, b + \tau^{-1} \Delta\theta^2, \quad
        c \leftarrow (1 - \tau^{-1})\, c + \tau^{-1} \Delta g^2, \\
        \eta^* &= \frac{|\bar g|^2}{\bar v}\cdot\frac{1}{\bar h}, \quad \bar h = \frac{|a|}{b}, \qquad
        \tau \leftarrow \Big(1 - \frac{|\bar g|^2}{\bar v}\Big)\,\tau + 1, \qquad
        \text{out} = \eta^*\, u_t,

    the outlier test using the secants' :math:`\Delta\theta^2`-weighted variance :math:`c/b - (a/b)^2`.

    The first update of a coordinate initialises instead (the slow start):
    :math:`\bar g = g_1`, :math:`\bar v = C\,|g_1|^2`, :math:`\tau = n_0`, so the first rates are
    at most :math:`1/C` of the estimate. The curvature averages start at the first sample
    (weight 1); before it, and wherever :math:`a = 0`, :math:`1/\bar h` is replaced by
    :math:`1/h_0`. Where :math:`\bar v = 0` (only zero gradients) the rate is 0.
    :math:`|\bar g|^2/\bar v \in [0, 1]` is the fraction of the gradient's second moment that is signal:
    the rate is the Newton step :math:`1/h` far from a minimum and anneals as the noise takes over;
    the memory shrinks to 1 on a clean signal and grows near a minimum, where the averages must be long.

    ``vsgd = chain(scale_by_vsgd(...), scale_by_learning_rate(1.0))``. The averages share
    one memory (the gradient's signal fraction shortens it, a curvature outlier lengthens it),
    which is why they live in one stage rather than in a chain of :func:`scale_by_secant_curvature`
    and a gradient statistic. Only curvature samples are tested for outliers (as Schaul & LeCun
    describe); a gradient test, as in the authors' later code, flags every step of a noiseless
    descent (a short memory's variance is 0) and anneals a deterministic problem.

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
      :func:`scale_by_secant_curvature`: a least-squares slope instead of the paper's robust
      :math:`\bar h/\overline{h^2}`, which runs away with consecutive noisy gradients), so it
      needs ``params``; ``update(..., grad_fn=...)`` takes the paper's same-minibatch difference
      instead (see there). The paper initialises the
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
        return ScaleByVsgdState(mu=_zeros(params), nu=real, cross=real, step_sq=real, change_sq=real,
                                memory=_zeros(params, wide=True), prev_grad=_zeros(params), prev_params=_zeros(params))

    def leaf(u, g, p, mu, nu, cross, step_sq, change_sq, memory, g_prev, p_prev):
        tau = memory.astype(_working_dtype(p))
        started = tau > 0
        x, dd, gg, valid = _secant(g, g_prev, p, p_prev, started)
        dtype = x.dtype
        old = tuple(m.astype(dtype) for m in (cross, step_sq, change_sq))
        tau = jnp.where(started, tau, jnp.asarray(initial_memory, dtype))
        a, b, c, tau = _curvature_statistics(x, dd, gg, valid, old, tau, outlier_threshold)
        a, b, c = _as_stored(a, cross), _as_stored(b, step_sq), _as_stored(c, change_sq)
        w = 1 / tau
        gw = _widen(g)
        gsq = abs_sq(gw)
        gbar = _as_stored(jnp.where(started, (1 - w) * _widen(mu) + w * gw, gw), mu)
        vbar = jnp.where(started, (1 - w) * nu.astype(dtype) + w * gsq, jnp.asarray(slow_start, dtype) * gsq)
        vbar = _as_stored(vbar, nu)
        signal = jnp.where(vbar > 0, jnp.clip(abs_sq(gbar) / jnp.where(vbar > 0, vbar, 1), 0, 1), 0)
        rate = signal * _inverse_curvature(a, b, initial_curvature)
        tau = (1 - signal) * tau + 1
        out_dtype = jnp.result_type(u, nu)
        out = (u * rate.astype(real_dtype_of(out_dtype))).astype(out_dtype)
        return (out, gbar.astype(mu.dtype), vbar.astype(nu.dtype), a.astype(cross.dtype), b.astype(step_sq.dtype),
                c.astype(change_sq.dtype), tau.astype(memory.dtype), g.astype(g_prev.dtype), p.astype(p_prev.dtype))

    def update(updates, state, params=None, *, chain_input=None, grad_fn=None, **extra):
        del extra
        return _secant_update(owner, leaf, updates, state, params, chain_input, grad_fn, state.nu)

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
        \eta^*_{t,i} = \frac{\bar g_i^2}{\bar v_i\, \bar h_i}
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
