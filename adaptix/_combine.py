"""``chain``: sequential composition that hands every stage the entering gradient."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from adaptix._base import (
    CHAIN_INPUT,
    CHAIN_STEP,
    CountedTransformation,
    Transformation,
    counted,
    init_stage,
    missing_state_error,
)
from adaptix._tree import check_matches


def chain(*transforms: optax.GradientTransformation) -> Transformation:
    r"""Applies ``transforms`` in order, handing each the chain's input as ``chain_input``.

    Each adaptix stage receives, besides its input ``updates`` (the previous
    stage's output), the tree that entered the chain as the keyword
    ``chain_input``. Statistic stages (:func:`scale_by_rms`, :func:`scale_by_rss`,
    ...) measure it and rescale their input; momentum stages average their
    input. The classic distinction between algorithms then becomes a matter of
    order:

    .. math::

        \text{Adam:}\quad & \texttt{chain(trace, scale\_by\_rms)}:
            \quad u_t = \frac{\mathrm{EMA}(g)}{\sqrt{\mathrm{EMA}(g^2)}} \\
        \text{RMSProp+momentum:}\quad & \texttt{chain(scale\_by\_rms, trace)}:
            \quad u_t = \mathrm{trace}\!\left(\frac{g}{\sqrt{\mathrm{EMA}(g^2)}}\right)

    A nested chain hands on *its own* input, so
    ``chain(add_decayed_weights(wd), adam(lr))`` keeps the moments of the
    L2-regularised gradient ``g + wd * p`` (Adam+L2), and
    ``chain(optax.clip_by_global_norm(1.0), adam(lr))`` those of the clipped one.

    **One step counter.** Stages that read the step number (bias corrections,
    schedules) keep no counter of their own inside a chain: the outermost
    chain keeps one, hands ``chain_step = t`` to each of them, and its state is
    a :class:`CountedState` ``(count, inner_state)``, so
    ``optax.tree_utils.tree_get(state, "count")`` finds exactly one count.
    A chain whose stages read no step has the tuple of their states as its
    state, as ``optax.chain``.

    The caller's extra keywords (``value=``, ``grad=``, ``value_fn=`` of Optax's
    line searches, ...) reach every stage unchanged, so a plain Optax stage
    sees exactly what it would see inside ``optax.chain``; plain Optax stages,
    and adaptix stages wrapped by an Optax combinator such as ``optax.masked``,
    never receive ``chain_input`` or ``chain_step``.

    Args:
      *transforms: Optax or adaptix gradient transformations.

    Returns:
      A :class:`Transformation` (a :class:`CountedTransformation` when a stage
      reads the step number).

    Example:
      >>> import jax.numpy as jnp, numpy as np, optax, adaptix
      >>> adam = adaptix.chain(
      ...     adaptix.trace(0.9, ema=True),
      ...     adaptix.scale_by_rms(0.999, 1e-8, eps_in_sqrt=False, bias_correction=True),
      ...     adaptix.bias_correction(0.9),
      ...     adaptix.scale_by_learning_rate(1e-3))
      >>> params = {"w": jnp.ones(3)}
      >>> state = adam.init(params)
      >>> updates, state = adam.update({"w": jnp.array([1.0, -2.0, 0.5])}, state, params)
      >>> np.asarray(updates["w"]).round(6)  # the first Adam step is -lr * sign(g)
      array([-0.001,  0.001, -0.001], dtype=float32)
      >>> int(optax.tree_utils.tree_get(state, "count"))  # one counter for the two corrections
      1
    """
    stages = tuple(transforms)
    for i, t in enumerate(stages):
        if not isinstance(t, optax.GradientTransformation):
            raise TypeError(
                f"chain: stage {i} must be an optax.GradientTransformation "
                f"(an adaptix or Optax transformation), got {type(t).__name__} {t!r}."
            )
    wrapped = tuple(
        t if isinstance(t, Transformation) else optax.with_extra_args_support(t)
        for t in stages
    )
    reads_step = tuple(isinstance(t, CountedTransformation) for t in wrapped)

    def init(params: Any) -> tuple:
        return tuple(init_stage(t, params, chain_counts=True) for t in wrapped)

    def update(updates, state, params=None, *, chain_step=None, **extra):
        if state is None:
            raise missing_state_error("chain")
        if not isinstance(state, tuple) or len(state) != len(wrapped):
            found = f"{len(state)} stage states" if isinstance(state, tuple) else f"a {type(state).__name__}"
            raise ValueError(
                f"chain: the state holds {found} but the chain has {len(wrapped)} stages; "
                "was it initialised by a different optimizer?"
            )
        extra.pop(CHAIN_INPUT, None)  # a chain measures its own input
        updates = jax.tree.map(jnp.asarray, updates)  # Python scalars become arrays; None stays None
        if params is not None:
            check_matches(updates, params, "chain", "updates", "params")
        chain_input = updates
        new_state = []
        for stage, stage_state, counts in zip(wrapped, state, reads_step):
            if isinstance(stage, Transformation):
                keywords = {CHAIN_INPUT: chain_input, **extra}
                if counts:
                    keywords[CHAIN_STEP] = chain_step
                updates, stage_state = stage.update(updates, stage_state, params, **keywords)
            else:
                updates, stage_state = stage.update(updates, stage_state, params, **extra)
            new_state.append(stage_state)
        return updates, tuple(new_state)

    if any(reads_step):
        return counted("chain", init, update)
    return Transformation(init, update)
