"""``bias_correction``: undoes the zero-initialisation bias of an EMA."""

from __future__ import annotations

from adaptix import _validate as v
from adaptix._base import CountedTransformation, EmptyState, cast_to_result, counted, debias, map_updates


def bias_correction(decay: float) -> CountedTransformation:
    r"""Divides the input by :math:`1 - \beta^t`, the weight an EMA started at 0 has gathered.

    .. math::

        \text{out}_t = \frac{u_t}{1 - \beta^t}, \qquad t = 1, 2, \dots

    Placed after ``trace(b1, ema=True)`` it turns the EMA into Adam's
    :math:`\hat m_t`; since second-moment stages are linear in their input it may
    stand anywhere after the trace. :math:`\beta^t` is computed in float32 or
    wider. The step :math:`t` is the chain's (one counter per optimizer); used
    alone, the stage counts itself, saturating instead of overflowing.

    Args:
      decay: the :math:`\beta` of the EMA being corrected, in ``[0, 1)``.

    Example:
      >>> import jax.numpy as jnp, numpy as np, adaptix
      >>> opt = adaptix.bias_correction(0.9)
      >>> np.asarray(opt.update(jnp.ones(1), opt.init(jnp.zeros(1)))[0]).round(4)  # 1 / (1 - 0.9)
      array([10.], dtype=float32)

    References:
      Kingma & Ba, 2015, Adam, section 3, https://arxiv.org/abs/1412.6980
    """
    v.check_debiased_decay("bias_correction", "decay", decay)

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None, *, chain_step, **extra):
        del params, extra
        out = map_updates(lambda u: debias(cast_to_result(u, u), decay, chain_step), updates)
        return out, state

    return counted("bias_correction", init, update)
