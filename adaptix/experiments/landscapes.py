"""Small test functions for optimizers, and their trajectories.

Each landscape is a :class:`Problem`: a pure-JAX loss of a 1-D parameter vector
(so ``jax.grad(problem.loss)`` is its gradient), an optional gradient noise, a
suggested start and a plotting box. :func:`trajectory` runs any Optax or adaptix
transformation on a problem as one jitted ``lax.scan`` and returns the iterates.

Problems: :func:`quadratic` (ill-conditioned, optionally rotated),
:func:`noisy_quadratic` (the same with seeded Gaussian gradient noise),
:func:`rosenbrock`, :func:`beale`, :func:`saddle` (:math:`x^2 - y^2`) and
:func:`monkey_saddle` (:math:`x^3 - 3xy^2`).

Example:
  >>> import adaptix
  >>> from adaptix.experiments import landscapes
  >>> p = landscapes.quadratic(condition=10.0, angle=0.3)
  >>> xs = landscapes.trajectory(adaptix.sgd(0.05), p, steps=100)
  >>> xs.shape, bool(p.loss(xs[-1]) < 1e-2 * p.loss(xs[0]))
  ((101, 2), True)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "Problem",
    "beale",
    "contour_grid",
    "losses",
    "monkey_saddle",
    "noisy_quadratic",
    "quadratic",
    "random_rotation",
    "rosenbrock",
    "rotation_2d",
    "saddle",
    "trajectory",
]

Array = jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """A test function of a 1-D parameter vector.

    Attributes:
      name: a short label (used in plot legends).
      loss: ``x -> scalar``, pure JAX, so ``jax.grad(loss)`` is the exact gradient.
      x0: the suggested starting point (float64; :func:`trajectory` casts it).
      minimum: a global minimiser, or ``None`` (unbounded below, as a saddle).
      bounds: ``((xmin, xmax), (ymin, ymax))`` for contour plots of the first two coordinates.
      noise: standard deviation of additive Gaussian gradient noise: 0, a float,
        or one value per coordinate.
      hessian: the (constant) Hessian for quadratics, else ``None``.
    """

    name: str
    loss: Callable[[Array], Array]
    x0: np.ndarray
    minimum: np.ndarray | None = None
    bounds: tuple[tuple[float, float], tuple[float, float]] = ((-2.0, 2.0), (-2.0, 2.0))
    noise: Any = 0.0
    hessian: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return int(np.shape(self.x0)[0])

    @property
    def noisy(self) -> bool:
        return bool(np.any(np.asarray(self.noise) != 0))

    def grad(self, x: Array, key: Array | None = None) -> Array:
        """The gradient at ``x``; with ``key``, plus the problem's Gaussian noise.

        Without a key (or for a noise-free problem) this is exactly ``jax.grad(loss)(x)``.
        """
        g = jax.grad(self.loss)(x)
        if key is None or not self.noisy:
            return g
        scale = jnp.asarray(self.noise, g.dtype)
        return g + scale * jax.random.normal(key, g.shape, g.dtype)


# --------------------------------------------------------------------------------------------
# Rotations
# --------------------------------------------------------------------------------------------


def rotation_2d(angle: float) -> np.ndarray:
    """The 2x2 rotation by ``angle`` radians (counter-clockwise)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def random_rotation(dim: int, seed: int = 0) -> np.ndarray:
    """A Haar-random ``dim x dim`` rotation (orthogonal, determinant +1), from a seeded QR."""
    if dim < 1:
        raise ValueError(f"random_rotation: dim must be >= 1, got {dim}.")
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


# --------------------------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------------------------


def quadratic(
    condition: float = 10.0,
    angle: float = 0.0,
    *,
    dim: int = 2,
    rotation: np.ndarray | None = None,
    x0: Sequence[float] | None = None,
) -> Problem:
    r"""An ill-conditioned quadratic :math:`f(x) = \tfrac12 x^\top R \Lambda R^\top x`.

    :math:`\Lambda = \operatorname{diag}(\lambda_i)` has eigenvalues spaced
    geometrically from ``condition`` down to 1 (so the condition number is
    ``condition``; in 2-D, :math:`\Lambda = \operatorname{diag}(\kappa, 1)`: steep in
    :math:`x`, shallow in :math:`y`). :math:`R` is ``rotation`` if given, else the
    plane rotation by ``angle`` (2-D only). With :math:`y = R x`,
    :math:`f_R(y) = f_I(x)`: the rotated problem is the same problem in rotated
    coordinates, so a rotation-equivariant optimizer started at :math:`R x_0`
    follows :math:`R x_t`.

    Args:
      condition: the ratio of the largest to the smallest eigenvalue, ``>= 1``.
      angle: rotation angle in radians (2-D).
      dim: the dimension.
      rotation: an orthogonal ``dim x dim`` matrix (overrides ``angle``).
      x0: the start; default :math:`R\,(1, 1.5, 1, \dots)`, rotated with the problem.
    """
    if not condition >= 1.0 or not math.isfinite(condition):
        raise ValueError(f"quadratic: condition must be finite and >= 1, got {condition!r}.")
    if dim < 1:
        raise ValueError(f"quadratic: dim must be >= 1, got {dim}.")
    if rotation is None:
        if dim == 2:
            rotation = rotation_2d(angle)
        elif angle != 0.0:
            raise ValueError(f"quadratic: angle is for dim=2; pass rotation= for dim={dim}.")
        else:
            rotation = np.eye(dim)
    rotation = np.asarray(rotation, dtype=np.float64)
    if rotation.shape != (dim, dim) or not np.allclose(rotation @ rotation.T, np.eye(dim), atol=1e-8):
        raise ValueError(f"quadratic: rotation must be an orthogonal {dim}x{dim} matrix, got shape {rotation.shape}.")
    eigenvalues = np.geomspace(condition, 1.0, dim) if dim > 1 else np.array([condition])
    hessian = rotation @ np.diag(eigenvalues) @ rotation.T
    hessian = 0.5 * (hessian + hessian.T)
    if x0 is None:
        base = np.ones(dim)
        base[1::2] = 1.5
        x0 = rotation @ base

    def loss(x):
        hx = jnp.asarray(hessian, x.dtype) @ x  # the float64 Hessian, rounded once to x's dtype
        return 0.5 * jnp.dot(x, hx)

    name = f"quadratic (κ={condition:g}" + (f", angle={angle:.2f})" if angle else ")")
    return Problem(name, loss, np.asarray(x0, np.float64), np.zeros(dim), ((-2.0, 2.0), (-2.0, 2.0)), 0.0, hessian)


def noisy_quadratic(
    condition: float = 10.0,
    noise: float | Sequence[float] = 0.1,
    angle: float = 0.0,
    *,
    dim: int = 2,
    rotation: np.ndarray | None = None,
    x0: Sequence[float] | None = None,
) -> Problem:
    r""":func:`quadratic` with additive Gaussian gradient noise: :math:`\tilde g = H x + \sigma \odot \xi`.

    :math:`\xi \sim \mathcal N(0, I)` is drawn from the key passed to
    :meth:`Problem.grad` (:func:`trajectory` folds the step into a seeded key,
    so runs are reproducible). ``noise`` is :math:`\sigma`, a float or one value
    per coordinate (for per-coordinate noise scaling).
    """
    p = quadratic(condition, angle, dim=dim, rotation=rotation, x0=x0)
    sigma = np.asarray(noise, np.float32)
    wrong_shape = sigma.ndim > 1 or (sigma.ndim == 1 and sigma.shape[0] != dim)
    if wrong_shape or np.any(~np.isfinite(sigma)) or np.any(sigma < 0):
        raise ValueError(f"noisy_quadratic: noise must be a finite float >= 0 or {dim} of them, got {noise!r}.")
    noise_value = float(sigma) if sigma.ndim == 0 else sigma
    return dataclasses.replace(p, name="noisy " + p.name, noise=noise_value)


def rosenbrock(a: float = 1.0, b: float = 100.0) -> Problem:
    r"""Rosenbrock's banana valley :math:`f(x, y) = (a - x)^2 + b\,(y - x^2)^2`, minimum at :math:`(a, a^2)`."""

    def loss(x):
        return (a - x[0]) ** 2 + b * (x[1] - x[0] ** 2) ** 2

    return Problem("Rosenbrock", loss, np.array([-1.5, 2.0], np.float32), np.array([a, a * a], np.float32),
                   ((-2.0, 2.0), (-1.0, 3.0)))


def beale() -> Problem:
    r"""Beale's function, minimum at :math:`(3, 0.5)`: flat plateaus and a curved valley.

    .. math::
        f = (1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2
    """

    def loss(x):
        u, w = x[0], x[1]
        return (1.5 - u + u * w) ** 2 + (2.25 - u + u * w**2) ** 2 + (2.625 - u + u * w**3) ** 2

    return Problem("Beale", loss, np.array([1.0, 1.4], np.float32), np.array([3.0, 0.5], np.float32),
                   ((-0.5, 4.0), (-1.5, 2.0)))


def saddle() -> Problem:
    r"""The saddle :math:`f(x, y) = x^2 - y^2`: a minimum along :math:`x`, a maximum along :math:`y`.

    Unbounded below. The default start :math:`(1, 10^{-3})` lies almost on the
    ridge, so plain gradient descent lingers near the saddle point before the
    tiny :math:`y` component grows; per-coordinate normalisation escapes at once.
    """

    def loss(x):
        return x[0] ** 2 - x[1] ** 2

    return Problem("saddle x²−y²", loss, np.array([1.0, 1e-3], np.float32), None, ((-1.5, 1.5), (-1.5, 1.5)))


def monkey_saddle() -> Problem:
    r"""The monkey saddle :math:`f(x, y) = x^3 - 3 x y^2`: a degenerate saddle with zero Hessian at 0."""

    def loss(x):
        return x[0] ** 3 - 3.0 * x[0] * x[1] ** 2

    return Problem("monkey saddle", loss, np.array([1.0, 1e-3], np.float32), None, ((-1.5, 1.5), (-1.5, 1.5)))


# --------------------------------------------------------------------------------------------
# Running an optimizer
# --------------------------------------------------------------------------------------------


def trajectory(
    opt: optax.GradientTransformation,
    problem: Problem,
    x0: Any = None,
    steps: int = 100,
    *,
    seed: int = 0,
    dtype: Any = jnp.float32,
) -> Array:
    """The iterates :math:`x_0, \\dots, x_{steps}` of ``opt`` on ``problem`` (one jitted ``lax.scan``).

    The gradient at step :math:`t` is ``problem.grad(x_t, key_t)``, with
    ``key_t = fold_in(key(seed), t)``: exact for noise-free problems,
    reproducible for noisy ones.

    Args:
      opt: any Optax or adaptix gradient transformation.
      problem: a :class:`Problem`.
      x0: the start (default ``problem.x0``).
      steps: the number of updates, ``>= 0``.
      seed: the seed of the gradient noise.
      dtype: the parameters' dtype (``jnp.float64`` needs ``jax_enable_x64``).

    Returns:
      An array of shape ``(steps + 1, dim)``; row 0 is ``x0``.
    """
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"trajectory: steps must be an int >= 0, got {steps!r}.")
    x0 = jnp.asarray(problem.x0 if x0 is None else x0, dtype)
    if x0.shape != (problem.dim,):
        raise ValueError(f"trajectory: x0 must have shape ({problem.dim},) for {problem.name}, got {x0.shape}.")
    base_key = jax.random.key(seed)

    @jax.jit
    def run(x0):
        def step(carry, t):
            x, state = carry
            g = problem.grad(x, jax.random.fold_in(base_key, t) if problem.noisy else None)
            updates, state = opt.update(g, state, x)
            x = optax.apply_updates(x, updates)
            return (x, state), x

        _, xs = jax.lax.scan(step, (x0, opt.init(x0)), jnp.arange(steps))
        return jnp.concatenate([x0[None], xs], axis=0)

    return run(x0)


def losses(problem: Problem, xs: Array) -> Array:
    """``problem.loss`` at each row of ``xs`` (e.g. the output of :func:`trajectory`)."""
    return jax.vmap(problem.loss)(jnp.asarray(xs))


def contour_grid(problem: Problem, n: int = 200, bounds=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X, Y, Z)`` on an ``n x n`` grid of the first two coordinates, for ``plt.contour``.

    Other coordinates (if any) are held at 0.
    """
    (x_lo, x_hi), (y_lo, y_hi) = bounds if bounds is not None else problem.bounds
    X, Y = np.meshgrid(np.linspace(x_lo, x_hi, n), np.linspace(y_lo, y_hi, n))
    pts = np.zeros((n * n, problem.dim), np.float32)
    pts[:, 0], pts[:, 1] = X.ravel(), Y.ravel()
    Z = np.asarray(losses(problem, pts)).reshape(n, n)
    return X, Y, Z
