"""Stateless (or count-only) rescalings: step sizes, weight decay, signs."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adaptix import _validate as v
from adaptix._base import (
    EmptyState,
    ScalarOrSchedule,
    Transformation,
    check_same_structure,
    init_empty_state,
    safe_increment,
    zero_count,
)


def scale(step_size: float) -> Transformation:
    r"""Multiplies the input by a constant: :math:`\text{out} = \alpha\, u`.

    Args:
      step_size: the finite real factor :math:`\alpha` (may be negative).

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> adaptix.scale(-2.0).update(jnp.ones(2), None)[0]
      Array([-2., -2.], dtype=float32)
    """
    v.check_range("scale", "step_size", step_size)

    def update(updates, state, params=None, **extra):
        del params, extra
        return jax.tree.map(lambda u: (step_size * u).astype(u.dtype), updates), state

    return Transformation(init_empty_state, update)


class ScaleByScheduleState(NamedTuple):
    """Number of updates applied so far (the schedule's argument)."""

    count: jax.Array


def scale_by_learning_rate(
    learning_rate: ScalarOrSchedule, *, flip_sign: bool = True
) -> Transformation:
    r"""Multiplies the input by :math:`-\eta_t` (a descent step) or :math:`\eta_t`.

    .. math::

        \text{out}_t = -\eta_t\, u_t \quad (\text{flip\_sign}),\qquad
        \eta_t = \eta \ \text{or}\ \text{schedule}(t-1).

    Args:
      learning_rate: a finite number ``>= 0`` or an Optax schedule
        (``count -> rate``, called with the number of previous updates).
      flip_sign: negate, so that ``optax.apply_updates`` descends.

    Example:
      >>> import jax.numpy as jnp, optax, adaptix
      >>> opt = adaptix.scale_by_learning_rate(optax.linear_schedule(1.0, 0.0, 10))
      >>> opt.update(jnp.ones(1), opt.init(jnp.zeros(1)))[0]
      Array([-1.], dtype=float32)

    Note:
      Unlike ``optax.scale_by_learning_rate``, ``None`` is rejected: Optax
      turns it into the identity, which is how ``optax.adadelta()`` ends up
      *ascending* the loss.
    """
    owner = "scale_by_learning_rate"
    if learning_rate is None:
        raise TypeError(
            f"{owner}: learning_rate must be a number >= 0 or a schedule, got None "
            "(use 1.0 for a unit step)."
        )
    v.check_rate(owner, "learning_rate", learning_rate)
    v.check_bool(owner, "flip_sign", flip_sign)
    sign = -1.0 if flip_sign else 1.0

    if not callable(learning_rate):
        return scale(sign * learning_rate)

    def init(params):
        del params
        return ScaleByScheduleState(count=zero_count())

    def update(updates, state, params=None, **extra):
        del params, extra
        rate = sign * learning_rate(state.count)
        out = jax.tree.map(lambda u: jnp.asarray(rate, u.dtype) * u, updates)
        return out, ScaleByScheduleState(count=safe_increment(state.count))

    return Transformation(init, update)


class AddDecayedWeightsState(NamedTuple):
    """Number of updates so far (the weight-decay schedule's argument)."""

    count: jax.Array


def add_decayed_weights(
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any | Callable[[Any], Any] | None = None,
) -> Transformation:
    r"""Adds the parameters times a weight decay: :math:`\text{out} = u + \lambda\, p`.

    Where it stands decides the algorithm: *before* the statistics, in an outer
    chain, it is an L2 penalty whose gradient the moments see (Adam+L2,
    ``torch.optim.Adam(weight_decay=...)``):
    ``chain(add_decayed_weights(wd), adam(lr))``; *after* them it is decoupled
    weight decay (AdamW): ``chain(..., bias_correction(b1),
    add_decayed_weights(wd), scale_by_learning_rate(lr))``.

    Args:
      weight_decay: :math:`\lambda \ge 0`, or an Optax schedule.
      mask: a tree of booleans (or a prefix of the params tree), or a function
        of the params returning one: ``True`` where decay applies. Handled by
        ``optax.masked``.

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> opt = adaptix.add_decayed_weights(0.1)
      >>> opt.update(jnp.zeros(2), opt.init(None), jnp.array([1.0, -2.0]))[0]
      Array([ 0.1, -0.2], dtype=float32)

    References:
      Loshchilov & Hutter, 2019, Decoupled Weight Decay Regularization,
      https://arxiv.org/abs/1711.05101
    """
    owner = "add_decayed_weights"
    v.check_rate(owner, "weight_decay", weight_decay)
    scheduled = callable(weight_decay)

    def init(params):
        del params
        return AddDecayedWeightsState(count=zero_count()) if scheduled else EmptyState()

    def update(updates, state, params=None, **extra):
        del extra
        if params is None:
            raise ValueError(f"{owner}: params are required (call update(updates, state, params)).")
        check_same_structure(updates, params, f"{owner}: updates", "params")
        if scheduled:
            rate = weight_decay(state.count)
            state = AddDecayedWeightsState(count=safe_increment(state.count))
        else:
            rate = weight_decay
        out = jax.tree.map(lambda u, p: (u + rate * p).astype(u.dtype), updates, params)
        return out, state

    if mask is None:
        return Transformation(init, update)
    masked = optax.masked(optax.GradientTransformation(init, update), mask)

    def masked_update(updates, state, params=None, **extra):
        extra.pop("grad", None)
        return masked.update(updates, state, params, **extra)

    return Transformation(masked.init, masked_update)


def scale_by_sign() -> Transformation:
    r"""Replaces each coordinate by its sign: :math:`\text{out} = \operatorname{sign}(u)`.

    With ``scale_by_learning_rate`` this is sign-SGD; after an EMA it is Signum;
    after ``lion_momentum`` it is Lion. ``sign(0) = 0``.

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> adaptix.scale_by_sign().update(jnp.array([-3.0, 0.0, 1e-9]), None)[0]
      Array([-1.,  0.,  1.], dtype=float32)

    References:
      Bernstein et al., 2018, signSGD, https://arxiv.org/abs/1802.04434
    """

    def update(updates, state, params=None, **extra):
        del params, extra
        return jax.tree.map(jnp.sign, updates), state

    return Transformation(init_empty_state, update)


clip_by_sign = scale_by_sign
"""Another name for :func:`scale_by_sign` (sign-SGD's per-coordinate sign)."""
