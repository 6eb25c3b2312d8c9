"""The transformation types, the keywords a chain hands its stages, and the stage builders.

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

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adaptix._quantized import lift_boxes, lower_boxes

Params = Any
ScalarOrSchedule = float | jax.Array | Callable[[jax.Array], jax.Array]

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
        out, new_state = update(updates, lower_boxes(state), params, **extra)
        return out, lift_boxes(new_state)

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
            out, new_state = update(updates, lower_boxes(state), params, chain_step=chain_step, **extra)
            return out, lift_boxes(new_state)
        if not isinstance(state, CountedState):
            raise ValueError(
                f"{owner}: expected the CountedState(count, inner_state) that init(params) returns, got "
                f"a {type(state).__name__}: was the state initialised by a different optimizer, or inside a "
                "chain (which keeps the step counter and hands chain_step to its stages)?"
            )
        step = safe_increment(state.count)
        updates, inner = update(updates, lower_boxes(state.inner_state), params, chain_step=step, **extra)
        return updates, CountedState(count=step, inner_state=lift_boxes(inner))

    return CountedTransformation(counted_init, counted_update)


def init_stage(transform: optax.GradientTransformation, params: Params, chain_counts: bool) -> Any:
    """``transform.init(params)``, telling a counted stage that an enclosing chain counts."""
    if chain_counts and isinstance(transform, CountedTransformation):
        return transform.init(params, chain_counts=True)
    return transform.init(params)
