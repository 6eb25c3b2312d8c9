"""The transformation type, the ``grad`` keyword protocol and shared helpers.

An adaptix transformation is an :class:`optax.GradientTransformationExtraArgs`
(so every Optax combinator and Flax accepts it) whose ``update`` also takes an
optional keyword ``grad``: the gradient that entered the enclosing
:func:`adaptix.chain`. Statistic stages (second moments, running maxima, sign
agreement) measure ``grad`` and rescale their input; stages used alone measure
their input.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

try:  # experimental in JAX; without it, state under jit is laid out by the partitioner alone
    from jax.experimental.shard_alike import shard_alike
except ImportError:  # pragma: no cover
    shard_alike = None

Updates = Any
Params = Any


class Transformation(optax.GradientTransformationExtraArgs):
    """An Optax ``GradientTransformationExtraArgs`` that understands ``grad=``.

    It is a plain ``(init, update)`` named tuple, so it can be used wherever
    Optax expects a gradient transformation. :func:`adaptix.chain` hands
    ``grad`` only to stages of this type; any other Optax transformation in a
    chain receives the remaining extra keywords unchanged.
    """

    __slots__ = ()


class EmptyState(NamedTuple):
    """State of a stateless transformation."""


class CountState(NamedTuple):
    """A saturating step counter (int32)."""

    count: jax.Array


def init_empty_state(params: Params) -> EmptyState:
    del params
    return EmptyState()


def zero_count() -> jax.Array:
    return jnp.zeros([], jnp.int32)


def safe_increment(count: jax.Array) -> jax.Array:
    """``count + 1``, saturating at the dtype's maximum instead of overflowing."""
    return optax.safe_increment(count)


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


def power(decay: Any, count: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """``decay ** count`` in ``dtype`` (float32 or wider)."""
    return jnp.asarray(decay, dtype) ** count.astype(dtype)


def abs_sq(x: jax.Array) -> jax.Array:
    """``|x|**2``: the squared modulus, real for complex ``x``."""
    if jnp.iscomplexobj(x):
        return jnp.square(jnp.real(x)) + jnp.square(jnp.imag(x))
    return jnp.square(x)


def full_like_sharded(x: Any, value: Any, dtype: Any = None) -> jax.Array:
    """An array of ``x``'s shape filled with ``value``, laid out like ``x``.

    Optimizer state must live where the parameters live: a moment of a
    parameter sharded over a mesh must be sharded the same way. Eagerly,
    ``jnp.full_like`` already copies a committed array's sharding. Under
    ``jax.jit`` (and other tracing) with automatic (GSPMD/Shardy) sharding the
    tracer's type carries no sharding, and a filled array does not depend on
    ``x``: ``jit`` prunes ``x`` and the zeros land on one device. ``shard_alike``
    puts ``x`` and the new array in one sharding group, so the partitioner
    gives them the same sharding without reading ``x``'s values (NaN or Inf
    parameters still give exact fills). With explicit sharding
    (``jax.sharding.AxisType.Explicit``) the type carries it and
    ``jnp.full_like`` copies it.
    """
    out = jnp.full_like(x, value, dtype=dtype)
    if shard_alike is not None and isinstance(x, jax.core.Tracer) and jnp.shape(x) == jnp.shape(out):
        _, out = shard_alike(x, out)
    return out


def tree_zeros_like(tree: Any, dtype: Any = None) -> Any:
    """Zeros shaped, typed (or of ``dtype``) and sharded like each leaf of ``tree``.

    Never weakly typed, even for a Python-scalar leaf: the updated state is cast to the
    initial state's dtype, so the state's types stay the same across steps and a jitted
    update is traced once.
    """
    return jax.tree.map(lambda x: full_like_sharded(x, 0, jnp.result_type(x) if dtype is None else dtype), tree)


def tree_real_full_like(tree: Any, value: Any, dtype: Any = None) -> Any:
    """Arrays filled with ``value``, real even where ``tree`` is complex.

    Second moments of complex parameters are moments of ``|g|**2`` and live in
    the matching real dtype (or in the real dtype of ``dtype`` if given). Each
    array is sharded like its leaf (see :func:`full_like_sharded`).
    """
    return jax.tree.map(
        lambda x: full_like_sharded(x, value, real_dtype_of(jnp.result_type(x) if dtype is None else dtype)), tree
    )


def widened(stored: jax.Array, incoming: jax.Array) -> jax.Array:
    """A stored state leaf in the wider of its dtype and the incoming leaf's.

    A moment kept in a narrow ``accumulator_dtype`` (bfloat16) is updated in
    the incoming gradient's precision and only rounded when stored again;
    ``decay * stored`` in bfloat16 would add a rounding error per step.
    """
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
    A no-op when the dtypes agree.
    """
    return jax.tree.map(lambda x, s: x.astype(jnp.result_type(s)).astype(x.dtype), tree, state_tree)


def cast_like(tree: Any, like: Any) -> Any:
    """Casts every leaf of ``tree`` to the dtype of the matching leaf of ``like``."""
    return jax.tree.map(lambda x, y: jnp.asarray(x).astype(jnp.result_type(y)), tree, like)


def cast_to(tree: Any, dtype: Any) -> Any:
    if dtype is None:
        return tree
    return jax.tree.map(lambda x: x.astype(dtype), tree)


def check_same_structure(tree: Any, other: Any, name: str, other_name: str) -> None:
    """Raises ``ValueError`` naming both structures when two trees differ.

    Runs at trace time only (it looks at tree structure, not values).
    """
    tree_def = jax.tree.structure(tree)
    other_def = jax.tree.structure(other)
    if tree_def != other_def:
        raise ValueError(
            f"The {name} tree does not match the {other_name} tree.\n"
            f"  {name}: {tree_def}\n  {other_name}: {other_def}"
        )


def measured(updates: Updates, grad: Updates | None) -> Updates:
    """The gradient a statistic stage measures: ``grad`` if given, else its input."""
    if grad is None:
        return updates
    check_same_structure(updates, grad, "updates", "grad")
    return grad


def real_dtype_of(dtype: Any) -> jnp.dtype:
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        return jnp.finfo(dtype).dtype
    return dtype


ScalarOrSchedule = float | jax.Array | Callable[[jax.Array], jax.Array]


def check_matches_state(updates: Updates, state_tree: Any, owner: str) -> None:
    """Raises ``ValueError`` when the updates do not match the state's tree.

    This catches the common mistake of updating with gradients of a different
    model (or a differently nested tree) than the one the state was built for.
    """
    check_same_structure(updates, state_tree, f"{owner}: updates", "optimizer state")
