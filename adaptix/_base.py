"""The transformation types, the keywords a chain hands its stages, and shared helpers.

An adaptix transformation is an :class:`optax.GradientTransformationExtraArgs`
(so every Optax combinator and Flax accepts it). Inside :func:`adaptix.chain`
its ``update`` also receives two keywords that no Optax transformation uses:

* ``chain_input``: the tree that entered the enclosing chain. Statistic stages
  (second moments, running maxima, sign agreement) measure it and rescale
  their input; used alone, or inside ``optax.chain``, they measure their input.
  (Optax's own extra arguments, such as the line searches' ``grad=``,
  ``value=`` and ``value_fn=``, reach every stage unchanged.)
* ``chain_step``: the number :math:`t \\ge 1` of the current update, for stages
  that read it (bias corrections, schedules). The chain keeps one step counter
  for all of them: a :class:`CountedTransformation` used inside a chain keeps
  no counter of its own, used alone it keeps one in a :class:`CountedState`.
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

CHAIN_INPUT = "chain_input"
CHAIN_STEP = "chain_step"


class Transformation(optax.GradientTransformationExtraArgs):
    """An Optax ``GradientTransformationExtraArgs`` that understands ``chain_input=``.

    It is a plain ``(init, update)`` named tuple, so it can be used wherever
    Optax expects a gradient transformation. :func:`adaptix.chain` hands
    ``chain_input`` only to stages of this type; any other Optax transformation
    in a chain receives the caller's extra keywords unchanged.
    """

    __slots__ = ()


class CountedTransformation(Transformation):
    """A :class:`Transformation` that reads the step number.

    ``init(params, *, chain_counts=False)``: with ``chain_counts=True`` (what
    :func:`adaptix.chain` passes) the state holds no counter and every
    ``update`` must receive ``chain_step=t``; otherwise the state is a
    :class:`CountedState` that counts by itself.
    """

    __slots__ = ()


class EmptyState(NamedTuple):
    """State of a stateless transformation."""


class CountedState(NamedTuple):
    """One step counter for an optimizer, beside the state of its stages.

    Attributes:
      count: the number of updates so far (int32, saturating), found by
        ``optax.tree_utils.tree_get(state, "count")``.
      inner_state: the state of the stages (for a chain, their tuple).
    """

    count: jax.Array
    inner_state: Any


def init_empty_state(params: Params) -> EmptyState:
    del params
    return EmptyState()


def zero_count() -> jax.Array:
    return jnp.zeros([], jnp.int32)


def safe_increment(count: jax.Array) -> jax.Array:
    """``count + 1``, saturating at the dtype's maximum instead of overflowing."""
    return optax.safe_increment(count)


def missing_state_error(owner: str) -> ValueError:
    return ValueError(
        f"{owner}: the optimizer state is missing (got None): pass the state returned by "
        "init(params), or by the previous update."
    )


def stage(owner: str, init: Callable, update: Callable, *, stateless: bool = False) -> Transformation:
    """A :class:`Transformation` whose ``update`` refuses a missing state with a clear error.

    Stateless stages (``stateless=True``) accept ``state=None``, as Optax's do.
    """
    if stateless:
        return Transformation(init, update)

    def checked_update(updates, state, params=None, **extra):
        if state is None:
            raise missing_state_error(owner)
        return update(updates, state, params, **extra)

    return Transformation(init, checked_update)


def counted(owner: str, init: Callable, update: Callable) -> CountedTransformation:
    """A stage that reads the step number: ``update(updates, state, params, *, chain_step, **extra)``.

    ``init(params)`` gives the stage's own state, without a counter. Inside a
    chain the chain hands ``chain_step``; alone, the stage keeps a
    :class:`CountedState` and counts itself.
    """

    def counted_init(params, *, chain_counts: bool = False):
        state = init(params)
        return state if chain_counts else CountedState(count=zero_count(), inner_state=state)

    def counted_update(updates, state, params=None, *, chain_step=None, **extra):
        if state is None:
            raise missing_state_error(owner)
        if chain_step is not None:
            return update(updates, state, params, chain_step=chain_step, **extra)
        if not isinstance(state, CountedState):
            raise ValueError(
                f"{owner}: expected the CountedState(count, inner_state) that init(params) returns, got "
                f"a {type(state).__name__}: was the state initialised by a different optimizer, or inside a "
                "chain (which keeps the step counter and hands chain_step to its stages)?"
            )
        step = safe_increment(state.count)
        updates, inner = update(updates, state.inner_state, params, chain_step=step, **extra)
        return updates, CountedState(count=step, inner_state=inner)

    return CountedTransformation(counted_init, counted_update)


def init_stage(transform: optax.GradientTransformation, params: Params, chain_counts: bool) -> Any:
    """``transform.init(params)``, telling a counted stage that an enclosing chain counts."""
    if chain_counts and isinstance(transform, CountedTransformation):
        return transform.init(params, chain_counts=True)
    return transform.init(params)


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


def ema_of(stored: jax.Array, x: jax.Array, decay: Any) -> jax.Array:
    """:math:`\beta s + (1-\beta) x`, computed in the wider of the stored and incoming dtypes."""
    return (1.0 - decay) * x + decay * widened(stored, x)


def ema_of_squares(stored: jax.Array, x: jax.Array, decay: Any) -> jax.Array:
    """:math:`\beta s + (1-\beta) |x|^2`, computed in the wider of the stored and incoming dtypes."""
    return (1.0 - decay) * abs_sq(x) + decay * widened(stored, x)


def debias(x: jax.Array, decay: Any, step: jax.Array) -> jax.Array:
    """:math:`x / (1 - \beta^t)`, with :math:`\beta^t` computed in float32 or wider."""
    correction = 1.0 - power(decay, step, scalar_dtype(x))
    return x / correction.astype(x.dtype)


def cast_like(tree: Any, like: Any) -> Any:
    """Casts every leaf of ``tree`` to the dtype of the matching leaf of ``like`` (``None`` stays)."""
    return jax.tree.map(lambda x, y: None if x is None else jnp.asarray(x).astype(jnp.result_type(y)),
                        tree, like, is_leaf=is_none)


def real_dtype_of(dtype: Any) -> jnp.dtype:
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        return jnp.finfo(dtype).dtype
    return dtype


ScalarOrSchedule = float | jax.Array | Callable[[jax.Array], jax.Array]


# ----------------------------------------------------------------------------
# Per-leaf maps: None leaves pass through, the state keeps its structure.
# ----------------------------------------------------------------------------


def is_none(x: Any) -> bool:
    return x is None


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
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_none)
    ref_flat, ref_def = jax.tree_util.tree_flatten_with_path(reference, is_leaf=is_none)
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
