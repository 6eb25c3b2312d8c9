"""Step-size stages: per-coordinate steps learned from the run (AdaDelta's update RMS, Rprop)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptix import _validate as v
from adaptix._accumulators import ema_of_squares_rule, for_leaf, update_moment, widened, working
from adaptix._base import Transformation, stage
from adaptix._quantized import check_storage
from adaptix._tree import (
    cast_like,
    cast_to_result,
    check_matches_state,
    map_state,
    map_updates,
    measured,
    tree_real_full_like,
    tree_zeros_like,
)


class ScaleByUpdateRmsState(NamedTuple):
    """EMA of the squared outputs (AdaDelta's :math:`E[\\Delta x^2]`)."""

    e_x: Any


def scale_by_update_rms(rho: float = 0.9, eps: float = 1e-6, *, accumulator_dtype: Any = None) -> Transformation:
    r"""Multiplies the input by the RMS of this stage's own past outputs (AdaDelta's numerator).

    .. math::

        \Delta_t = u_t \sqrt{E[\Delta^2]_{t-1} + \epsilon}, \qquad
        E[\Delta^2]_t = \rho\, E[\Delta^2]_{t-1} + (1-\rho)\, |\Delta_t|^2.

    After :func:`scale_by_rms` (which supplies :math:`g_t/\sqrt{E[g^2]_t+\epsilon}`)
    this restores the units of the parameters, so that no learning rate is
    needed: AdaDelta is ``chain(scale_by_rms(rho, eps),
    scale_by_update_rms(rho, eps), scale_by_learning_rate(1.0))``.

    Args:
      rho: :math:`\rho \in [0, 1]`.
      eps: ``>= 0``; it also sets the size of the first steps,
        :math:`\sqrt{\epsilon}` times the normalised gradient.
      accumulator_dtype: dtype of the stored :math:`E[\Delta^2]` (``None``:
        the parameters' real dtype).

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> opt = adaptix.scale_by_update_rms(eps=0.25)
      >>> opt.update(jnp.ones(1), opt.init(jnp.zeros(1)))[0]  # 1 * sqrt(0 + 0.25)
      Array([0.5], dtype=float32)

    References:
      Zeiler, 2012, ADADELTA: An Adaptive Learning Rate Method,
      https://arxiv.org/abs/1212.5701
    """
    owner = "scale_by_update_rms"
    v.check_decay(owner, "rho", rho)
    v.check_nonnegative(owner, "eps", eps)

    check_storage(owner, "accumulator_dtype", accumulator_dtype)

    def init(params):
        return ScaleByUpdateRmsState(e_x=tree_real_full_like(params, 0.0, accumulator_dtype))

    def update(updates, state, params=None, **extra):
        del params, extra
        check_matches_state(updates, state.e_x, owner)
        out = map_updates(lambda u, e: cast_to_result(u * jnp.sqrt(widened(e, u) + for_leaf(working(eps, e), e)), u, e),
                          updates, state.e_x)
        _, stored = update_moment(ema_of_squares_rule(rho), out, state.e_x)
        return out, ScaleByUpdateRmsState(e_x=stored)

    return stage(owner, init, update)


class ScaleByRpropState(NamedTuple):
    """Per-coordinate step sizes and the previous gradient (zeroed after a sign flip)."""

    step_sizes: Any
    prev_grad: Any


def scale_by_rprop(
    learning_rate: float,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
) -> Transformation:
    r"""Rprop: a per-coordinate step size that grows while the gradient keeps its sign.

    With :math:`s = \operatorname{sign}(g_t\, g_{t-1})`:

    .. math::

        \Delta_t = \operatorname{clip}\big(\Delta_{t-1}\cdot
            \{\eta_+ \text{ if } s>0;\ \eta_- \text{ if } s<0;\ 1 \text{ if } s=0\},
            \ \Delta_{\min}, \Delta_{\max}\big), \\
        \text{out}_t = \operatorname{sign}(u_t)\, \Delta_t \ \ (0 \text{ where } s<0), \qquad
        g_t \leftarrow 0 \text{ where } s<0 \ \text{(stored as the previous gradient)}.

    The sign agreement is measured on ``chain_input``; the output takes the sign of
    the input. Follow with ``scale(-1.0)`` to descend (the learning rate is the
    initial step size and lives in the state).

    Args:
      learning_rate: the initial step size :math:`\Delta_0 \ge 0`.
      eta_minus: shrink factor, :math:`0 < \eta_- < 1`.
      eta_plus: growth factor, :math:`\eta_+ > 1`.
      min_step_size: :math:`0 < \Delta_{\min} \le \Delta_{\max}`.
      max_step_size: :math:`\Delta_{\max}`.

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> opt = adaptix.scale_by_rprop(0.1)
      >>> s = opt.init(jnp.zeros(1))
      >>> u, s = opt.update(jnp.ones(1), s)
      >>> u, s = opt.update(jnp.ones(1), s)
      >>> u  # same sign twice: 0.1 * 1.2
      Array([0.12], dtype=float32)

    Note:
      Equals ``torch.optim.Rprop`` exactly (the first step is already
      :math:`\Delta_0`, and the step sizes are clipped at every step).
      ``optax.scale_by_rprop`` applies each step one step late: its first
      update is zero and update :math:`t+1` is PyTorch's update :math:`t`.

    References:
      Riedmiller & Braun, 1993, https://doi.org/10.1109/ICNN.1993.298623
    """
    owner = "scale_by_rprop"
    v.check_rate(owner, "learning_rate", learning_rate)
    if callable(learning_rate):
        raise TypeError(f"{owner}: learning_rate is Rprop's initial step size and cannot be a schedule.")
    v.check_range(owner, "eta_minus", eta_minus, 0.0, 1.0, low_open=True, high_open=True)
    v.check_range(owner, "eta_plus", eta_plus, 1.0, low_open=True)
    v.check_range(owner, "min_step_size", min_step_size, 0.0, low_open=True)
    v.check_range(owner, "max_step_size", max_step_size, 0.0, low_open=True)
    if not any(isinstance(x, jax.core.Tracer) for x in (min_step_size, max_step_size)):
        if float(min_step_size) > float(max_step_size):
            raise ValueError(
                f"{owner}: min_step_size must be <= max_step_size, got "
                f"min_step_size={min_step_size!r} > max_step_size={max_step_size!r}."
            )

    def init(params):
        return ScaleByRpropState(
            step_sizes=tree_real_full_like(params, learning_rate),
            prev_grad=tree_zeros_like(params),
        )

    def update(updates, state, params=None, *, chain_input=None, **extra):
        del params, extra
        g = measured(updates, chain_input, owner)
        check_matches_state(g, state.prev_grad, owner)
        agreement = map_updates(lambda x, p: jnp.sign(x * p), g, state.prev_grad)
        def hyper(value, leaf):
            return for_leaf(working(value, leaf), leaf)

        def factor(s):
            return jnp.where(s > 0, hyper(eta_plus, s), jnp.where(s < 0, hyper(eta_minus, s), 1))

        def clipped(f, d):
            return jnp.clip(d * f, hyper(min_step_size, d), hyper(max_step_size, d))

        factors = map_updates(factor, agreement)
        step_sizes = map_state(clipped, factors, state.step_sizes)
        out = map_updates(
            lambda u, s, d: cast_to_result(jnp.where(s < 0, 0.0, jnp.sign(u) * d), u, d),
            updates, agreement, step_sizes,
        )
        prev_grad = map_state(lambda x, p, s: jnp.where(s < 0, 0.0, x), g, state.prev_grad, agreement)
        new_state = ScaleByRpropState(
            step_sizes=cast_like(step_sizes, state.step_sizes),
            prev_grad=cast_like(prev_grad, state.prev_grad),
        )
        return out, new_state

    return stage(owner, init, update)
