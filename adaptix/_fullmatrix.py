"""Full-matrix AdaGrad: precondition by the inverse root of the summed gradient outer products.

Diagonal methods (AdaGrad, RMSProp, Adam) rescale each coordinate separately, so
their trajectories depend on the coordinate system: rotate an ill-conditioned
quadratic and they lose their advantage. Full-matrix AdaGrad uses
:math:`G_t = \\sum_s g_s g_s^\\top`, which rotates with the problem, so its
trajectory is rotation-equivariant. It costs :math:`O(n^2)` memory and an
:math:`O(n^3)` eigendecomposition per step for a leaf of :math:`n` entries, so it
is meant for small parameter blocks.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptix import _validate as v
from adaptix._accumulators import update_moment
from adaptix._base import ScalarOrSchedule, Transformation, stage
from adaptix._combine import chain
from adaptix._scale import scale_by_learning_rate
from adaptix._tree import cast_to_result, check_matches, map_updates, measured

DEFAULT_MAX_SIZE = 4096


class ScaleByFullMatrixRssState(NamedTuple):
    """Per leaf, the ``(n, n)`` sum of outer products of the flattened gradients."""

    sum_of_outer_products: Any


def _inverse_root(eigenvalues: jax.Array, eps: float, eps_in_sqrt: bool) -> jax.Array:
    """``f(lambda)`` with ``f = (lambda + eps)^-1/2`` or ``1/(sqrt(lambda) + eps)``; a pseudo-inverse at eps = 0."""
    lam = jnp.maximum(eigenvalues, 0.0)  # rounding can make a PSD matrix's eigenvalues slightly negative
    with_eps = jax.lax.rsqrt(lam + eps) if eps_in_sqrt else 1.0 / (jnp.sqrt(lam) + eps)
    n = eigenvalues.shape[-1]
    cutoff = n * jnp.finfo(lam.dtype).eps * jnp.max(lam, initial=0.0)  # an empty leaf has no eigenvalue
    keep = lam > cutoff
    pseudo_inverse = jnp.where(keep, jax.lax.rsqrt(jnp.where(keep, lam, 1.0)), 0.0)
    if isinstance(eps, (int, float)):  # a concrete number: build only the branch it takes
        return with_eps if eps > 0 else pseudo_inverse
    return jnp.where(jnp.asarray(eps) > 0, with_eps, pseudo_inverse)  # traced (or array) eps


def _add_outer_product(total: jax.Array, g: jax.Array) -> jax.Array:
    """:math:`G + g g^H`, kept exactly Hermitian, in float32 or wider (eigh has no bf16/f16 kernel)."""
    total = total.astype(jnp.promote_types(total.dtype, jnp.float32))
    gv = jnp.ravel(g).astype(total.dtype)
    total = total + jnp.outer(gv, jnp.conj(gv))
    return 0.5 * (total + jnp.conj(total.T))


def scale_by_full_matrix_rss(
    eps: float = 1e-7,
    eps_in_sqrt: bool = True,
    max_size: int = DEFAULT_MAX_SIZE,
) -> Transformation:
    r"""Multiplies each leaf (flattened) by :math:`G_t^{-1/2}`, with :math:`G_t` the sum of gradient outer products.

    For each leaf, with :math:`g_t` the flattened gradient entering the chain
    (``chain_input``; the stage's input when used alone) and :math:`u_t` the stage's
    flattened input,

    .. math::

        G_t = G_{t-1} + g_t g_t^{\top} \ (g_t g_t^{H}\ \text{if complex}), \qquad G_0 = 0, \\
        G_t = Q \Lambda Q^{\top} \ (\texttt{eigh}), \qquad
        \text{out}_t = Q\, f(\Lambda)\, Q^{\top} u_t, \\
        f(\lambda) = (\lambda + \epsilon)^{-1/2}\ \ (\text{eps\_in\_sqrt})
        \quad\text{or}\quad (\sqrt{\lambda} + \epsilon)^{-1}.

    With ``eps=0`` :math:`f` is the pseudo-inverse root (eigenvalues below
    :math:`n\,\varepsilon_{mach} \lambda_{max}` map to 0), so the first step is
    :math:`g_1/\|g_1\|`. Full-matrix AdaGrad is
    ``chain(scale_by_full_matrix_rss(eps), scale_by_learning_rate(lr))``
    (:func:`full_matrix_adagrad`). The preconditioner is block diagonal over the
    leaves: rotations mixing coordinates of one leaf leave the trajectory
    equivariant, rotations mixing different leaves do not.

    Args:
      eps: regularisation, ``>= 0``: :math:`G + \epsilon I` under the root, or
        added to the root (Duchi et al.'s :math:`\delta I + G^{1/2}`).
      eps_in_sqrt: where ``eps`` goes (see above).
      max_size: the largest leaf (number of entries :math:`n`) accepted; the
        state holds :math:`n^2` numbers per leaf and each step an
        :math:`O(n^3)` ``eigh``. Larger leaves raise at ``init``; apply the
        stage to small leaves only with ``optax.masked`` or ``optax.partition``.

    Example:
      >>> import jax.numpy as jnp, numpy as np, adaptix
      >>> opt = adaptix.scale_by_full_matrix_rss(eps=0.0)
      >>> state = opt.init(jnp.zeros(2))
      >>> u, state = opt.update(jnp.array([3.0, 4.0]), state)
      >>> np.asarray(u).round(4)  # G = g g^T: the first step is g / |g|
      array([0.6, 0.8], dtype=float32)
      >>> u, state = opt.update(jnp.array([4.0, -3.0]), state)
      >>> np.asarray(u).round(4)  # G = 25 I now: g / 5
      array([ 0.8, -0.6], dtype=float32)

    Note:
      Optax has no full-matrix AdaGrad; Duchi et al. write the update as
      :math:`(\delta I + G_t^{1/2})^{-1} g_t` (``eps_in_sqrt=False``). The
      eigendecomposition runs in the parameters' dtype: in float32 directions
      whose eigenvalues are below about :math:`10^{-7}\lambda_{max}` are
      resolved only to rounding.

    References:
      Duchi, Hazan & Singer, 2011, Adaptive Subgradient Methods for Online
      Learning and Stochastic Optimization, section 1.2 and eq. (2),
      https://jmlr.org/papers/v12/duchi11a.html
    """
    owner = "scale_by_full_matrix_rss"
    v.check_nonnegative(owner, "eps", eps)
    v.check_bool(owner, "eps_in_sqrt", eps_in_sqrt)
    v.check_int(owner, "max_size", max_size, 1)

    def init(params):
        flat, _ = jax.tree_util.tree_flatten_with_path(params)
        for path, leaf in flat:
            n = math.prod(jnp.shape(leaf))
            if n > max_size:
                raise ValueError(
                    f"{owner}: the leaf {jax.tree_util.keystr(path) or '(root)'} of shape {jnp.shape(leaf)} has "
                    f"{n} entries, more than max_size={max_size}: its {n}x{n} matrix would hold {n * n:,} numbers "
                    "and need an O(n^3) eigendecomposition each step. Apply full-matrix AdaGrad to small leaves "
                    "only (optax.masked / optax.partition) or raise max_size."
                )
        return ScaleByFullMatrixRssState(
            sum_of_outer_products=jax.tree.map(
                lambda p: jnp.zeros((math.prod(jnp.shape(p)),) * 2, jnp.result_type(p)), params
            )
        )

    def precondition(u, total, stored):
        lam, q = jnp.linalg.eigh(total)
        scale = _inverse_root(lam, eps, eps_in_sqrt).astype(total.dtype)
        uv = jnp.ravel(u).astype(total.dtype)
        out = q @ (scale * (jnp.conj(q.T) @ uv))
        return cast_to_result(jnp.reshape(out, jnp.shape(u)), u, stored)

    def update(updates, state, params=None, *, chain_input=None, **extra):
        del params, extra
        g = measured(updates, chain_input, owner)
        check_matches(g, state.sum_of_outer_products, owner, shapes=False)
        totals, stored = update_moment(_add_outer_product, g, state.sum_of_outer_products)
        out = map_updates(precondition, updates, totals, state.sum_of_outer_products)
        return out, ScaleByFullMatrixRssState(stored)

    return stage(owner, init, update)


def full_matrix_adagrad(
    learning_rate: ScalarOrSchedule,
    eps: float = 1e-7,
    eps_in_sqrt: bool = True,
    max_size: int = DEFAULT_MAX_SIZE,
) -> Transformation:
    r"""Full-matrix AdaGrad: ``chain(scale_by_full_matrix_rss(eps), scale_by_learning_rate(lr))``.

    .. math::

        G_t = \sum_{s \le t} g_s g_s^\top, \qquad
        p_t = p_{t-1} - \eta\, (G_t + \epsilon I)^{-1/2} g_t \quad \text{(per leaf, flattened)}.

    Example:
      >>> import jax.numpy as jnp, numpy as np, adaptix
      >>> opt = adaptix.full_matrix_adagrad(0.1, eps=0.0)
      >>> u, _ = opt.update(jnp.array([[3.0], [4.0]]), opt.init(jnp.zeros((2, 1))))
      >>> np.asarray(u).round(4).ravel()
      array([-0.06, -0.08], dtype=float32)

    References:
      Duchi, Hazan & Singer, 2011, https://jmlr.org/papers/v12/duchi11a.html
    """
    owner = "full_matrix_adagrad"
    v.check_rate(owner, "learning_rate", learning_rate)
    v.check_nonnegative(owner, "eps", eps)
    v.check_bool(owner, "eps_in_sqrt", eps_in_sqrt)
    v.check_int(owner, "max_size", max_size, 1)
    return chain(scale_by_full_matrix_rss(eps, eps_in_sqrt, max_size), scale_by_learning_rate(learning_rate))
