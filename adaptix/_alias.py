"""Every classic adaptive optimizer as a short ``chain`` of primitives.

Each alias takes the keywords, with the defaults, of the Optax alias of the
same name, so switching is one import; where PyTorch differs, a keyword selects
its form. Hyperparameters are validated here, under the alias's own names.
"""

from __future__ import annotations

from typing import Any

import jax

from adaptix import _validate as v
from adaptix._base import ScalarOrSchedule, Transformation
from adaptix._combine import chain
from adaptix._first_moment import bias_correction, ema, lion_momentum, nesterov_ema, trace
from adaptix._quantized import check_storage
from adaptix._scale import add_decayed_weights, scale, scale_by_learning_rate, scale_by_sign
from adaptix._second_moment import (
    scale_by_inf_norm,
    scale_by_max_rms,
    scale_by_rectified_rms,
    scale_by_rms,
    scale_by_rss,
    scale_by_stddev,
)
from adaptix._step_size import scale_by_rprop, scale_by_update_rms


def _check_adam_family(owner, learning_rate, b1, b2, eps, eps_root, mu_dtype=None, nu_dtype=None):
    v.check_rate(owner, "learning_rate", learning_rate)
    v.check_debiased_decay(owner, "b1", b1)
    v.check_debiased_decay(owner, "b2", b2)
    v.check_nonnegative(owner, "eps", eps)
    v.check_nonnegative(owner, "eps_root", eps_root)
    check_storage(owner, "mu_dtype", mu_dtype, signed=True)
    check_storage(owner, "nu_dtype", nu_dtype)


_NO_DECAY = object()  # marks an Adam-family alias without a weight-decay stage (adam, nadam)


def _adam_family(owner, learning_rate, b1, b2, eps, eps_root, mu_dtype, nu_dtype, *, nesterov,
                 momentum_decay=None, weight_decay=_NO_DECAY, mask=None) -> Transformation:
    """Adam, AdamW, NAdam and NAdamW: one chain, validated under the alias's name.

    ``chain(first moment, scale_by_rms(b2, eps, eps_in_sqrt=False, bias_correction=True),
    [bias_correction(b1)], [add_decayed_weights(wd, mask)], scale_by_learning_rate(lr))``,
    where the first moment is ``trace(b1, ema=True)`` (debiased by the
    ``bias_correction`` stage) or NAdam's ``nesterov_ema(b1, momentum_decay)``
    (already debiased).
    """
    _check_adam_family(owner, learning_rate, b1, b2, eps, eps_root, mu_dtype, nu_dtype)
    v.check_bool(owner, "nesterov", nesterov)
    if momentum_decay is not None:
        v.check_nonnegative(owner, "momentum_decay", momentum_decay)
    if nesterov:
        first_moment = (nesterov_ema(b1, momentum_decay, accumulator_dtype=mu_dtype),)
    else:
        first_moment = (trace(b1, ema=True, accumulator_dtype=mu_dtype), bias_correction(b1))
    second_moment = scale_by_rms(b2, eps, eps_in_sqrt=False, bias_correction=True, eps_root=eps_root,
                                 accumulator_dtype=nu_dtype)
    decay = ()
    if weight_decay is not _NO_DECAY:
        v.check_rate(owner, "weight_decay", weight_decay)
        decay = (add_decayed_weights(weight_decay, mask),)
    # bias_correction(b1) may stand after scale_by_rms (which is linear in its input): Optax's order of operations
    return chain(first_moment[0], second_moment, *first_moment[1:], *decay, scale_by_learning_rate(learning_rate))


def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: float | None = None,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> Transformation:
    r"""Stochastic gradient descent, with optional heavy-ball or Nesterov momentum.

    ``chain(trace(momentum, nesterov), scale_by_learning_rate(lr))``:

    .. math::

        t_k = g_k + \mu\, t_{k-1}, \qquad
        p_k = p_{k-1} - \eta\,(t_k \ \text{or}\ g_k + \mu t_k \text{ for Nesterov}).

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> opt = adaptix.sgd(0.1, momentum=0.9, nesterov=True)
      >>> opt.update(jnp.ones(1), opt.init(jnp.zeros(1)))[0]  # -0.1 * (1 + 0.9 * 1)
      Array([-0.19], dtype=float32)

    Note:
      Equals ``optax.sgd`` and ``torch.optim.SGD(momentum, nesterov,
      dampening=0)``. PyTorch's ``weight_decay`` is
      ``chain(add_decayed_weights(wd), sgd(...))``.

    References:
      Robbins & Monro, 1951; Sutskever et al., 2013,
      https://proceedings.mlr.press/v28/sutskever13.html
    """
    owner = "sgd"
    v.check_rate(owner, "learning_rate", learning_rate)
    v.check_bool(owner, "nesterov", nesterov)
    if momentum is None:
        check_storage(owner, "accumulator_dtype", accumulator_dtype, signed=True)
        if nesterov:
            raise ValueError("sgd: nesterov=True needs a momentum in [0, 1], got momentum=None.")
        return chain(scale_by_learning_rate(learning_rate))
    v.check_decay(owner, "momentum", momentum)
    check_storage(owner, "accumulator_dtype", accumulator_dtype, signed=True)
    return chain(
        trace(momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype),
        scale_by_learning_rate(learning_rate),
    )


def adagrad(
    learning_rate: ScalarOrSchedule,
    initial_accumulator_value: float = 0.1,
    eps: float = 1e-7,
    *,
    eps_in_sqrt: bool = True,
) -> Transformation:
    r"""AdaGrad: per-coordinate steps shrinking with the sum of squared gradients.

    ``chain(scale_by_rss(initial_accumulator_value, eps, eps_in_sqrt), scale_by_learning_rate(lr))``:

    .. math::

        s_t = s_{t-1} + g_t^2, \qquad p_t = p_{t-1} - \eta\, g_t / \sqrt{s_t + \epsilon}.

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> opt = adaptix.adagrad(1.0, initial_accumulator_value=0.0, eps=0.0)
      >>> opt.update(jnp.array([2.0, -0.1]), opt.init(jnp.zeros(2)))[0]
      Array([-1.,  1.], dtype=float32)

    Note:
      PyTorch's ``Adagrad`` is ``adagrad(lr, initial_accumulator_value=0.0,
      eps=1e-10, eps_in_sqrt=False)`` (eps outside the root).

    References:
      Duchi, Hazan & Singer, 2011, https://jmlr.org/papers/v12/duchi11a.html
    """
    owner = "adagrad"
    v.check_rate(owner, "learning_rate", learning_rate)
    v.check_nonnegative(owner, "initial_accumulator_value", initial_accumulator_value)
    v.check_nonnegative(owner, "eps", eps)
    v.check_bool(owner, "eps_in_sqrt", eps_in_sqrt)
    return chain(
        scale_by_rss(initial_accumulator_value, eps, eps_in_sqrt=eps_in_sqrt),
        scale_by_learning_rate(learning_rate),
    )


def rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: float | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> Transformation:
    r"""RMSProp, optionally centered, with momentum of the *rescaled* updates.

    ``chain(scale_by_rms(decay, eps), scale_by_learning_rate(lr), trace(momentum))``
    (``scale_by_stddev`` when centered):

    .. math::

        v_t = \rho v_{t-1} + (1-\rho) g_t^2, \qquad
        b_t = \mu\, b_{t-1} + \eta\, g_t / \sqrt{v_t + \epsilon}, \qquad p_t = p_{t-1} - b_t.

    The momentum averages already-rescaled steps (Hinton's RMSProp with
    momentum); swapping the order, ``chain(trace, scale_by_rms)``, averages the
    raw gradient instead, which is Adam without bias correction.

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> opt = adaptix.rmsprop(0.1, decay=0.75, eps=0.0)
      >>> opt.update(jnp.ones(1), opt.init(jnp.zeros(1)))[0]  # -0.1 / sqrt(0.25)
      Array([-0.2], dtype=float32)

    Note:
      PyTorch's ``RMSprop(alpha=decay)`` puts eps outside the root:
      ``eps_in_sqrt=False``. With a constant learning rate, applying it before
      or after the momentum (Optax and PyTorch respectively) is the same.

    References:
      Tieleman & Hinton, 2012; Graves, 2013, https://arxiv.org/abs/1308.0850
    """
    owner = "rmsprop"
    v.check_rate(owner, "learning_rate", learning_rate)
    v.check_bool(owner, "bias_correction", bias_correction)
    v.check_decay(owner, "decay", decay, debiased=bias_correction)
    v.check_nonnegative(owner, "eps", eps)
    v.check_nonnegative(owner, "initial_scale", initial_scale)
    v.check_bool(owner, "centered", centered)
    v.check_bool(owner, "nesterov", nesterov)
    v.check_bool(owner, "eps_in_sqrt", eps_in_sqrt)
    if momentum is not None:
        v.check_decay(owner, "momentum", momentum)
    elif nesterov:
        raise ValueError("rmsprop: nesterov=True needs a momentum in [0, 1], got momentum=None.")
    second_moment = scale_by_stddev if centered else scale_by_rms
    stages = [
        second_moment(decay, eps, initial_scale, eps_in_sqrt=eps_in_sqrt, bias_correction=bias_correction),
        scale_by_learning_rate(learning_rate),
    ]
    if momentum is not None:
        stages.append(trace(momentum, nesterov=nesterov))
    return chain(*stages)


def adadelta(
    learning_rate: ScalarOrSchedule | None = None,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Any = None,
) -> Transformation:
    r"""AdaDelta: steps with the units of the parameters, no learning rate needed.

    ``chain(scale_by_rms(rho, eps), scale_by_update_rms(rho, eps), scale_by_learning_rate(lr))``:

    .. math::

        E[g^2]_t = \rho E[g^2]_{t-1} + (1-\rho) g_t^2, \quad
        \Delta_t = \frac{\sqrt{E[\Delta^2]_{t-1} + \epsilon}}{\sqrt{E[g^2]_t + \epsilon}}\, g_t, \quad
        p_t = p_{t-1} - \eta\, \Delta_t.

    With ``weight_decay`` the L2 term is added to the gradient first (the
    moments see it), as in Optax and PyTorch. The stage is there even for a
    decay of 0, so the state's structure does not depend on the value.

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> opt = adaptix.adadelta()
      >>> float(opt.update(jnp.ones(1), opt.init(jnp.zeros(1)))[0][0]) < 0  # descends
      True

    Note:
      ``learning_rate=None`` means 1.0, as in PyTorch and the paper. Optax's
      ``adadelta(learning_rate=None)`` skips the sign flip and *ascends*.

    References:
      Zeiler, 2012, https://arxiv.org/abs/1212.5701
    """
    owner = "adadelta"
    if learning_rate is None:
        learning_rate = 1.0
    v.check_rate(owner, "learning_rate", learning_rate)
    v.check_decay(owner, "rho", rho)
    v.check_nonnegative(owner, "eps", eps)
    v.check_rate(owner, "weight_decay", weight_decay)
    core = chain(scale_by_rms(rho, eps), scale_by_update_rms(rho, eps))
    return chain(add_decayed_weights(weight_decay, weight_decay_mask), core, scale_by_learning_rate(learning_rate))


def adam(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    nu_dtype: Any = None,
) -> Transformation:
    r"""Adam: momentum of the raw gradient, rescaled by its RMS, both debiased.

    ``chain(trace(b1, ema=True), scale_by_rms(b2, eps, eps_in_sqrt=False,
    bias_correction=True), bias_correction(b1), scale_by_learning_rate(lr))``:

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
        p_t = p_{t-1} - \eta\, \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t) + \epsilon_{root}} + \epsilon}.

    Example:
      >>> import jax.numpy as jnp, numpy as np, adaptix
      >>> opt = adaptix.adam(0.1)
      >>> u, _ = opt.update(jnp.array([5.0, -1e-3]), opt.init(jnp.zeros(2)))
      >>> np.asarray(u).round(4)  # the first step is -lr * sign(g)
      array([-0.1,  0.1], dtype=float32)

    Note:
      Equals ``optax.adam`` and ``torch.optim.Adam``. PyTorch's
      ``weight_decay`` (Adam+L2) is ``chain(add_decayed_weights(wd), adam(lr))``;
      decoupled decay is :func:`adamw`. ``nesterov=True`` is :func:`nadam`.
      ``mu_dtype`` / ``nu_dtype`` store :math:`m` / :math:`v` in another dtype
      (``jnp.bfloat16`` halves their memory): each is computed in the
      gradient's dtype, rounded once, and used as stored. bfloat16 :math:`m`
      costs little in our runs; bfloat16 :math:`v` with :math:`\beta_2 = 0.999`
      stalls (see ``docs/reliability.md``). ``mu_dtype=adaptix.quantized(),
      nu_dtype=adaptix.quantized()`` keeps both in 8-bit codes, about 2 bytes per
      parameter instead of 8 (:func:`quantized`, which says where 8 bits hurt).

    References:
      Kingma & Ba, 2015, https://arxiv.org/abs/1412.6980
    """
    return _adam_family("adam", learning_rate, b1, b2, eps, eps_root, mu_dtype, nu_dtype, nesterov=nesterov)

def adamw(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Any = None,
    *,
    nesterov: bool = False,
    nu_dtype: Any = None,
) -> Transformation:
    r"""AdamW: Adam with weight decay decoupled from the moments.

    ``chain(trace(b1, ema=True), scale_by_rms(...), bias_correction(b1),
    add_decayed_weights(wd, mask), scale_by_learning_rate(lr))``:

    .. math::

        p_t = p_{t-1} - \eta \left(\frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon} + \lambda\, p_{t-1}\right).

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> opt = adaptix.adamw(0.1, weight_decay=0.5)
      >>> opt.update(jnp.zeros(1), opt.init(jnp.ones(1)), jnp.ones(1))[0]  # only the decay
      Array([-0.05], dtype=float32)

    Note:
      Equals ``optax.adamw`` and ``torch.optim.AdamW`` (whose default decay
      is 1e-2, Optax's 1e-4). The decay is scaled by the learning rate, as in
      both references, not by the learning rate's schedule multiplier alone.

    References:
      Loshchilov & Hutter, 2019, https://arxiv.org/abs/1711.05101
    """
    return _adam_family("adamw", learning_rate, b1, b2, eps, eps_root, mu_dtype, nu_dtype, nesterov=nesterov,
                        weight_decay=weight_decay, mask=mask)

def nadam(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    momentum_decay: float | None = None,
    nu_dtype: Any = None,
) -> Transformation:
    r"""NAdam: Adam with a Nesterov look-ahead first moment.

    ``chain(nesterov_ema(b1, momentum_decay), scale_by_rms(b2, eps,
    eps_in_sqrt=False, bias_correction=True), scale_by_learning_rate(lr))``:

    .. math::

        \hat m_t = \frac{\beta_1 m_t}{1-\beta_1^{t+1}} + \frac{(1-\beta_1) g_t}{1-\beta_1^t}, \qquad
        p_t = p_{t-1} - \eta\, \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon}.

    Example:
      >>> import jax.numpy as jnp, numpy as np, adaptix
      >>> opt = adaptix.nadam(0.1)
      >>> np.asarray(opt.update(jnp.ones(1), opt.init(jnp.zeros(1)))[0]).round(4)  # -0.1 * (0.09/0.19 + 1)
      array([-0.1474], dtype=float32)

    Note:
      ``momentum_decay=None`` equals ``optax.nadam``; a float :math:`\psi`
      equals ``torch.optim.NAdam(momentum_decay=psi)`` (PyTorch's default is
      4e-3), whose momentum warms up as :math:`\beta_1(1 - 0.5\cdot 0.96^{t\psi})`.

    References:
      Dozat, 2016, https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ
    """
    return _adam_family("nadam", learning_rate, b1, b2, eps, eps_root, mu_dtype, nu_dtype, nesterov=True,
                        momentum_decay=momentum_decay)

def nadamw(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Any = None,
    *,
    momentum_decay: float | None = None,
    nu_dtype: Any = None,
) -> Transformation:
    r"""NAdamW: NAdam with decoupled weight decay.

    ``chain(nesterov_ema(b1, momentum_decay), scale_by_rms(...),
    add_decayed_weights(wd, mask), scale_by_learning_rate(lr))``.

    Example:
      >>> import jax.numpy as jnp, numpy as np, adaptix
      >>> opt = adaptix.nadamw(0.1, weight_decay=0.0)
      >>> np.asarray(opt.update(jnp.ones(1), opt.init(jnp.zeros(1)), jnp.zeros(1))[0]).round(4)
      array([-0.1474], dtype=float32)

    Note:
      Equals ``optax.nadamw``; with a float ``momentum_decay`` it equals
      ``torch.optim.NAdam(decoupled_weight_decay=True)``.

    References:
      Dozat, 2016; Loshchilov & Hutter, 2019, https://arxiv.org/abs/1711.05101
    """
    return _adam_family("nadamw", learning_rate, b1, b2, eps, eps_root, mu_dtype, nu_dtype, nesterov=True,
                        momentum_decay=momentum_decay, weight_decay=weight_decay, mask=mask)

def amsgrad(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    *,
    debias_before_max: bool = True,
    nu_dtype: Any = None,
) -> Transformation:
    r"""AMSGrad: Adam whose denominator never decreases.

    ``chain(trace(b1, ema=True), scale_by_max_rms(b2, eps, eps_root,
    debias_before_max), bias_correction(b1), scale_by_learning_rate(lr))``:

    .. math::

        \bar v_t = \max(\bar v_{t-1}, \hat v_t), \qquad
        p_t = p_{t-1} - \eta\, \frac{\hat m_t}{\sqrt{\bar v_t + \epsilon_{root}} + \epsilon}.

    Example:
      >>> import jax.numpy as jnp, numpy as np, adaptix
      >>> opt = adaptix.amsgrad(0.1)
      >>> np.asarray(opt.update(jnp.ones(1), opt.init(jnp.zeros(1)))[0]).round(4)
      array([-0.1], dtype=float32)

    Note:
      ``debias_before_max=True`` (default) equals ``optax.amsgrad`` (maximum of
      the debiased :math:`\hat v_t`); ``False`` equals
      ``torch.optim.Adam(amsgrad=True)`` (maximum of the raw :math:`v_t`, then
      debiased), which no Optax setting reproduces.

    References:
      Reddi, Kale & Kumar, 2018, https://openreview.net/forum?id=ryQu7f-RZ
    """
    owner = "amsgrad"
    v.check_bool(owner, "bias_correction_mu", bias_correction_mu)
    v.check_bool(owner, "bias_correction_nu", bias_correction_nu)
    v.check_rate(owner, "learning_rate", learning_rate)
    v.check_decay(owner, "b1", b1, debiased=bias_correction_mu)
    v.check_decay(owner, "b2", b2, debiased=bias_correction_nu)
    v.check_nonnegative(owner, "eps", eps)
    v.check_nonnegative(owner, "eps_root", eps_root)
    check_storage(owner, "mu_dtype", mu_dtype, signed=True)
    check_storage(owner, "nu_dtype", nu_dtype)
    v.check_bool(owner, "debias_before_max", debias_before_max)
    return chain(
        trace(b1, ema=True, accumulator_dtype=mu_dtype),
        scale_by_max_rms(b2, eps, eps_root, debias_before_max=debias_before_max,
                         bias_correction=bias_correction_nu, accumulator_dtype=nu_dtype),
        *((bias_correction(b1),) if bias_correction_mu else ()),
        scale_by_learning_rate(learning_rate),
    )

def adamax(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> Transformation:
    r"""Adamax: Adam with the infinity norm in place of the RMS.

    ``chain(trace(b1, ema=True), scale_by_inf_norm(b2, eps), bias_correction(b1), scale_by_learning_rate(lr))``:

    .. math::

        u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon), \qquad
        p_t = p_{t-1} - \eta\, \frac{m_t}{(1-\beta_1^t)\, u_t}.

    Example:
      >>> import jax.numpy as jnp, numpy as np, adaptix
      >>> opt = adaptix.adamax(0.1, eps=0.0)
      >>> np.asarray(opt.update(jnp.array([4.0]), opt.init(jnp.zeros(1)))[0]).round(4)
      array([-0.1], dtype=float32)

    Note:
      Equals ``optax.adamax`` and ``torch.optim.Adamax``.

    References:
      Kingma & Ba, 2015, section 7.1, https://arxiv.org/abs/1412.6980
    """
    owner = "adamax"
    v.check_rate(owner, "learning_rate", learning_rate)
    v.check_debiased_decay(owner, "b1", b1)
    v.check_decay(owner, "b2", b2)
    v.check_nonnegative(owner, "eps", eps)
    return chain(
        trace(b1, ema=True),
        scale_by_inf_norm(b2, eps),
        bias_correction(b1),
        scale_by_learning_rate(learning_rate),
    )

def radam(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    threshold: float = 5.0,
    *,
    nesterov: bool = False,
) -> Transformation:
    r"""RAdam: Adam whose adaptive step is rectified while its variance is unreliable.

    ``chain(trace(b1, ema=True), scale_by_rectified_rms(b2, eps, eps_root,
    threshold), bias_correction(b1), scale_by_learning_rate(lr))``; see
    :func:`scale_by_rectified_rms` for the rectification :math:`r_t`.

    Example:
      >>> import jax.numpy as jnp, numpy as np, adaptix
      >>> opt = adaptix.radam(0.1)
      >>> np.asarray(opt.update(jnp.full(1, 3.0), opt.init(jnp.zeros(1)))[0]).round(4)  # warm-up: SGD with momentum
      array([-0.3], dtype=float32)

    Note:
      Equals ``optax.radam``. PyTorch's ``RAdam`` uses ``rho_t > 5`` and puts
      eps outside :math:`\sqrt{v_t}` before debiasing, so it differs slightly.

    References:
      Liu et al., 2020, https://arxiv.org/abs/1908.03265
    """
    _check_adam_family("radam", learning_rate, b1, b2, eps, eps_root)
    v.check_real("radam", "threshold", threshold)
    v.check_bool("radam", "nesterov", nesterov)
    first_moment = (nesterov_ema(b1),) if nesterov else (trace(b1, ema=True), bias_correction(b1))
    return chain(
        first_moment[0],
        scale_by_rectified_rms(b2, eps, eps_root, threshold),
        *first_moment[1:],
        scale_by_learning_rate(learning_rate),
    )


def lion(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.99,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 1e-3,
    mask: Any = None,
) -> Transformation:
    r"""Lion: the sign of an interpolated momentum, with decoupled weight decay.

    ``chain(lion_momentum(b1, b2), scale_by_sign(), add_decayed_weights(wd, mask), scale_by_learning_rate(lr))``:

    .. math::

        p_t = p_{t-1} - \eta\left(\operatorname{sign}(\beta_1 m_{t-1} + (1-\beta_1) g_t)
              + \lambda p_{t-1}\right), \qquad m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t.

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> opt = adaptix.lion(0.1, weight_decay=0.0)
      >>> opt.update(jnp.array([3.0, -1e-6]), opt.init(jnp.zeros(2)), jnp.zeros(2))[0]
      Array([-0.1,  0.1], dtype=float32)

    Note:
      Equals ``optax.lion``. PyTorch has no Lion.

    References:
      Chen et al., 2023, https://arxiv.org/abs/2302.06675
    """
    owner = "lion"
    v.check_rate(owner, "learning_rate", learning_rate)
    v.check_decay(owner, "b1", b1)
    v.check_decay(owner, "b2", b2)
    v.check_rate(owner, "weight_decay", weight_decay)
    check_storage(owner, "mu_dtype", mu_dtype, signed=True)
    return chain(
        lion_momentum(b1, b2, mu_dtype),
        scale_by_sign(),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def sign_sgd(learning_rate: ScalarOrSchedule) -> Transformation:
    r"""Sign-SGD: a fixed-size step against the sign of each coordinate.

    ``chain(scale_by_sign(), scale_by_learning_rate(lr))``:
    :math:`p_t = p_{t-1} - \eta \operatorname{sign}(g_t)`.

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> opt = adaptix.sign_sgd(0.1)
      >>> opt.update(jnp.array([3.0, -1e-6, 0.0]), opt.init(jnp.zeros(3)))[0]
      Array([-0.1,  0.1, -0. ], dtype=float32)

    Note:
      Equals ``optax.sign_sgd``.

    References:
      Bernstein et al., 2018, https://arxiv.org/abs/1802.04434
    """
    v.check_rate("sign_sgd", "learning_rate", learning_rate)
    return chain(scale_by_sign(), scale_by_learning_rate(learning_rate))


def signum(
    learning_rate: ScalarOrSchedule,
    beta: float = 0.9,
    accumulator_dtype: Any = None,
) -> Transformation:
    r"""Signum: sign-SGD on an exponential moving average of the gradient.

    ``chain(ema(beta, debias=False), scale_by_sign(), scale_by_learning_rate(lr))``
    (no debiasing: it would not change the sign; the EMA keeps Optax's step
    counter).

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> opt = adaptix.signum(0.1)
      >>> opt.update(jnp.array([3.0, -1e-6]), opt.init(jnp.zeros(2)))[0]
      Array([-0.1,  0.1], dtype=float32)

    Note:
      Equals ``optax.signum``.

    References:
      Bernstein et al., 2018, https://arxiv.org/abs/1802.04434
    """
    v.check_rate("signum", "learning_rate", learning_rate)
    v.check_decay("signum", "beta", beta)
    check_storage("signum", "accumulator_dtype", accumulator_dtype, signed=True)
    return chain(
        ema(beta, debias=False, accumulator_dtype=accumulator_dtype),
        scale_by_sign(),
        scale_by_learning_rate(learning_rate),
    )


def rprop(
    learning_rate: float,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
) -> Transformation:
    r"""Rprop: sign steps whose per-coordinate size adapts to sign agreement.

    ``chain(scale_by_rprop(lr, eta_minus, eta_plus, min_step_size, max_step_size), scale(-1.0))``;
    see :func:`scale_by_rprop`. Meant for full-batch training.

    Example:
      >>> import jax.numpy as jnp, adaptix
      >>> opt = adaptix.rprop(0.1)
      >>> opt.update(jnp.array([2.0, -3.0]), opt.init(jnp.zeros(2)))[0]  # the first step is taken
      Array([-0.1,  0.1], dtype=float32)

    Note:
      Equals ``torch.optim.Rprop``. ``optax.rprop`` applies each step one step
      late (its first update is zero); adaptix's update :math:`t` equals its
      update :math:`t+1`.

    References:
      Riedmiller & Braun, 1993, https://doi.org/10.1109/ICNN.1993.298623
    """
    owner = "rprop"
    v.check_rate(owner, "learning_rate", learning_rate)
    v.check_range(owner, "eta_minus", eta_minus, 0.0, 1.0, low_open=True, high_open=True)
    v.check_range(owner, "eta_plus", eta_plus, 1.0, low_open=True)
    v.check_range(owner, "min_step_size", min_step_size, 0.0, low_open=True)
    v.check_range(owner, "max_step_size", max_step_size, 0.0, low_open=True)
    if callable(learning_rate):
        raise TypeError(f"{owner}: learning_rate is Rprop's initial step size and cannot be a schedule.")
    if not any(isinstance(x, jax.core.Tracer) for x in (min_step_size, max_step_size)):
        if float(min_step_size) > float(max_step_size):
            raise ValueError(
                f"{owner}: min_step_size must be <= max_step_size, got "
                f"min_step_size={min_step_size!r} > max_step_size={max_step_size!r}."
            )
    return chain(
        scale_by_rprop(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size),
        scale(-1.0),
    )
