"""Stateless (or count-only) rescalings: step sizes, weight decay, signs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from adaptix import _validate as v
from adaptix._base import ScalarOrSchedule, Transformation, counted, init_empty_state, stage
from adaptix._tree import check_matches, map_updates, result_dtype


def _times(factor: Any, u: jax.Array) -> jax.Array:
    """``factor * u`` in the dtype Optax's ``factor * u`` has for a Python-number factor.

    A factor given as an array (as under ``optax.inject_hyperparams``) is cast
    to that dtype first, so it never widens bf16 updates to float32.
    """
    dtype = result_dtype(u)
    return jnp.asarray(factor, dtype) * u.astype(dtype)


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
        return map_updates(lambda u: _times(step_size, u), updates), state

    return stage("scale", init_empty_state, update, stateless=True)


def scale_by_learning_rate(
    learning_rate: ScalarOrSchedule, *, flip_sign: bool = True
) -> Transformation:
    r"""Multiplies the input by :math:`-\eta_t` (a descent step) or :math:`\eta_t`.

    .. math::

        \text{out}_t = -\eta_t\, u_t \quad (\text{flip\_sign}),\qquad
        \eta_t = \eta \ \text{or}\ \text{schedule}(t-1).

    A schedule reads the chain's step counter (one per optimizer); a stage
    used alone with a schedule counts itself.

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

    def update(updates, state, params=None, *, chain_step, **extra):
        del params, extra
        rate = sign * learning_rate(chain_step - 1)
        return map_updates(lambda u: _times(rate, u), updates), state

    return counted(owner, init_empty_state, update)


def _mask_tree(owner: str, mask: Any, params: Any) -> Any:
    """The mask as a tree (calling it on ``params`` if it is a function), checked against ``params``."""
    tree = mask(params) if callable(mask) else mask
    try:
        jax.tree.map(lambda _m, _p: None, tree, params, is_leaf=lambda x: x is None)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"{owner}: the mask tree does not match the params tree (it must have the params' "
            "structure, or a prefix of it, with a boolean per leaf).\n"
            f"  mask: {jax.tree.structure(tree)}\n  params: {jax.tree.structure(params)}"
        ) from err
    return tree


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
      weight_decay: :math:`\lambda \ge 0`, or an Optax schedule (it reads the
        chain's step counter).
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
    zero = isinstance(weight_decay, (int, float)) and weight_decay == 0

    def decayed(u, p, rate):
        dtype = result_dtype(u, p)
        return u.astype(dtype) + jnp.asarray(rate, dtype) * jnp.asarray(p, dtype)

    def update(updates, state, params=None, *, chain_step=None, **extra):
        del extra
        if params is None:
            if zero:  # nothing to add: as convenient as a chain without this stage
                return map_updates(lambda u: u.astype(result_dtype(u)), updates), state
            raise ValueError(f"{owner}: params are required (call update(updates, state, params)).")
        check_matches(updates, params, owner, "updates", "params")
        rate = weight_decay(chain_step - 1) if scheduled else weight_decay
        return map_updates(lambda u, p: decayed(u, p, rate), updates, params), state

    init = init_empty_state
    if mask is not None:
        masked = optax.masked(optax.GradientTransformationExtraArgs(init_empty_state, update), mask)

        def masked_init(params):
            _mask_tree(owner, mask, params)
            return masked.init(params)

        init = masked_init

        def masked_update(updates, state, params=None, **extra):
            if params is not None:
                _mask_tree(owner, mask, params)
            return masked.update(updates, state, params, **extra)

        update = masked_update

    if scheduled:
        return counted(owner, init, update)
    return stage(owner, init, update, stateless=mask is None)


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
        return map_updates(jnp.sign, updates), state

    return stage("scale_by_sign", init_empty_state, update, stateless=True)


clip_by_sign = scale_by_sign
"""Another name for :func:`scale_by_sign` (sign-SGD's per-coordinate sign)."""
