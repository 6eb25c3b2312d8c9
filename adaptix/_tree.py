"""Per-leaf maps and checks over pytrees: what every stage does leaf by leaf.

* :func:`map_updates` / :func:`map_state`: ``None`` leaves of the updates pass
  through (as in Optax) and the state keeps its structure.
* :func:`result_dtype` / :func:`cast_to_result`: Optax's dtype rule for a
  stage's output.
* :func:`check_matches` / :func:`measured`: trees that do not fit are refused
  with the leaf's path and both shapes.
* :func:`tree_zeros_like` / :func:`tree_real_full_like`: state leaves laid out
  like the parameters (also under ``jit`` with sharded parameters), or quantized
  (:func:`adaptix.quantized`): a :class:`~adaptix.QuantizedArray` is one leaf of a moment's tree
  for every map and check here, as an array is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from adaptix._quantized import Quantized, is_quantized, lift_boxes, quantized_full_like, requantize

try:  # experimental in JAX; without it, state under jit is laid out by the partitioner alone
    from jax.experimental.shard_alike import shard_alike
except ImportError:  # pragma: no cover
    shard_alike = None

Updates = Any


def abs_sq(x: jax.Array) -> jax.Array:
    """``|x|**2``: the squared modulus, real for complex ``x``."""
    if jnp.iscomplexobj(x):
        return jnp.square(jnp.real(x)) + jnp.square(jnp.imag(x))
    return jnp.square(x)


def real_dtype_of(dtype: Any) -> jnp.dtype:
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        return jnp.finfo(dtype).dtype
    return dtype


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
    update is traced once. A :class:`~adaptix.Quantized` ``dtype`` stores a first moment: the
    signed map unless the spec says otherwise.
    """
    if isinstance(dtype, Quantized):
        return _quantized_full_like(tree, 0.0, dtype.resolved(signed=True), real=False)
    return jax.tree.map(lambda x: full_like_sharded(x, 0, jnp.result_type(x) if dtype is None else dtype), tree)


def tree_real_full_like(tree: Any, value: Any, dtype: Any = None) -> Any:
    """Arrays filled with ``value``, real even where ``tree`` is complex.

    Second moments of complex parameters are moments of ``|g|**2`` and live in
    the matching real dtype (or in the real dtype of ``dtype`` if given). Each
    array is sharded like its leaf (see :func:`full_like_sharded`). A
    :class:`~adaptix.Quantized` ``dtype`` stores a non-negative moment (``value >= 0``): the
    unsigned map unless the spec says otherwise.
    """
    if isinstance(dtype, Quantized):
        return _quantized_full_like(tree, value, dtype.resolved(signed=False), real=True)
    return jax.tree.map(
        lambda x: full_like_sharded(x, value, real_dtype_of(jnp.result_type(x) if dtype is None else dtype)), tree
    )


def _quantized_full_like(tree: Any, value: Any, spec: Quantized, *, real: bool) -> Any:
    """Leaves filled with ``value``: quantized where ``spec`` applies, else float32 (complex64 for a complex
    leaf of a moment that is not ``real``). A boxed parameter's codes go in its box (:func:`lift_boxes`)."""

    def leaf(x):
        if spec.applies_to(x, real):
            return quantized_full_like(x, value, spec, full_like_sharded)
        complex_leaf = jnp.issubdtype(jnp.result_type(x), jnp.complexfloating) and not real
        return full_like_sharded(x, value, jnp.complex64 if complex_leaf else jnp.float32)

    return lift_boxes(jax.tree.map(leaf, tree))


def cast_like(tree: Any, like: Any) -> Any:
    """Casts every leaf of ``tree`` to the dtype of the matching leaf of ``like`` (``None`` stays).

    Where ``like`` holds a :class:`~adaptix.QuantizedArray`, the leaf is quantized as that one is.
    """
    return jax.tree.map(lambda x, y: None if x is None else stored_as(x, y), tree, like, is_leaf=is_state_leaf)


def stored_as(x: Any, like: Any) -> Any:
    """One leaf in the storage of ``like``: cast to its dtype, or quantized as it is (a stored leaf stays)."""
    if is_quantized(x):
        return x
    if is_quantized(like):
        return requantize(x, like)
    return jnp.asarray(x).astype(jnp.result_type(like))


def is_none(x: Any) -> bool:
    return x is None


def is_state_leaf(x: Any) -> bool:
    """A leaf of a state's tree for the checks: ``None`` or a :class:`~adaptix.QuantizedArray`."""
    return x is None or is_quantized(x)


def map_updates(f: Callable, updates: Updates, *rest: Any) -> Updates:
    """``f(u, *r)`` leaf by leaf; a ``None`` leaf of ``updates`` stays ``None`` (as in Optax)."""
    return jax.tree.map(lambda u, *r: None if u is None else f(u, *r), updates, *rest, is_leaf=is_none)


def map_state(f: Callable, updates: Updates, state: Any, *rest: Any) -> Any:
    """The new state leaf ``f(u, s, *r)``; where ``u`` is ``None`` the old leaf ``s`` is kept.

    Unlike Optax, which stores ``None`` there, the state's structure never
    changes, so a jitted step is traced once.
    """
    return jax.tree.map(lambda u, s, *r: s if u is None else f(u, s, *r), updates, state, *rest, is_leaf=is_none)


def result_dtype(*xs: Any) -> jnp.dtype:
    """The dtype of an update computed from ``xs``: their promotion, floating.

    This is what Optax's formulas give: a stage's output is promoted with the
    state it reads (float32 moments of bf16 gradients give float32 updates),
    and integer gradients become floating, as multiplying them by a Python
    float does.
    """
    dtype = jnp.result_type(*xs)
    if not jnp.issubdtype(dtype, jnp.inexact):
        dtype = jnp.result_type(dtype, float)
    return dtype


def cast_to_result(out: jax.Array, *xs: Any) -> jax.Array:
    return out.astype(result_dtype(*xs))


def _where(path) -> str:
    return jax.tree_util.keystr(path) or "(root)"


def check_matches(tree: Any, reference: Any, owner: str, name: str = "updates",
                  reference_name: str = "optimizer state", *, shapes: bool = True) -> None:
    """Raises ``ValueError`` when ``tree`` does not fit ``reference`` leaf by leaf.

    The trees must have one structure (``None`` leaves of ``tree`` fit any
    leaf), and (with ``shapes``) each array leaf the shape of its reference leaf. The message
    names both structures, or the leaf's path and both shapes. It runs at
    trace time only (it looks at structure and shapes, not values).
    """
    if tree is None:  # no updates at all (as Optax, every stage passes None on)
        return
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_state_leaf)
    ref_flat, ref_def = jax.tree_util.tree_flatten_with_path(reference, is_leaf=is_state_leaf)
    if treedef != ref_def:
        raise ValueError(
            f"{owner}: the {name} tree does not match the {reference_name} tree.\n"
            f"  {name}: {treedef}\n  {reference_name}: {ref_def}"
        )
    for (path, x), (_, r) in zip(flat, ref_flat):
        if x is None:
            continue
        if r is None:
            raise ValueError(
                f"{owner}: the {name} leaf {_where(path)} is an array of shape {jnp.shape(x)}, but the "
                f"{reference_name} has None there."
            )
        if shapes and jnp.shape(x) != jnp.shape(r):
            raise ValueError(
                f"{owner}: the {name} leaf {_where(path)} has shape {jnp.shape(x)}, but the {reference_name} "
                f"leaf there has shape {jnp.shape(r)}."
            )


def check_matches_state(updates: Updates, state_tree: Any, owner: str) -> None:
    """Raises ``ValueError`` when the updates do not fit the state's tree (structure, shapes).

    This catches the common mistake of updating with gradients of a different
    model (or a differently nested tree) than the one the state was built for.
    """
    check_matches(updates, state_tree, owner)


def measured(updates: Updates, chain_input: Updates | None, owner: str = "adaptix") -> Updates:
    """The gradient a statistic stage measures: ``chain_input`` if given, else its input."""
    if chain_input is None:
        return updates
    check_matches(updates, chain_input, owner, "updates", "chain_input")
    return chain_input
