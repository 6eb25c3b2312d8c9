"""The Bayesian-filtering view of adaptive methods (Aitchison, 2020): AdaBayes and AdaBayes-FP.

Each parameter :math:`w` is inferred by a scalar Kalman filter whose
observations are backpropagated gradients. The other parameters keep changing
while :math:`w` is being learned, which the filter models as a slow random walk
of :math:`w` towards a prior :math:`\\mathcal N(0, \\sigma^2)`:

.. math::

    w_t = e^{-\\eta^2/(2\\sigma^2)}\\, w_{t-1} + \\xi_t, \\qquad
    \\xi_t \\sim \\mathcal N\\!\\left(0,\\ \\sigma^2 (1 - e^{-\\eta^2/\\sigma^2})\\right)
    \\ \\approx\\ \\mathcal N(0, \\eta^2).

The filter's posterior variance :math:`\\sigma^2_{post}` is the per-coordinate
learning rate: while little is known (:math:`\\sigma^2_{post} \\approx \\sigma^2`)
it is SGD (with learning rate :math:`\\alpha = B\\sigma^2` for the mean loss of a
batch of :math:`B`); once many gradients have been seen it settles at
:math:`\\eta/\\sqrt{\\langle g^2\\rangle}`, which is Adam's.

Provenance. The model (a filter per parameter, observing the gradient of the
*summed* minibatch loss; the drift of the other parameters; the SGD and
Adam(W) limits; a fixed-point variant) is the paper's. The equations adaptix
computes are those of the author's reference code, https://github.com/LaurenceA/adabayes
at commit 7ea53ed22ec23b379d5e0d50a4b0ea1f1f04a69a (``adabayes.py``,
``adabayesfp.py``, PyTorch): the exact variance step above, the posterior
variance starting at :math:`\\sigma^2`, Adam's debiased EMA as the momentum, the
AdaBayes-FP expression, and the defaults but one. Like adaptix, the code does
not shrink the mean by the model's factor but by a separate weight-decay
hyperparameter (:func:`implied_weight_decay` gives the model's value).
``tests/test_bayes.py`` ports both ``step`` methods to NumPy and checks
:func:`adabayes` and :func:`adabayes_fp` against the port step by step in
float64 (400 steps: about 1e-15 apart). Where adaptix differs from that
code, on purpose: mean-loss units (``eps`` of AdaBayes-FP is the code's
divided by :math:`B^2`), the weight decay added to the step rather than
multiplying the parameters after it, and a default weight decay of 0 (the
code's ``weight_drift`` is 5e-5); see ``docs/theory.md``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from adaptix import _validate as v
from adaptix._accumulators import debias, ema_of_squares_rule, for_leaf, update_moment, working
from adaptix._base import Transformation, counted, stage
from adaptix._combine import chain
from adaptix._first_moment import bias_correction, trace
from adaptix._scale import add_decayed_weights, scale
from adaptix._tree import abs_sq, cast_to_result, check_matches_state, map_updates, measured, tree_real_full_like


def _check_batch_size(owner: str, value: Any) -> None:
    """The batch size enters the filter's likelihood: a number ``>= 1`` (not necessarily an integer)."""
    v.check_range(owner, "batch_size", value, 1.0)


def implied_weight_decay(learning_rate: float, sgd_learning_rate: float, batch_size: float = 1) -> float:
    r"""The decoupled weight decay per step that the filter's prior implies: :math:`\lambda = \eta^2 B/(2\alpha)`.

    The prior's mean decays as :math:`e^{-\eta^2/(2\sigma^2)} \approx 1 - \eta^2/(2\sigma^2)` per step,
    with :math:`\sigma^2 = \alpha/B` (summed-loss units). This is how the filter "recovers AdamW".

    Example:
      >>> import adaptix
      >>> adaptix.implied_weight_decay(1e-3, 0.1, batch_size=100)  # doctest: +ELLIPSIS
      0.000499999...
    """
    return learning_rate**2 * batch_size / (2.0 * sgd_learning_rate)


class ScaleByPosteriorVarianceState(NamedTuple):
    """The filter's posterior variance per coordinate (in units of the mean-loss gradient)."""

    variance: Any


def scale_by_posterior_variance(
    learning_rate: float = 1e-3,
    sgd_learning_rate: float = 0.1,
    batch_size: float = 1,
) -> Transformation:
    r"""Multiplies the input by the posterior variance of AdaBayes's per-parameter Kalman filter.

    With :math:`g_t` the gradient of the *mean* minibatch loss entering the chain
    (``chain_input``), :math:`B` the batch size, :math:`\eta` = ``learning_rate``,
    :math:`\alpha` = ``sgd_learning_rate`` and :math:`\sigma^2 = \alpha/B` the
    prior variance, the filter runs in summed-loss units (gradient :math:`B g_t`):

    .. math::

        d = e^{-\eta^2/\sigma^2}, \qquad
        \sigma^2_{prior,t} = d\,\sigma^2_{post,t-1} + \sigma^2 (1 - d), \qquad
        \frac{1}{\sigma^2_{post,t}} = \frac{1}{\sigma^2_{prior,t}} + (B g_t)^2,
        \qquad \sigma^2_{post,0} = \sigma^2,

    and the output is the step of the posterior mean for the summed loss,
    :math:`\sigma^2_{post,t}\, B\, u_t` (:math:`u_t` the input, e.g. the
    debiased EMA :math:`\hat m_t` of :math:`g`). The state holds
    :math:`s_t = B\,\sigma^2_{post,t}`, which starts at :math:`\alpha` (SGD with
    learning rate :math:`\alpha`) and, once :math:`\sum g^2` dominates, settles
    near :math:`\eta/\sqrt{\langle g^2 \rangle}` (Adam with learning rate :math:`\eta`).

    Args:
      learning_rate: :math:`\eta > 0`, the Adam-like learning rate (high-data limit).
      sgd_learning_rate: :math:`\alpha > 0`, the SGD-like learning rate (low-data limit).
      batch_size: :math:`B \ge 1`, the minibatch size of the mean loss.

    Example:
      >>> import jax.numpy as jnp, numpy as np, adaptix
      >>> opt = adaptix.scale_by_posterior_variance(1e-3, 0.1)
      >>> u, state = opt.update(jnp.array([2.0]), opt.init(jnp.zeros(1)))
      >>> np.asarray(u).round(5)  # 2 / (1/0.1 + 2**2): s = 1/14
      array([0.14286], dtype=float32)

    Note:
      These are the reference code's steps (``adabayes.py``, ``AdaBayes.step``,
      at the commit cited in the references), in mean-loss units: the prior
      step is the exact discretisation of the random walk (the code's
      ``var_decay``, ``var_add``), whose first-order form
      :math:`(1 - \eta^2/\sigma^2)\,\sigma^2_{post} + \eta^2` differs from it by
      :math:`O(\eta^4/\sigma^4)` per step; :math:`\sigma^2_{post}` starts at
      :math:`\sigma^2` (the code's ``lr_sgd / batch_size``; the state,
      :math:`B\sigma^2_{post}`, at :math:`\alpha`). The mean's prior decay is left to
      :func:`add_decayed_weights` (see :func:`adabayes`).

    References:
      Aitchison, 2020, Bayesian filtering unifies adaptive and non-adaptive
      neural network optimization methods (NeurIPS), https://arxiv.org/abs/1807.07540;
      reference code https://github.com/LaurenceA/adabayes, commit
      7ea53ed22ec23b379d5e0d50a4b0ea1f1f04a69a, ``adabayes.py``.
    """
    owner = "scale_by_posterior_variance"
    v.check_positive(owner, "learning_rate", learning_rate)
    v.check_positive(owner, "sgd_learning_rate", sgd_learning_rate)
    _check_batch_size(owner, batch_size)

    def init(params):
        return ScaleByPosteriorVarianceState(variance=tree_real_full_like(params, sgd_learning_rate))

    def update(updates, state, params=None, *, chain_input=None, **extra):
        del params, extra
        g = measured(updates, chain_input, owner)
        check_matches_state(g, state.variance, owner)

        def step(x, s):
            # s = B * sigma2_post (mean-loss units); the recursion for B * sigma2, divided by B, with
            # the prior's variance sigma^2 = alpha / B (summed-loss units) and decay exp(-eta^2 / sigma^2):
            eta, alpha, b = (working(h, s) for h in (learning_rate, sgd_learning_rate, batch_size))
            exponent = -(eta**2) / (alpha / b)
            decay, pull = jnp.exp(exponent), -alpha * jnp.expm1(exponent)  # alpha (1 - decay), no cancellation
            prior = for_leaf(decay, s) * s + for_leaf(pull, s)
            return 1 / (1 / prior + for_leaf(b, s) * abs_sq(x))

        variance, stored = update_moment(lambda s, x: step(x, s), g, state.variance)
        out = map_updates(lambda u, s, old: cast_to_result(u * s, u, old), updates, variance, state.variance)
        return out, ScaleByPosteriorVarianceState(stored)

    return stage(owner, init, update)


class ScaleByPosteriorVarianceFpState(NamedTuple):
    """EMA of squared gradients (the step count is the chain's)."""

    nu: Any


def scale_by_posterior_variance_fp(
    learning_rate: float = 1e-3,
    sgd_learning_rate: float = 0.1,
    decay: float = 0.999,
    eps: float = 1e-8,
) -> Transformation:
    r"""Multiplies the input by the fixed point of AdaBayes's posterior variance (AdaBayes-FP).

    Replacing :math:`g_t^2` by its debiased EMA :math:`\hat v_t` in the filter of
    :func:`scale_by_posterior_variance` and solving for its steady state (to first
    order in :math:`\eta^2/\sigma^2`,
    :math:`\hat v s^2 + (\eta^2/\alpha)\, s - \eta^2 = 0`) gives, in mean-loss units,

    .. math::

        v_t = \beta v_{t-1} + (1-\beta) g_t^2, \quad \hat v_t = \frac{v_t}{1-\beta^t}, \quad
        \frac{1}{s_t} = \frac{1}{2\alpha} + \sqrt{\frac{1}{4\alpha^2} + \frac{\hat v_t + \epsilon}{\eta^2}},
        \quad \text{out} = s_t\, u_t.

    :math:`s_t \to \eta/\sqrt{\hat v_t}` (Adam) when :math:`\hat v_t \gg \eta^2/\alpha^2`
    and :math:`s_t \to \alpha` (SGD) when :math:`\hat v_t \ll \eta^2/\alpha^2`. The batch
    size cancels.

    Args:
      learning_rate: :math:`\eta > 0`, the Adam-like learning rate.
      sgd_learning_rate: :math:`\alpha > 0`, the SGD-like learning rate.
      decay: :math:`\beta \in [0, 1)` of the EMA of squared gradients (Adam's ``b2``).
      eps: added to :math:`\hat v_t`, ``>= 0``.

    Example:
      >>> import jax.numpy as jnp, numpy as np, adaptix
      >>> opt = adaptix.scale_by_posterior_variance_fp(1e-3, 0.1, eps=0.0)
      >>> u, _ = opt.update(jnp.array([2.0]), opt.init(jnp.zeros(1)))
      >>> np.asarray(u).round(7)  # 2 / (5 + sqrt(25 + 4e6)): nearly Adam's 1e-3 * sign(g)
      array([0.0009975], dtype=float32)

    Note:
      The expression for :math:`1/s_t` is the reference code's
      (``adabayesfp.py``, ``AdaBayesFP.step``: its ``lpost``), in mean-loss
      units; that it is the first-order steady state of the filter is checked
      in ``tests/test_bayes.py`` (the root of the quadratic, and the filter
      settling there). The code adds ``eps`` to the summed-loss second moment
      (:math:`B^2 \hat v`), i.e. :math:`\epsilon/B^2` here: its
      ``eps=1e-8`` with batch size :math:`B` is ``eps=1e-8 / B**2``.

    References:
      Aitchison, 2020, the fixed-point variant AdaBayes-FP,
      https://arxiv.org/abs/1807.07540; reference code
      https://github.com/LaurenceA/adabayes, commit
      7ea53ed22ec23b379d5e0d50a4b0ea1f1f04a69a, ``adabayesfp.py``.
    """
    owner = "scale_by_posterior_variance_fp"
    v.check_positive(owner, "learning_rate", learning_rate)
    v.check_positive(owner, "sgd_learning_rate", sgd_learning_rate)
    v.check_debiased_decay(owner, "decay", decay)
    v.check_nonnegative(owner, "eps", eps)

    def init(params):
        return ScaleByPosteriorVarianceFpState(nu=tree_real_full_like(params, 0.0))

    def update(updates, state, params=None, *, chain_step, chain_input=None, **extra):
        del params, extra
        g = measured(updates, chain_input, owner)
        check_matches_state(g, state.nu, owner)
        nu, stored = update_moment(ema_of_squares_rule(decay), g, state.nu)

        def scale_of(n):
            nu_hat = debias(n, decay, chain_step)
            half_precision = 1 / (2 * working(sgd_learning_rate, n))  # 1 / (2 alpha)
            squared, inv_eta2 = (for_leaf(c, n) for c in (half_precision**2, 1 / working(learning_rate, n) ** 2))
            root = jnp.sqrt(squared + (nu_hat + for_leaf(working(eps, n), n)) * inv_eta2)
            return 1 / (for_leaf(half_precision, n) + root)

        out = map_updates(lambda u, n, old: cast_to_result(u * scale_of(n), u, old), updates, nu, state.nu)
        return out, ScaleByPosteriorVarianceFpState(nu=stored)

    return counted(owner, init, update)


def _weight_decay(owner, weight_decay, learning_rate, sgd_learning_rate, batch_size):
    if weight_decay is None:
        return implied_weight_decay(learning_rate, sgd_learning_rate, batch_size)
    v.check_nonnegative(owner, "weight_decay", weight_decay)
    return weight_decay


def adabayes(
    learning_rate: float = 1e-3,
    sgd_learning_rate: float = 0.1,
    b1: float = 0.9,
    batch_size: float = 1,
    weight_decay: float | None = 0.0,
) -> Transformation:
    r"""AdaBayes: Adam's debiased momentum, stepped by a Kalman filter's posterior variance.

    ``chain(trace(b1, ema=True), bias_correction(b1), scale_by_posterior_variance(lr,
    sgd_lr, batch_size), add_decayed_weights(wd), scale(-1))``:

    .. math::

        \hat m_t = \frac{\mathrm{EMA}_{\beta_1}(g)_t}{1-\beta_1^t}, \qquad
        w_{t} = w_{t-1} - s_t\, \hat m_t - \lambda\, w_{t-1},

    with :math:`s_t` the posterior variance of :func:`scale_by_posterior_variance`:
    SGD (learning rate ``sgd_learning_rate``) early, Adam (``learning_rate``)
    once the gradients have accumulated.

    Args:
      learning_rate: :math:`\eta > 0`, the high-data (Adam) learning rate.
      sgd_learning_rate: :math:`\alpha > 0`, the low-data (SGD) learning rate.
      b1: the momentum's decay, in ``[0, 1)``.
      batch_size: the minibatch size :math:`B \ge 1` of the *mean* loss.
      weight_decay: decoupled decay :math:`\lambda \ge 0` per step; ``None``
        uses the value the prior implies, :func:`implied_weight_decay`.

    Example:
      >>> import jax.numpy as jnp, numpy as np, adaptix
      >>> opt = adaptix.adabayes(1e-3, 0.1)
      >>> u, _ = opt.update(jnp.array([2.0]), opt.init(jnp.zeros(1)), jnp.zeros(1))
      >>> np.asarray(u).round(5)  # -(1/14) * 2 at the first step
      array([-0.14286], dtype=float32)

    Note:
      The reference code's ``AdaBayes(lr, lr_sgd, betas, eps, weight_drift,
      batch_size)`` is ``adabayes(lr, lr_sgd, betas[0], batch_size,
      weight_drift)`` (its ``betas[1]`` and ``eps`` are unused: it updates a
      second moment it never reads), with two differences. The code multiplies
      the parameters by :math:`1-\lambda` *after* the step,
      :math:`(w - s\hat m)(1-\lambda)`; here the decay is added to the step,
      :math:`w - s\hat m - \lambda w`. They differ by :math:`\lambda s \hat m`;
      ``chain(trace(b1, ema=True), bias_correction(b1),
      scale_by_posterior_variance(...), scale(1 - wd), add_decayed_weights(wd),
      scale(-1))`` is the code's order. And the default decay is 0, where the
      code's ``weight_drift`` is 5e-5 per step: a constant that is not the
      model's (:func:`implied_weight_decay`: 5e-6 at the code's other
      defaults); pass ``weight_decay=5e-5`` for the code's, ``None`` for the
      model's. The other defaults are the code's.

    References:
      Aitchison, 2020, AdaBayes, https://arxiv.org/abs/1807.07540; reference code
      https://github.com/LaurenceA/adabayes, commit
      7ea53ed22ec23b379d5e0d50a4b0ea1f1f04a69a, ``adabayes.py``.
    """
    owner = "adabayes"
    v.check_positive(owner, "learning_rate", learning_rate)
    v.check_positive(owner, "sgd_learning_rate", sgd_learning_rate)
    v.check_debiased_decay(owner, "b1", b1)
    _check_batch_size(owner, batch_size)
    wd = _weight_decay(owner, weight_decay, learning_rate, sgd_learning_rate, batch_size)
    stages = [
        trace(b1, ema=True),
        bias_correction(b1),
        scale_by_posterior_variance(learning_rate, sgd_learning_rate, batch_size),
    ]
    stages.append(add_decayed_weights(wd))  # also for a decay of 0: the state's structure never depends on it
    return chain(*stages, scale(-1.0))


def adabayes_fp(
    learning_rate: float = 1e-3,
    sgd_learning_rate: float = 0.1,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float | None = 0.0,
    batch_size: float = 1,
) -> Transformation:
    r"""AdaBayes-FP: Adam's debiased momentum, stepped by the fixed point of the posterior variance.

    ``chain(trace(b1, ema=True), bias_correction(b1), scale_by_posterior_variance_fp(lr,
    sgd_lr, b2, eps), add_decayed_weights(wd), scale(-1))``:

    .. math::

        w_t = w_{t-1} - \frac{\hat m_t}{\frac{1}{2\alpha} + \sqrt{\frac{1}{4\alpha^2} +
        \frac{\hat v_t + \epsilon}{\eta^2}}} - \lambda w_{t-1},

    which is Adam(W) with learning rate :math:`\eta` (and :math:`\epsilon`
    inside the root) as :math:`\alpha \to \infty`, and SGD with EMA momentum and
    learning rate :math:`\alpha` as :math:`\eta \to \infty`.

    Args:
      learning_rate: :math:`\eta > 0`.
      sgd_learning_rate: :math:`\alpha > 0`.
      b1: decay of the momentum EMA, in ``[0, 1)``.
      b2: decay of the squared-gradient EMA, in ``[0, 1)``.
      eps: added to :math:`\hat v_t`, ``>= 0``.
      weight_decay: :math:`\lambda \ge 0`; ``None`` uses :func:`implied_weight_decay`
        with ``batch_size`` (which matters only there).
      batch_size: used only by ``weight_decay=None``.

    Example:
      >>> import jax.numpy as jnp, numpy as np, adaptix
      >>> opt = adaptix.adabayes_fp(1e-3, sgd_learning_rate=1e9, eps=0.0)  # the Adam limit
      >>> u, _ = opt.update(jnp.array([0.5, -4.0]), opt.init(jnp.zeros(2)), jnp.zeros(2))
      >>> np.asarray(u).round(6)  # Adam's first step, -lr * sign(g)
      array([-0.001,  0.001], dtype=float32)

    Note:
      The reference code's ``AdaBayesFP(lr, lr_sgd, betas, eps, weight_drift,
      batch_size)`` is ``adabayes_fp(lr, lr_sgd, betas[0], betas[1],
      eps / batch_size**2, weight_drift)``, up to the order of the decay (the
      code multiplies the parameters by :math:`1-\lambda` after the step, as
      in :func:`adabayes`). Its default ``weight_drift`` is 5e-5; here the
      default decay is 0. The other defaults are the code's (``eps`` equal at
      :math:`B = 1`).

    References:
      Aitchison, 2020, AdaBayes-FP, https://arxiv.org/abs/1807.07540; reference code
      https://github.com/LaurenceA/adabayes, commit
      7ea53ed22ec23b379d5e0d50a4b0ea1f1f04a69a, ``adabayesfp.py``.
    """
    owner = "adabayes_fp"
    v.check_positive(owner, "learning_rate", learning_rate)
    v.check_positive(owner, "sgd_learning_rate", sgd_learning_rate)
    v.check_debiased_decay(owner, "b1", b1)
    v.check_debiased_decay(owner, "b2", b2)
    v.check_nonnegative(owner, "eps", eps)
    _check_batch_size(owner, batch_size)
    wd = _weight_decay(owner, weight_decay, learning_rate, sgd_learning_rate, batch_size)
    stages = [
        trace(b1, ema=True),
        bias_correction(b1),
        scale_by_posterior_variance_fp(learning_rate, sgd_learning_rate, b2, eps),
    ]
    stages.append(add_decayed_weights(wd))  # also for a decay of 0: the state's structure never depends on it
    return chain(*stages, scale(-1.0))
