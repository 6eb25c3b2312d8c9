"""Second-moment stages: rescale their input by a statistic of the measured gradient.

Each stage measures ``chain_input`` (the gradient entering the enclosing
:func:`adaptix.chain`), or its own input when used alone, and multiplies its
input by a per-coordinate scale. Because the rescaling is linear in the input,
a momentum stage may stand before it (Adam) or after it (RMSProp with momentum).
Second moments of complex gradients are moments of :math:`|g|^2`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from adaptix import _validate as v
from adaptix._accumulators import (
    debias,
    ema_of_squares_rule,
    ema_rule,
    for_leaf,
    moment_power,
    moment_sqrt,
    power,
    scalar_dtype,
    update_moment,
    working,
)
from adaptix._base import Transformation, counted, stage
from adaptix._quantized import check_storage
from adaptix._tree import (
    abs_sq,
    cast_to_result,
    check_matches_state,
    map_updates,
    measured,
    tree_real_full_like,
    tree_zeros_like,
)


def _surely_finite_inverse(eps, eps_root, eps_in_sqrt, dtype, exponent=0.5) -> bool:
    """Whether ``eps``/``eps_root`` alone keep the inverse RMS finite in ``dtype``.

    True only for concrete Python numbers whose value in ``dtype`` is a normal
    number with a finite reciprocal (1e-8 in float32 or bfloat16, not in
    float16, where it rounds to 0). Traced values give False.
    """
    if not all(_is_number(e) for e in (eps, eps_root, exponent)):
        return False
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        return False
    info = jnp.finfo(dtype)
    with np.errstate(all="ignore"):
        if eps_in_sqrt:
            floor = np.power(np.asarray(eps + eps_root, dtype), np.asarray(exponent, dtype))
        else:
            floor = np.power(np.asarray(eps_root, dtype), np.asarray(exponent, dtype)) + np.asarray(eps, dtype)
        inverse = np.asarray(1.0, dtype) / floor
    return bool(floor >= info.tiny) and bool(np.isfinite(inverse))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _inverse_rms(nu_hat, eps, eps_root, eps_in_sqrt, exponent=0.5):
    """``(nu_hat + eps_root + eps)^-p`` or ``1 / ((nu_hat + eps_root)^p + eps)``; ``p = 1/2`` by default.

    0 where the denominator is 0 (or so small that its reciprocal overflows):
    that happens only when ``eps`` and ``eps_root`` are 0 (or below the
    dtype's resolution, as 1e-8 in float16) and the second moment is 0, i.e.
    every gradient seen so far was 0 (or squared to below the dtype's
    smallest number). The output is then ``0 * inf``; 0 is its limit for a
    vanishing input, where the bare formula gives NaN. A NaN moment stays NaN.
    When ``eps`` alone keeps the denominator positive the guard is not built.
    The square root (a Python ``exponent`` of 0.5) is computed as ``rsqrt``/``sqrt``, bit for bit the
    references' arithmetic; any other exponent (or a traced one) through :func:`moment_power`.
    """
    floor, root_floor = working(eps, nu_hat), working(eps_root, nu_hat)
    if _is_number(exponent) and exponent == 0.5:
        root_of = moment_sqrt
    else:
        p = for_leaf(working(exponent, nu_hat), nu_hat)
        root_of = lambda x: moment_power(x, p)  # noqa: E731
    if eps_in_sqrt:
        denominator = nu_hat + for_leaf(floor + root_floor, nu_hat)
        invert = jax.lax.rsqrt if root_of is moment_sqrt else lambda d: 1 / root_of(d)
    else:
        floor, root_floor = for_leaf(floor, nu_hat), for_leaf(root_floor, nu_hat)
        denominator = root_of(nu_hat + root_floor) + floor
        invert = lambda d: 1 / d  # noqa: E731
    inverse = invert(denominator)
    if _surely_finite_inverse(eps, eps_root, eps_in_sqrt, jnp.result_type(inverse), exponent):
        return inverse
    # inverted again where it is kept, from a denominator that is 1 where it is cut: the cut entries'
    # derivative is then 0, not the bare formula's inf * 0 = NaN (meta-gradients with eps = 0)
    cut = jnp.isposinf(inverse)
    return jnp.where(cut, jnp.zeros_like(inverse), invert(jnp.where(cut, jnp.ones_like(denominator), denominator)))


def _rescale(updates, scales, state_tree):
    """``updates * scales`` leaf by leaf, in the dtype of the input promoted with the state's."""
    return map_updates(lambda u, s, m: cast_to_result(u * s, u, m), updates, scales, state_tree)


def _counted_if(needs_step: bool, owner: str, init, update) -> Transformation:
    """A stage that reads the chain's step only when it needs it (bias correction)."""
    if needs_step:
        return counted(owner, init, update)
    return stage(owner, init, lambda u, s, p=None, **extra: update(u, s, p, chain_step=None, **extra))


class ScaleByRmsState(NamedTuple):
    """EMA of squared gradients (``nu``; the step count, when debiased, is the chain's)."""

    nu: Any


def scale_by_rms(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
    *,
    eps_root: float = 0.0,
    power: float = 0.5,
    accumulator_dtype: Any = None,
) -> Transformation:
    r"""Divides the input by the root mean square of the gradient (RMSProp), or by another power of it.

    .. math::

        v_t = \beta v_{t-1} + (1-\beta)\, |g_t|^2, \qquad
        \hat v_t = v_t / (1-\beta^t)\ \text{(if bias\_correction)}, \\
        \text{out} = \frac{u_t}{(\hat v_t + \epsilon)^p} \ \ \text{(eps\_in\_sqrt)}
        \quad\text{or}\quad \frac{u_t}{(\hat v_t + \epsilon_{root})^p + \epsilon},
        \qquad p = \tfrac12 \text{ by default}.

    :math:`\hat v` is a diagonal of the empirical Fisher matrix :math:`E[g g^\top]`. With
    :math:`p = \frac12` (RMSProp, Adam) the step is invariant to the gradient's scale and bounded by
    about the learning rate; :math:`p = 1` is the *diagonal empirical-Fisher natural gradient*
    :math:`\hat F^{-1} g`, which near a likelihood's optimum (where the per-example gradients'
    second moment approaches the Hessian) is a diagonal Newton step, and far from it divides by
    :math:`g^2` (a step :math:`\propto 1/g`, large where the gradient is small: Kunstner et al.,
    2019, "Limitations of the empirical Fisher approximation"), so it needs damping, ``eps``;
    :math:`0 < p < \frac12` interpolates towards SGD (Padam, Chen et al., 2020).
    ``notebooks/09_natural_gradient_and_sign.ipynb`` shows the regimes on quadratics.

    :math:`g_t` is the gradient entering the chain (``chain_input``), :math:`u_t` this
    stage's input. Where the denominator is 0 (``eps = eps_root = 0``, or an
    ``eps`` that rounds to 0 in the dtype, and :math:`v_t = 0`: only zero
    gradients so far) the output is 0, the limit for a vanishing gradient,
    instead of the formula's ``0/0 = NaN``. Adam is ``chain(trace(b1,
    ema=True), scale_by_rms(b2, eps, eps_in_sqrt=False, bias_correction=True),
    bias_correction(b1), lr)``.

    Args:
      decay: :math:`\beta`, in ``[0, 1]`` (``[0, 1)`` with ``bias_correction``).
      eps: added inside or outside the square root, ``>= 0``.
      initial_scale: initial value of :math:`v`, ``>= 0`` (TensorFlow uses 1.0).
      eps_in_sqrt: ``True`` (Optax's RMSProp default) puts eps inside the root;
        ``False`` puts it outside (Adam, PyTorch's RMSprop).
      bias_correction: divide :math:`v_t` by :math:`1-\beta^t`.
      eps_root: a further constant inside the root (Optax's Adam ``eps_root``).
      power: the exponent :math:`p` of :math:`\hat v`, in ``(0, 1]``: ``0.5`` the root mean square,
        ``1`` the diagonal natural gradient. (The batch-size rule of :func:`adaptix.sqrt_scaling`
        then scales the learning rate by :math:`\kappa^{1-p}`.)
      accumulator_dtype: real dtype of the stored :math:`v` (e.g.
        ``jnp.bfloat16``), or :func:`adaptix.quantized` (8-bit codes, unsigned
        map); ``None`` keeps the parameters' (real) dtype. The new :math:`v` is
        computed in the wider of the two dtypes (float32 for codes), rounded to
        this one (quantized), and used as stored. With :math:`\beta` close to 1 a
        narrow dtype loses the EMA's small increments: in bfloat16 (8 significant bits) a
        :math:`v` with :math:`\beta = 0.999` only moves up, when :math:`g^2`
        exceeds about :math:`3v`, and never decays (see ``docs/reliability.md``).

    Example:
      >>> import jax.numpy as jnp, numpy as np, adaptix
      >>> opt = adaptix.scale_by_rms(0.9, eps=0.0, bias_correction=True)
      >>> np.asarray(opt.update(jnp.array([3.0, -0.5]), opt.init(jnp.zeros(2)))[0]).round(4)  # g / |g|
      array([ 1., -1.], dtype=float32)

    Note:
      PyTorch's ``RMSprop`` puts eps outside the root (``eps_in_sqrt=False``);
      Optax's default is inside. Both start from :math:`v_0 = 0`.

    References:
      Tieleman & Hinton, 2012, Lecture 6.5 of Neural Networks for Machine
      Learning, https://www.cs.toronto.edu/~tijmen/csc321/slides/lecture_slides_lec6.pdf
    """
    owner = "scale_by_rms"
    v.check_bool(owner, "bias_correction", bias_correction)
    v.check_decay(owner, "decay", decay, debiased=bias_correction)
    v.check_nonnegative(owner, "eps", eps)
    v.check_nonnegative(owner, "initial_scale", initial_scale)
    v.check_bool(owner, "eps_in_sqrt", eps_in_sqrt)
    v.check_nonnegative(owner, "eps_root", eps_root)
    v.check_range(owner, "power", power, 0.0, 1.0, low_open=True,
                  why="the exponent of the second moment: 0.5 for RMSProp and Adam, 1 for the natural gradient")
    check_storage(owner, "accumulator_dtype", accumulator_dtype)

    def init(params):
        return ScaleByRmsState(nu=tree_real_full_like(params, initial_scale, accumulator_dtype))

    def update(updates, state, params=None, *, chain_step, chain_input=None, **extra):
        del params, extra
        g = measured(updates, chain_input, owner)
        check_matches_state(g, state.nu, owner)
        nu, stored = update_moment(ema_of_squares_rule(decay), g, state.nu)
        nu_hat = map_updates(lambda n: debias(n, decay, chain_step), nu) if bias_correction else nu
        scales = map_updates(lambda n: _inverse_rms(n, eps, eps_root, eps_in_sqrt, power), nu_hat)
        return _rescale(updates, scales, state.nu), ScaleByRmsState(nu=stored)

    return _counted_if(bias_correction, owner, init, update)


class ScaleByStddevState(NamedTuple):
    """EMA of gradients and EMA of squared gradients (as Optax's ``ScaleByRStdDevState``)."""

    mu: Any
    nu: Any


def scale_by_stddev(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
    *,
    accumulator_dtype: Any = None,
) -> Transformation:
    r"""Divides the input by the gradient's standard deviation (centered RMSProp).

    .. math::

        m_t = \beta m_{t-1} + (1-\beta) g_t, \quad
        v_t = \beta v_{t-1} + (1-\beta) |g_t|^2, \quad
        \text{out} = \frac{u_t}{\sqrt{\hat v_t - |\hat m_t|^2 + \epsilon}}
        \ \text{or}\ \frac{u_t}{\sqrt{\hat v_t - |\hat m_t|^2} + \epsilon}.

    The variance estimate is clamped at 0, so rounding never yields a NaN, and
    where the denominator is 0 (``eps=0`` and a variance of exactly 0) the output
    is 0 rather than :math:`u/0`. With ``eps=0`` a variance that is rounding
    noise (a constant gradient) gives huge steps: keep ``eps > 0``.

    Args:
      decay: :math:`\beta`, in ``[0, 1]`` (``[0, 1)`` with ``bias_correction``).
      eps: added inside or outside the square root, ``>= 0``.
      initial_scale: initial value of :math:`v`, ``>= 0``.
      eps_in_sqrt: eps inside (Optax default) or outside (PyTorch) the root.
      bias_correction: debias both moments by :math:`1-\beta^t`.
      accumulator_dtype: dtype of the stored moments (``None``: the parameters').

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> opt = adaptix.scale_by_stddev(0.5, eps=1.0)
      >>> opt.update(jnp.ones(1), opt.init(jnp.zeros(1)))[0]  # 1 / sqrt(0.5 - 0.25 + 1)
      Array([0.8944272], dtype=float32)

    Note:
      Equals ``optax.scale_by_stddev`` and PyTorch's ``RMSprop(centered=True)``
      (with ``eps_in_sqrt=False``) wherever the variance estimate is positive.

    References:
      Graves, 2013, Generating Sequences With Recurrent Neural Networks, eq. 38-41,
      https://arxiv.org/abs/1308.0850
    """
    owner = "scale_by_stddev"
    v.check_bool(owner, "bias_correction", bias_correction)
    v.check_decay(owner, "decay", decay, debiased=bias_correction)
    v.check_nonnegative(owner, "eps", eps)
    v.check_nonnegative(owner, "initial_scale", initial_scale)
    v.check_bool(owner, "eps_in_sqrt", eps_in_sqrt)
    check_storage(owner, "accumulator_dtype", accumulator_dtype, signed=True)

    def init(params):
        return ScaleByStddevState(
            mu=tree_zeros_like(params, accumulator_dtype),
            nu=tree_real_full_like(params, initial_scale, accumulator_dtype),
        )

    def update(updates, state, params=None, *, chain_step, chain_input=None, **extra):
        del params, extra
        g = measured(updates, chain_input, owner)
        check_matches_state(g, state.nu, owner)
        mu, mu_stored = update_moment(ema_rule(decay), g, state.mu)
        nu, nu_stored = update_moment(ema_of_squares_rule(decay), g, state.nu)
        mu_hat, nu_hat = mu, nu
        if bias_correction:
            mu_hat = map_updates(lambda m: debias(m, decay, chain_step), mu)
            nu_hat = map_updates(lambda n: debias(n, decay, chain_step), nu)
        variance = map_updates(lambda m, n: jnp.maximum(n - abs_sq(m), 0.0), mu_hat, nu_hat)
        scales = map_updates(lambda s: _inverse_rms(s, eps, 0.0, eps_in_sqrt), variance)
        return _rescale(updates, scales, state.nu), ScaleByStddevState(mu=mu_stored, nu=nu_stored)

    return _counted_if(bias_correction, owner, init, update)


class ScaleByRssState(NamedTuple):
    """Running sum of squared gradients."""

    sum_of_squares: Any


def scale_by_rss(
    initial_accumulator_value: float = 0.1,
    eps: float = 1e-7,
    eps_in_sqrt: bool = True,
    *,
    accumulator_dtype: Any = None,
) -> Transformation:
    r"""Divides the input by the root of the sum of squared gradients (AdaGrad).

    .. math::

        s_t = s_{t-1} + |g_t|^2, \qquad
        \text{out} = \frac{u_t}{\sqrt{s_t + \epsilon}} \ \text{(eps\_in\_sqrt)}
        \ \text{or}\ \frac{u_t}{\sqrt{s_t} + \epsilon},

    and 0 wherever :math:`s_t = 0` (no gradient seen yet), so zero gradients
    never give NaN even with ``eps=0``.

    Args:
      initial_accumulator_value: :math:`s_0 \ge 0` (Optax 0.1, PyTorch 0).
      eps: ``>= 0`` (Optax 1e-7 inside the root, PyTorch 1e-10 outside).
      eps_in_sqrt: eps inside (Optax) or outside (PyTorch) the root.
      accumulator_dtype: dtype of the stored sum (``None``: the parameters' real dtype).

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> opt = adaptix.scale_by_rss(0.0, eps=0.0)
      >>> opt.update(jnp.array([3.0, 0.0]), opt.init(jnp.zeros(2)))[0]
      Array([1., 0.], dtype=float32)

    References:
      Duchi, Hazan & Singer, 2011, https://jmlr.org/papers/v12/duchi11a.html
    """
    owner = "scale_by_rss"
    v.check_nonnegative(owner, "initial_accumulator_value", initial_accumulator_value)
    v.check_nonnegative(owner, "eps", eps)
    v.check_bool(owner, "eps_in_sqrt", eps_in_sqrt)
    check_storage(owner, "accumulator_dtype", accumulator_dtype)

    def init(params):
        return ScaleByRssState(
            sum_of_squares=tree_real_full_like(params, initial_accumulator_value, accumulator_dtype))

    def update(updates, state, params=None, *, chain_input=None, **extra):
        del params, extra
        g = measured(updates, chain_input, owner)
        old = state.sum_of_squares
        check_matches_state(g, old, owner)
        sums, stored = update_moment(lambda s, x: abs_sq(x) + s, g, old)
        scales = map_updates(lambda s: jnp.where(s > 0, _inverse_rms(s, eps, 0.0, eps_in_sqrt), 0.0), sums)
        return _rescale(updates, scales, old), ScaleByRssState(stored)

    return stage(owner, init, update)


class ScaleByMaxRmsState(NamedTuple):
    """EMA of squared gradients and its running maximum (Optax's ``nu`` and ``nu_max``)."""

    nu: Any
    nu_max: Any


def scale_by_max_rms(
    decay: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    debias_before_max: bool = True,
    bias_correction: bool = True,
    *,
    accumulator_dtype: Any = None,
) -> Transformation:
    r"""Divides the input by the running maximum of the second moment (AMSGrad).

    .. math::

        v_t = \beta v_{t-1} + (1-\beta) |g_t|^2, \quad
        \text{debias\_before\_max:}\ \ \bar v_t = \max(\bar v_{t-1}, v_t/(1-\beta^t)),\
        \text{out} = \frac{u_t}{\sqrt{\bar v_t + \epsilon_{root}} + \epsilon}; \\
        \text{otherwise:}\ \ \bar v_t = \max(\bar v_{t-1}, v_t),\
        \text{out} = \frac{u_t}{\sqrt{\bar v_t/(1-\beta^t) + \epsilon_{root}} + \epsilon}.

    AMSGrad is ``chain(trace(b1, ema=True), scale_by_max_rms(b2, eps),
    bias_correction(b1), scale_by_learning_rate(lr))``. As in :func:`scale_by_rms`,
    the output is 0 where the denominator is 0 (``eps = eps_root = 0`` and only
    zero gradients so far).

    Args:
      decay: :math:`\beta_2 \in [0, 1)`.
      eps: outside the square root, ``>= 0``.
      eps_root: inside the square root, ``>= 0``.
      debias_before_max: ``True`` is Optax's form (maximum of the debiased
        moment); ``False`` is PyTorch's (maximum of the raw moment, debiased
        after).
      bias_correction: ``False`` takes the maximum of the raw moment and never
        debiases it (Optax's ``bias_correction_nu=False``).
      accumulator_dtype: dtype of the stored moment and maximum (``None``: the
        parameters' real dtype).

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> opt = adaptix.scale_by_max_rms(0.5, eps=0.0)
      >>> s = opt.init(jnp.zeros(1))
      >>> u, s = opt.update(jnp.full(1, 4.0), s)
      >>> opt.update(jnp.ones(1), s)[0]  # the maximum still holds 16 from |g| = 4, not 6
      Array([0.25], dtype=float32)

    Note:
      No Optax setting reproduces PyTorch's ``Adam(amsgrad=True)``: the two
      maxima differ whenever the bias correction changes which moment is
      larger. ``debias_before_max=False`` matches PyTorch exactly.

    References:
      Reddi, Kale & Kumar, 2018, On the Convergence of Adam and Beyond,
      https://openreview.net/forum?id=ryQu7f-RZ
    """
    owner = "scale_by_max_rms"
    v.check_bool(owner, "bias_correction", bias_correction)
    v.check_decay(owner, "decay", decay, debiased=bias_correction)
    v.check_nonnegative(owner, "eps", eps)
    v.check_nonnegative(owner, "eps_root", eps_root)
    v.check_bool(owner, "debias_before_max", debias_before_max)
    check_storage(owner, "accumulator_dtype", accumulator_dtype)

    def init(params):
        return ScaleByMaxRmsState(nu=tree_real_full_like(params, 0.0, accumulator_dtype),
                                  nu_max=tree_real_full_like(params, 0.0, accumulator_dtype))

    def update(updates, state, params=None, *, chain_step, chain_input=None, **extra):
        del params, extra
        g = measured(updates, chain_input, owner)
        check_matches_state(g, state.nu, owner)
        nu, nu_stored = update_moment(ema_of_squares_rule(decay), g, state.nu)
        unbias = (lambda n: debias(n, decay, chain_step)) if bias_correction else (lambda n: n)
        candidate = map_updates(lambda x, n: unbias(n) if debias_before_max else n, g, nu)  # None where g is
        nu_max, nu_max_stored = update_moment(jnp.maximum, candidate, state.nu_max)
        nu_hat = nu_max if debias_before_max else map_updates(unbias, nu_max)
        scales = map_updates(lambda n: _inverse_rms(n, eps, eps_root, False), nu_hat)
        return _rescale(updates, scales, state.nu), ScaleByMaxRmsState(nu=nu_stored, nu_max=nu_max_stored)

    return _counted_if(bias_correction, owner, init, update)


class ScaleByInfNormState(NamedTuple):
    """Exponentially weighted infinity norm of past gradients."""

    nu: Any


def scale_by_inf_norm(decay: float = 0.999, eps: float = 1e-8, *, accumulator_dtype: Any = None) -> Transformation:
    r"""Divides the input by an exponentially weighted infinity norm (Adamax).

    .. math::

        v_t = \max(\beta v_{t-1},\ |g_t| + \epsilon), \qquad \text{out} = u_t / v_t,

    and 0 where :math:`v_t = 0` (only possible with ``eps=0``).
    Adamax is ``chain(trace(b1, ema=True), scale_by_inf_norm(b2, eps),
    bias_correction(b1), scale_by_learning_rate(lr))``; the infinity norm needs
    no bias correction.

    Args:
      decay: :math:`\beta_2 \in [0, 1]` (1: the running maximum of :math:`|g|`).
      eps: added to :math:`|g_t|`, ``>= 0``.
      accumulator_dtype: dtype of the stored norm (``None``: the parameters' real dtype).

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> opt = adaptix.scale_by_inf_norm(eps=0.0)
      >>> opt.update(jnp.array([-2.0, 0.0]), opt.init(jnp.zeros(2)))[0]
      Array([-1.,  0.], dtype=float32)

    Note:
      Equals Optax's ``scale_by_adamax`` and PyTorch's ``Adamax`` (both add eps
      to :math:`|g_t|` inside the maximum, not to the denominator).

    References:
      Kingma & Ba, 2015, Adam, section 7.1, https://arxiv.org/abs/1412.6980
    """
    owner = "scale_by_inf_norm"
    v.check_decay(owner, "decay", decay)
    v.check_nonnegative(owner, "eps", eps)
    check_storage(owner, "accumulator_dtype", accumulator_dtype)

    def init(params):
        return ScaleByInfNormState(nu=tree_real_full_like(params, 0.0, accumulator_dtype))

    def update(updates, state, params=None, *, chain_input=None, **extra):
        del params, extra
        g = measured(updates, chain_input, owner)
        check_matches_state(g, state.nu, owner)

        def rule(n, x):
            return jnp.maximum(jnp.abs(x) + for_leaf(working(eps, n), n), for_leaf(working(decay, n), n) * n)

        nu, stored = update_moment(rule, g, state.nu)
        scales = map_updates(lambda n: jnp.where(n > 0, 1.0 / jnp.where(n > 0, n, 1.0), 0.0), nu)
        return _rescale(updates, scales, state.nu), ScaleByInfNormState(nu=stored)

    return stage(owner, init, update)


def scale_by_rectified_rms(
    decay: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    threshold: float = 5.0,
    *,
    accumulator_dtype: Any = None,
) -> Transformation:
    r"""RAdam's rectified second-moment rescaling.

    With :math:`\rho_\infty = 2/(1-\beta) - 1` and
    :math:`\rho_t = \rho_\infty - 2 t \beta^t / (1-\beta^t)`, the length of the
    approximated simple moving average,

    .. math::

        \text{out} = \begin{cases}
          r_t\, u_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon) & \rho_t \ge \text{threshold} \\
          u_t & \text{otherwise (too few samples: plain momentum SGD)}
        \end{cases},\quad
        r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}.

    The second moment :math:`\hat v_t` is that of :func:`scale_by_rms` with
    bias correction. RAdam is ``chain(trace(b1, ema=True),
    scale_by_rectified_rms(b2, eps), bias_correction(b1), lr)``.

    Args:
      decay: :math:`\beta_2 \in [0, 1)`.
      eps: outside the square root, ``>= 0``.
      eps_root: inside the square root, ``>= 0``.
      threshold: the :math:`\rho_t` from which the adaptive step is used
        (Optax 5, with ``>=``; PyTorch uses ``> 5``).
      accumulator_dtype: dtype of the stored second moment (``None``: the
        parameters' real dtype).

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> opt = adaptix.scale_by_rectified_rms()
      >>> opt.update(jnp.full(1, 3.0), opt.init(jnp.zeros(1)))[0]  # rho_1 = 1 < 5: unchanged
      Array([3.], dtype=float32)

    Note:
      PyTorch's ``RAdam`` puts eps outside :math:`\sqrt{v_t}` before debiasing
      (:math:`\sqrt{v_t}+\epsilon`, then times :math:`\sqrt{1-\beta^t}`), Optax and
      adaptix outside :math:`\sqrt{\hat v_t}`.

    References:
      Liu et al., 2020, On the Variance of the Adaptive Learning Rate and Beyond,
      https://arxiv.org/abs/1908.03265
    """
    owner = "scale_by_rectified_rms"
    v.check_debiased_decay(owner, "decay", decay)
    v.check_nonnegative(owner, "eps", eps)
    v.check_nonnegative(owner, "eps_root", eps_root)
    v.check_real(owner, "threshold", threshold)
    check_storage(owner, "accumulator_dtype", accumulator_dtype)

    def init(params):
        return ScaleByRmsState(nu=tree_real_full_like(params, 0.0, accumulator_dtype))

    def update(updates, state, params=None, *, chain_step, chain_input=None, **extra):
        del params, extra
        g = measured(updates, chain_input, owner)
        check_matches_state(g, state.nu, owner)
        nu, stored = update_moment(ema_of_squares_rule(decay), g, state.nu)
        dtype = scalar_dtype(nu)
        decay_t = power(decay, chain_step, dtype)
        rho_inf = 2 / (1 - working(decay, nu)) - 1
        rho = rho_inf - 2.0 * chain_step.astype(dtype) * decay_t / (1.0 - decay_t)
        ratio = (rho - 4.0) * (rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho)
        rect = jnp.sqrt(jnp.maximum(ratio, 0.0))
        use_adaptive = rho >= threshold
        scales = map_updates(
            lambda n: jnp.where(
                use_adaptive,
                rect.astype(n.dtype) * _inverse_rms(debias(n, decay, chain_step), eps, eps_root, False),
                1.0,
            ),
            nu,
        )
        return _rescale(updates, scales, state.nu), ScaleByRmsState(nu=stored)

    return counted(owner, init, update)
