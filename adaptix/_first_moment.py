"""First-moment stages: averages of their *input* (trace, ema, Nesterov, Lion) and the bias correction of an EMA."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptix import _validate as v
from adaptix._accumulators import debias as debiased
from adaptix._accumulators import ema_of, ema_rule, for_leaf, power, scalar_dtype, update_moment, working
from adaptix._base import CountedTransformation, EmptyState, Transformation, counted, safe_increment, stage
from adaptix._quantized import check_storage
from adaptix._tree import cast_like, cast_to_result, check_matches_state, map_updates, tree_zeros_like


class TraceState(NamedTuple):
    """The running trace (heavy-ball momentum buffer), as ``optax.trace``'s."""

    trace: Any


class FirstMomentState(NamedTuple):
    """The EMA of the input: Adam's first moment :math:`m` (``mu``, as in Optax's Adam states)."""

    mu: Any


def trace(
    decay: float,
    nesterov: bool = False,
    ema: bool = False,
    accumulator_dtype: Any = None,
) -> Transformation:
    r"""Momentum of the input: a heavy-ball trace or an exponential moving average.

    .. math::

        \text{plain:}\quad t_k = u_k + \beta\, t_{k-1}, \qquad
        \text{ema:}\quad t_k = \beta\, t_{k-1} + (1-\beta)\, u_k,

    and the output is :math:`t_k`, or with ``nesterov=True`` the look-ahead
    :math:`u_k + \beta t_k` (plain) / :math:`\beta t_k + (1-\beta) u_k` (ema).
    ``ema=True`` does not debias; follow with :func:`bias_correction` for that.
    The state is a :class:`TraceState` (``trace``) for the plain form and a
    :class:`FirstMomentState` (``mu``, Adam's name) for the EMA.

    Args:
      decay: :math:`\beta \in [0, 1]`; 1 makes the plain trace a running sum.
      nesterov: output the Nesterov look-ahead instead of the trace.
      ema: weight the input by :math:`1-\beta` (an EMA) instead of 1 (a trace).
      accumulator_dtype: dtype of the stored trace (e.g. ``jnp.bfloat16``), or
        :func:`adaptix.quantized` (8-bit codes, signed map); ``None`` keeps the
        parameters' dtype. The new trace is computed in the wider of this and the
        input's dtype (float32 for codes), rounded once (quantized), and used as stored.

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> opt = adaptix.chain(adaptix.trace(0.9), adaptix.scale_by_learning_rate(0.1))
      >>> state = opt.init(jnp.zeros(2))
      >>> u, state = opt.update(jnp.ones(2), state)
      >>> u, state = opt.update(jnp.ones(2), state)
      >>> u  # -0.1 * (1 + 0.9)
      Array([-0.19, -0.19], dtype=float32)

    Note:
      The plain form equals ``optax.trace`` and PyTorch's SGD momentum with
      ``dampening=0``; ``ema=True`` equals PyTorch's ``dampening=momentum``.

    References:
      Polyak, 1964, https://doi.org/10.1016/0041-5553(64)90137-5;
      Sutskever et al., 2013, https://proceedings.mlr.press/v28/sutskever13.html
    """
    owner = "trace"
    v.check_decay(owner, "decay", decay)
    v.check_bool(owner, "nesterov", nesterov)
    v.check_bool(owner, "ema", ema)
    check_storage(owner, "accumulator_dtype", accumulator_dtype, signed=True)
    make_state = FirstMomentState if ema else TraceState

    def init(params):
        return make_state(tree_zeros_like(params, accumulator_dtype))

    def update(updates, state, params=None, **extra):
        del params, extra
        old = state[0]
        check_matches_state(updates, old, owner)

        def traced(t, u):
            beta = working(decay, t)
            return (for_leaf(1 - beta, t) * u if ema else u) + for_leaf(beta, t) * t

        new, stored = update_moment(traced, updates, old)
        if nesterov:
            out = map_updates(lambda u, t, s: cast_to_result(traced(t, u), u, s), updates, new, old)
        else:
            out = map_updates(lambda u, t, s: cast_to_result(t, u, s), updates, new, old)
        return out, make_state(stored)

    return stage(owner, init, update)


class EmaState(NamedTuple):
    """The exponential moving average (``optax.ema``'s state, whose count the chain keeps)."""

    ema: Any


def ema(decay: float, debias: bool = True, accumulator_dtype: Any = None) -> CountedTransformation:
    r"""Exponential moving average of the input, optionally debiased.

    .. math::

        m_t = \beta\, m_{t-1} + (1-\beta)\, u_t, \qquad
        \text{out} = m_t / (1 - \beta^t) \ \text{if debias else}\ m_t.

    It keeps a step counter, as ``optax.ema`` does (inside a chain, the chain's).

    Args:
      decay: :math:`\beta`, in ``[0, 1)`` with ``debias``, else in ``[0, 1]``.
      debias: divide by :math:`1-\beta^t` (the zero-initialisation bias).
      accumulator_dtype: dtype of the stored average; ``None`` keeps the
        parameters' dtype.

    Example:
      >>> import jax.numpy as jnp, numpy as np, adaptix
      >>> opt = adaptix.ema(0.9)
      >>> state = opt.init(jnp.zeros(1))
      >>> np.asarray(opt.update(jnp.full(1, 5.0), state)[0]).round(4)  # debiased: the input itself
      array([5.], dtype=float32)

    Note:
      Equals ``optax.ema``; ``trace(decay, ema=True)`` followed by
      ``bias_correction(decay)`` is the same computation split in two stages.
    """
    owner = "ema"
    v.check_bool(owner, "debias", debias)
    v.check_decay(owner, "decay", decay, debiased=debias)
    check_storage(owner, "accumulator_dtype", accumulator_dtype, signed=True)

    def init(params):
        return EmaState(ema=tree_zeros_like(params, accumulator_dtype))

    def update(updates, state, params=None, *, chain_step, **extra):
        del params, extra
        check_matches_state(updates, state.ema, owner)
        new_ema, stored = update_moment(ema_rule(decay), updates, state.ema)
        estimate = (lambda m: debiased(m, decay, chain_step)) if debias else (lambda m: m)
        out = map_updates(lambda u, m, s: cast_to_result(estimate(m), u, s), updates, new_ema, state.ema)
        return out, EmaState(ema=stored)

    return counted(owner, init, update)


def bias_correction(decay: float) -> CountedTransformation:
    r"""Divides the input by :math:`1 - \beta^t`, the weight an EMA started at 0 has gathered.

    .. math::

        \text{out}_t = \frac{u_t}{1 - \beta^t}, \qquad t = 1, 2, \dots

    Placed after ``trace(b1, ema=True)`` it turns the EMA into Adam's
    :math:`\hat m_t`; since second-moment stages are linear in their input it may
    stand anywhere after the trace. :math:`\beta^t` is computed in float32 or
    wider. The step :math:`t` is the chain's (one counter per optimizer); used
    alone, the stage counts itself, saturating instead of overflowing.

    Args:
      decay: the :math:`\beta` of the EMA being corrected, in ``[0, 1)``.

    Example:
      >>> import jax.numpy as jnp, numpy as np, adaptix
      >>> opt = adaptix.bias_correction(0.9)
      >>> np.asarray(opt.update(jnp.ones(1), opt.init(jnp.zeros(1)))[0]).round(4)  # 1 / (1 - 0.9)
      array([10.], dtype=float32)

    References:
      Kingma & Ba, 2015, Adam, section 3, https://arxiv.org/abs/1412.6980
    """
    v.check_debiased_decay("bias_correction", "decay", decay)

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None, *, chain_step, **extra):
        del params, extra
        out = map_updates(lambda u: debiased(cast_to_result(u, u), decay, chain_step), updates)
        return out, state

    return counted("bias_correction", init, update)


class NesterovEmaState(NamedTuple):
    """NAdam's first moment ``mu`` (Optax's name).

    ``mu_product`` is the running product of PyTorch's warmed-up momentum
    factors; it is ``None`` in Optax's form (``momentum_decay=None``), where the
    product is :math:`\\beta^t`.
    """

    mu: Any
    mu_product: Any = None


def nesterov_ema(
    decay: float = 0.9,
    momentum_decay: float | None = None,
    accumulator_dtype: Any = None,
) -> CountedTransformation:
    r"""NAdam's first moment: a debiased Nesterov look-ahead of an EMA of the input.

    With :math:`m_t = \beta m_{t-1} + (1-\beta) u_t`, the output is

    .. math::

        \hat m_t = \frac{\mu_{t+1}\, m_t}{1 - \prod_{i\le t+1}\mu_i}
                 + \frac{(1-\mu_t)\, u_t}{1 - \prod_{i\le t}\mu_i}.

    With ``momentum_decay=None`` (Optax, Dozat 2016), :math:`\mu_t = \beta` and
    the products are :math:`\beta^t`, so
    :math:`\hat m_t = \beta m_t/(1-\beta^{t+1}) + (1-\beta) u_t/(1-\beta^t)`.
    With a float :math:`\psi` (PyTorch), the momentum warms up as
    :math:`\mu_t = \beta\,(1 - \tfrac12\, 0.96^{t\psi})`.

    The output is already debiased; follow it with a second-moment stage and a
    learning rate: ``chain(nesterov_ema(b1), scale_by_rms(b2, eps,
    eps_in_sqrt=False, bias_correction=True), scale_by_learning_rate(lr))``.

    Args:
      decay: :math:`\beta \in [0, 1)`.
      momentum_decay: ``None`` for Optax's constant momentum, or PyTorch's
        :math:`\psi \ge 0` (``torch.optim.NAdam`` default 4e-3).
      accumulator_dtype: dtype of the stored first moment.

    Example:
      >>> import jax.numpy as jnp, numpy as np, adaptix
      >>> opt = adaptix.nesterov_ema(0.9)
      >>> np.asarray(opt.update(jnp.ones(1), opt.init(jnp.zeros(1)))[0]).round(4)  # 0.9*0.1/0.19 + 0.1/0.1
      array([1.4737], dtype=float32)

    Note:
      PyTorch keeps the EMA with :math:`\beta` but weighs it with the warmed-up
      :math:`\mu_t`; the two formulations differ in every step, by a factor
      that tends to 1 as :math:`t\psi` grows.

    References:
      Dozat, 2016, https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ
    """
    owner = "nesterov_ema"
    v.check_debiased_decay(owner, "decay", decay)
    if momentum_decay is not None:
        v.check_nonnegative(owner, "momentum_decay", momentum_decay)
    check_storage(owner, "accumulator_dtype", accumulator_dtype, signed=True)
    warm_up = momentum_decay is not None

    def momentum_at(step, dtype):
        if not warm_up:
            return jnp.asarray(decay, dtype)
        return decay * (1.0 - 0.5 * jnp.asarray(0.96, dtype) ** (step.astype(dtype) * momentum_decay))

    def init(params):
        product = jnp.ones([], scalar_dtype(params)) if warm_up else None
        return NesterovEmaState(mu=tree_zeros_like(params, accumulator_dtype), mu_product=product)

    def update(updates, state, params=None, *, chain_step, **extra):
        del params, extra
        check_matches_state(updates, state.mu, owner)
        dtype = scalar_dtype(state.mu)
        mu_now = momentum_at(chain_step, dtype)
        mu_next = momentum_at(safe_increment(chain_step), dtype)
        if warm_up:
            product = state.mu_product * mu_now
        else:
            product = power(decay, chain_step, dtype)
        new_mu, stored = update_moment(ema_rule(decay), updates, state.mu)
        coef_mu = mu_next / (1.0 - product * mu_next)
        coef_u = (1.0 - mu_now) / (1.0 - product)
        out = map_updates(
            lambda u, m, s: cast_to_result(coef_mu.astype(m.dtype) * m + coef_u.astype(m.dtype) * u, u, s),
            updates, new_mu, state.mu,
        )
        new_state = NesterovEmaState(mu=stored, mu_product=product if warm_up else None)
        return out, new_state

    return counted(owner, init, update)


class LionMomentumState(NamedTuple):
    """Lion's momentum buffer (``mu``, as ``optax.scale_by_lion``'s)."""

    mu: Any


def lion_momentum(b1: float = 0.9, b2: float = 0.99, mu_dtype: Any = None) -> CountedTransformation:
    r"""Lion's interpolated momentum: the direction whose sign Lion follows.

    .. math::

        c_t = \beta_1 m_{t-1} + (1-\beta_1)\, u_t \ \ (\text{output}), \qquad
        m_t = \beta_2 m_{t-1} + (1-\beta_2)\, u_t.

    Lion is ``chain(lion_momentum(b1, b2), scale_by_sign(),
    add_decayed_weights(wd), scale_by_learning_rate(lr))``. It keeps a step
    counter, as ``optax.scale_by_lion`` does, though the update does not read it.

    Args:
      b1: interpolation weight of the buffer in the output, in ``[0, 1]``.
      b2: decay of the buffer, in ``[0, 1]``.
      mu_dtype: dtype of the stored buffer.

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> opt = adaptix.lion_momentum()
      >>> opt.update(jnp.ones(1), opt.init(jnp.zeros(1)))[0]  # (1 - b1) * u, b1 = 0.9 in float32
      Array([0.10000002], dtype=float32)

    References:
      Chen et al., 2023, Symbolic Discovery of Optimization Algorithms,
      https://arxiv.org/abs/2302.06675
    """
    owner = "lion_momentum"
    v.check_decay(owner, "b1", b1)
    v.check_decay(owner, "b2", b2)
    check_storage(owner, "mu_dtype", mu_dtype, signed=True)

    def init(params):
        return LionMomentumState(mu=tree_zeros_like(params, mu_dtype))

    def update(updates, state, params=None, *, chain_step, **extra):
        del params, extra, chain_step
        check_matches_state(updates, state.mu, owner)
        out = map_updates(lambda u, m: cast_to_result(ema_of(m, u, b1), u, m), updates, state.mu)
        _, stored = update_moment(ema_rule(b2), updates, state.mu)
        return out, LionMomentumState(mu=stored)

    return counted(owner, init, update)


class ParameterDifferenceMomentumState(NamedTuple):
    """The parameters seen at the previous update (:math:`w_{t-1}`)."""

    previous_params: Any


def parameter_difference_momentum(beta: float) -> Transformation:
    r"""Hinton's momentum as a parameter difference: adds :math:`\beta\,(w_t - w_{t-1})` to the input.

    Placed *after* the learning-rate stage, it turns a step :math:`-\eta_t g_t`
    into

    .. math::

        w_{t+1} = w_t - \eta_t \nabla f(w_t) + \beta\,(w_t - w_{t-1}),
        \qquad\text{so}\qquad
        \Delta_t = -\sum_{s \le t} \beta^{\,t-s}\, \eta_s\, g_s,

    where :math:`\Delta_t = w_{t+1} - w_t` is the applied update and
    :math:`w_t - w_{t-1} = \Delta_{t-1}` (0 at the first step). The difference is
    taken from the ``params`` passed to ``update``, so it is the update that was
    actually applied, whatever came after this stage.

    Momentum of the gradient *before* the learning rate (``sgd(lr, momentum)``,
    ``chain(trace(beta), scale_by_learning_rate(lr))``) gives instead
    :math:`\Delta'_t = -\eta_t \sum_{s \le t} \beta^{t-s} g_s`. The two coincide
    for a constant :math:`\eta`; under a schedule they differ by

    .. math::

        \Delta_t - \Delta'_t = \sum_{s \le t} \beta^{\,t-s}\,(\eta_t - \eta_s)\, g_s:

    after a drop of the learning rate, parameter-difference momentum keeps
    moving with the old, larger velocity for about :math:`1/(1-\beta)` steps
    (Goyal et al.'s "momentum correction" rescales the buffer to avoid exactly
    this).

    Args:
      beta: :math:`\beta \in [0, 1)`.

    Example:
      >>> import jax.numpy as jnp, optax, adaptix
      >>> opt = adaptix.chain(adaptix.scale_by_learning_rate(0.1), adaptix.parameter_difference_momentum(0.9))
      >>> w = jnp.zeros(1)
      >>> state = opt.init(w)
      >>> for _ in range(2):
      ...     u, state = opt.update(jnp.ones(1), state, w)
      ...     w = optax.apply_updates(w, u)
      >>> u  # -0.1 + 0.9 * (-0.1): as sgd(0.1, momentum=0.9) for a constant rate
      Array([-0.19], dtype=float32)

    Note:
      When this stage is the last one and every update is applied, it equals
      ``trace(beta)`` placed after the learning rate, up to the rounding of
      :math:`w_t - w_{t-1}` (which loses the low bits of the step when
      :math:`|w| \gg |\Delta|`). It needs ``params``. PyTorch's and Optax's SGD
      put the momentum before the learning rate (:math:`\Delta'_t`).

    References:
      Rumelhart, Hinton & Williams, 1986, Learning representations by
      back-propagating errors, https://doi.org/10.1038/323533a0;
      Sutskever, Martens, Dahl & Hinton, 2013, eq. (1),
      https://proceedings.mlr.press/v28/sutskever13.html;
      Goyal et al., 2017, section 2.1 (momentum correction),
      https://arxiv.org/abs/1706.02677
    """
    owner = "parameter_difference_momentum"
    v.check_decay(owner, "beta", beta)

    def init(params):
        return ParameterDifferenceMomentumState(
            previous_params=jax.tree.map(lambda p: jnp.array(p, copy=True), params))

    def update(updates, state, params=None, **extra):
        del extra
        if params is None:
            raise ValueError(
                f"{owner}: params are required (call update(updates, state, params)); the momentum is "
                "beta * (params - params at the previous update)."
            )
        check_matches_state(updates, state.previous_params, owner)
        out = map_updates(lambda u, p, q: cast_to_result(u + beta * (p - q), u, q), updates, params,
                          state.previous_params)
        new_state = ParameterDifferenceMomentumState(previous_params=cast_like(params, state.previous_params))
        return out, new_state

    return stage(owner, init, update)
