"""Accumulators: stored moments, updated in the working precision and rounded as stored.

Every moment a stage keeps (an EMA of the gradient, of its square, a running
sum or maximum) is updated by one helper, :func:`update_moment`: the stored
leaf is widened to the working precision (the wider of its dtype and the
incoming one), the stage's per-leaf rule gives the new value, which is
rounded to the stored dtype (or quantized, :func:`adaptix.quantized`) and used as stored. The rules of the library are
:func:`ema_rule` and :func:`ema_of_squares_rule`; :func:`debias` undoes the
zero-initialisation bias of an EMA. :func:`moment_sqrt` is the square root of a second moment,
with a derivative that stays finite where the moment is still 0 (safe meta-gradients).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from adaptix._quantized import READ_DTYPE, _read, dequantize, is_quantized
from adaptix._tree import abs_sq, map_state, real_dtype_of, stored_as

#: ``rule(stored, incoming) -> new``: one leaf's update, ``stored`` already in the working precision.
Rule = Callable[[jax.Array, jax.Array], jax.Array]


def scalar_dtype(tree: Any) -> jnp.dtype:
    """The dtype used for per-step scalars such as ``decay ** t``.

    float32, or wider when the tree holds wider floating leaves (float64 under
    ``jax_enable_x64``): ``decay ** t`` is never computed in bf16/f16, where
    ``0.999 ** t`` rounds to 1 and the correction divides by zero.
    """
    dtype = jnp.dtype(jnp.float32)
    for leaf in jax.tree.leaves(tree):
        leaf_dtype = jnp.result_type(leaf)
        if jnp.issubdtype(leaf_dtype, jnp.complexfloating):
            leaf_dtype = jnp.finfo(leaf_dtype).dtype
        if jnp.issubdtype(leaf_dtype, jnp.floating) and jnp.finfo(leaf_dtype).bits > jnp.finfo(dtype).bits:
            dtype = jnp.dtype(leaf_dtype)
    return dtype


def working(value: Any, like: Any) -> jax.Array:
    """A hyperparameter as a scalar of the working precision of ``like`` (see :func:`scalar_dtype`).

    Every expression of hyperparameters (``1 - decay``, ``eps + eps_root``, ``2 / (1 - decay)``)
    is computed in that precision, float32 or wider, and :func:`for_leaf` rounds the result once
    where it meets a leaf. Whether a hyperparameter was given as a Python number or as an array
    (under :func:`adaptix.inject_hyperparams`, or traced), the updates are then the same bit for
    bit; and ``1 - 0.999`` is not computed in bfloat16, where 0.999 rounds to 1.
    """
    return jnp.asarray(value, scalar_dtype(like))


def for_leaf(scalar: jax.Array, leaf: Any) -> jax.Array:
    """A working-precision scalar rounded to the (real) dtype of ``leaf``, so the leaf's arithmetic stays in its
    dtype, as with a Python number (a float16 moment is updated in float16); unchanged for an integer leaf."""
    dtype = jnp.result_type(leaf)
    if not jnp.issubdtype(dtype, jnp.inexact):
        return scalar
    return scalar.astype(real_dtype_of(dtype))


def power(decay: Any, count: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """``decay ** count`` in ``dtype`` (float32 or wider)."""
    return jnp.asarray(decay, dtype) ** count.astype(dtype)


def widened(stored: Any, incoming: jax.Array) -> jax.Array:
    """A stored state leaf in the wider of its dtype and the incoming leaf's.

    A moment kept in a narrow ``accumulator_dtype`` (bfloat16) is updated in
    the incoming gradient's precision and only rounded when stored again;
    ``decay * stored`` in bfloat16 would add a rounding error per step. A quantized leaf is read
    in float32 first (:func:`adaptix.dequantize`).
    """
    stored = dequantize(stored)
    incoming_dtype = jnp.result_type(incoming)
    if not jnp.issubdtype(stored.dtype, jnp.complexfloating):
        incoming_dtype = real_dtype_of(incoming_dtype)  # a real moment of complex gradients stays real
    return stored.astype(jnp.promote_types(stored.dtype, incoming_dtype))


def as_stored(tree: Any, state_tree: Any) -> Any:
    """Each leaf rounded to the dtype of the matching state leaf, in its own dtype.

    A moment kept in a narrow dtype is used downstream as it is stored, so that
    the state alone determines the step. This also keeps XLA from copying the
    old moment: a step that read both the old narrow buffer (to recompute the
    wide moment) and wrote the new one in place would need a full-size copy.
    A no-op when the dtypes agree. A quantized state leaf quantizes the leaf and reads it back.
    """
    return jax.tree.map(lambda x, s: _stored(x, s).moment, tree, state_tree)


class _Stored:
    """One leaf's new value to compute with (``moment``, as stored) and to store (``kept``); a pytree leaf."""

    __slots__ = ("moment", "kept")

    def __init__(self, moment: Any, kept: Any):
        self.moment, self.kept = moment, kept


def _stored(new: Any, stored: Any) -> _Stored:
    """``new`` stored as ``stored`` is, and read back in ``new``'s dtype (a stored leaf is read as it is)."""
    if is_quantized(stored):
        kept = stored_as(new, stored)
        return _Stored(_read(kept).astype(READ_DTYPE if is_quantized(new) else new.dtype), kept)
    moment = new.astype(stored.dtype).astype(new.dtype)
    return _Stored(moment, moment.astype(stored.dtype))


def update_moment(rule: Rule, incoming: Any, stored: Any) -> tuple[Any, Any]:
    """The new value of a stored moment: ``rule(s, x)`` leaf by leaf.

    ``s`` is the stored leaf widened to the working precision (:func:`widened`),
    ``x`` the incoming leaf; where ``x`` is ``None`` the stored leaf is kept.

    Returns:
      ``(moment, new_stored)``: the moment to compute with, in the working
      precision but rounded as stored (:func:`as_stored`; read back from its codes where the
      moment is quantized), and the leaves to store, in the stored dtypes.
    """
    new = map_state(lambda x, s: rule(widened(s, x), x), incoming, stored)
    pairs = jax.tree.map(_stored, new, stored, is_leaf=is_quantized)
    return jax.tree.map(lambda p: p.moment, pairs), jax.tree.map(lambda p: p.kept, pairs)


def ema_rule(decay: Any) -> Rule:
    r""":math:`s \mapsto \beta s + (1-\beta) x`: an exponential moving average of the input."""

    def rule(s, x):
        beta = working(decay, s)
        return for_leaf(1 - beta, s) * x + for_leaf(beta, s) * s

    return rule


def ema_of_squares_rule(decay: Any) -> Rule:
    r""":math:`s \mapsto \beta s + (1-\beta) |x|^2`: an exponential moving average of the squared modulus."""

    def rule(s, x):
        beta = working(decay, s)
        return for_leaf(1 - beta, s) * abs_sq(x) + for_leaf(beta, s) * s

    return rule


def ema_of(stored: jax.Array, x: jax.Array, decay: Any) -> jax.Array:
    r""":math:`\beta s + (1-\beta) x` for one leaf, not stored (Lion's interpolation, for one)."""
    return ema_rule(decay)(widened(stored, x), x)


def debias(x: jax.Array, decay: Any, step: jax.Array) -> jax.Array:
    r""":math:`x / (1 - \beta^t)`, with :math:`\beta^t` computed in float32 or wider."""
    correction = 1.0 - power(decay, step, scalar_dtype(x))
    return x / correction.astype(x.dtype)


@jax.custom_jvp
def moment_sqrt(x: jax.Array) -> jax.Array:
    r""":math:`\sqrt{x}`, with the derivative 0 at :math:`x = 0` (a second moment that is still 0).

    The values are ``jnp.sqrt``'s, bit for bit; only the derivative differs. A second moment is
    0 exactly where every gradient so far was 0, and there its tangent (with respect to a learning
    rate, say) :math:`\dot v = \sum 2 g \dot g` is 0 too; the chain rule's
    :math:`\dot v / (2\sqrt{v}) = 0 / 0` would make every meta-gradient NaN. The limit of the
    product is 0, which this rule gives (it is linear in the tangent, so reverse mode works).
    """
    return jnp.sqrt(x)


@moment_sqrt.defjvp
def _moment_sqrt_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    y = jnp.sqrt(x)
    positive = x > 0
    return y, dx * jnp.where(positive, 0.5 / jnp.where(positive, y, 1), 0).astype(dx.dtype)


@jax.custom_jvp
def moment_power(x: jax.Array, p: jax.Array) -> jax.Array:
    r""":math:`x^p` of a second moment :math:`x \ge 0`, with the derivative 0 at :math:`x = 0`.

    As :func:`moment_sqrt` (which is ``moment_power(x, 0.5)`` up to rounding) for another exponent
    (:func:`adaptix.scale_by_rms`'s ``power``): :math:`\partial x^p / \partial x = p x^{p-1}` is
    infinite at 0 for :math:`p < 1`, and there the moment's tangent is 0 too, so the product's limit,
    0, is used. The derivative in :math:`p` is :math:`x^p \log x`, 0 at :math:`x = 0`.
    """
    return jnp.power(x, p)


@moment_power.defjvp
def _moment_power_jvp(primals, tangents):
    (x, p), (dx, dp) = primals, tangents
    y = jnp.power(x, p)
    positive = x > 0
    safe_x = jnp.where(positive, x, 1)
    dy_dx = jnp.where(positive, p * jnp.power(safe_x, p - 1), 0)
    dy_dp = jnp.where(positive, y * jnp.log(safe_x), 0)
    return y, (dx * dy_dx + dp * dy_dp).astype(y.dtype)
