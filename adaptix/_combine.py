"""``chain``: sequential composition that hands every stage the entering gradient."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from adaptix._base import Transformation, check_same_structure


def chain(*transforms: optax.GradientTransformation) -> Transformation:
    r"""Applies ``transforms`` in order, handing each the chain's input as ``grad``.

    Each stage receives, besides its input ``updates`` (the previous stage's
    output), the gradient that entered the chain as the keyword ``grad``.
    Statistic stages (:func:`scale_by_rms`, :func:`scale_by_rss`, ...) measure
    ``grad`` and rescale their input; momentum stages average their input. The
    classic distinction between algorithms then becomes a matter of order:

    .. math::

        \text{Adam:}\quad & \texttt{chain(trace, scale\_by\_rms)}:
            \quad u_t = \frac{\mathrm{EMA}(g)}{\sqrt{\mathrm{EMA}(g^2)}} \\
        \text{RMSProp+momentum:}\quad & \texttt{chain(scale\_by\_rms, trace)}:
            \quad u_t = \mathrm{trace}\!\left(\frac{g}{\sqrt{\mathrm{EMA}(g^2)}}\right)

    A nested chain hands on *its own* input, so
    ``chain(add_decayed_weights(wd), adam(lr))`` keeps the moments of the
    L2-regularised gradient ``g + wd * p`` (Adam+L2), and
    ``chain(optax.clip_by_global_norm(1.0), adam(lr))`` those of the clipped one.

    Other extra keywords are passed to every stage unchanged. Stages that are
    plain Optax transformations (not adaptix ones) never receive ``grad``: they
    measure their own input, as inside ``optax.chain``. The same holds for an
    adaptix stage wrapped by an Optax combinator such as ``optax.masked``.

    Args:
      *transforms: Optax or adaptix gradient transformations.

    Returns:
      A :class:`Transformation` whose state is the tuple of the stages' states
      (the same layout as ``optax.chain``).

    Example:
      >>> import jax.numpy as jnp, numpy as np, adaptix
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

    def init(params: Any) -> tuple:
        return tuple(t.init(params) for t in wrapped)

    def update(updates, state, params=None, **extra):
        if len(state) != len(wrapped):
            raise ValueError(
                f"chain: the state holds {len(state)} stage states but the chain has "
                f"{len(wrapped)} stages; was it initialised by a different optimizer?"
            )
        extra.pop("grad", None)  # a chain measures its own input
        updates = jax.tree.map(jnp.asarray, updates)  # Python scalars become arrays
        if params is not None:
            check_same_structure(updates, params, "chain: updates", "params")
        grad = updates
        new_state = []
        for stage, stage_state in zip(wrapped, state):
            if isinstance(stage, Transformation):
                updates, stage_state = stage.update(updates, stage_state, params, grad=grad, **extra)
            else:
                updates, stage_state = stage.update(updates, stage_state, params, **extra)
            new_state.append(stage_state)
        return updates, tuple(new_state)

    return Transformation(init, update)
