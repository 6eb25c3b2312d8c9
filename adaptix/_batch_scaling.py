"""Batch-size scaling rules: map hyperparameters tuned at batch ``B`` to batch ``kappa * B``.

- :func:`sqrt_scaling` — the square-root rule of the SDE analysis of RMSProp and
  Adam (Malladi et al., 2022): learning rate ×√κ, every ``1 - beta`` ×κ,
  ``eps`` ÷√κ added to the root (÷κ inside it); heavy-ball momentum as an EMA
  of the steps (``1 - momentum`` ×κ, learning rate ×κ^1.5);
- :func:`linear_scaling` — the linear rule for SGD (Goyal et al., 2017):
  learning rate ×κ, momentum unchanged;
- :func:`scale_hyperparameters` — either, by name.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

#: Keys that are a learning rate (a number or an Optax schedule).
LEARNING_RATE_KEYS = ("learning_rate", "lr")
#: Keys that are decay rates ``beta`` of an EMA (Adam's ``b1``/``b2``, RMSProp's ``decay``, ...).
DECAY_KEYS = ("b1", "b2", "decay", "rho", "alpha", "beta", "beta1", "beta2")
#: Heavy-ball momentum ``t = mu t + u`` (``sgd``, ``rmsprop``; PyTorch's ``momentum``): an EMA of gain ``1/(1-mu)``.
HEAVY_BALL_KEYS = ("momentum",)
#: An epsilon added to the root of the second moment (or inside it, with ``eps_in_sqrt``).
EPS_KEYS = ("eps",)
#: Added to the second moment itself, inside the root: ``eps_root``, RMSProp's initial ``v`` (``initial_scale``).
EPS_ROOT_KEYS = ("eps_root", "initial_scale")
#: Keys of an optimizer whose ``eps`` is inside the root by default: RMSProp's ``decay`` (``adaptix.rmsprop``,
#: ``optax.rmsprop``, ``scale_by_rms``, ``scale_by_stddev``: ``eps_in_sqrt=True``; PyTorch's RMSprop says ``alpha``).
EPS_IN_SQRT_BY_DEFAULT_KEYS = ("decay",)
#: AdaGrad's keys: a sum of squares, not an EMA, which the square-root rule does not cover.
ADAGRAD_KEYS = ("initial_accumulator_value",)
#: Decoupled weight decay.
WEIGHT_DECAY_KEYS = ("weight_decay",)
#: The exponent p of the second moment (``scale_by_rms``'s ``power``): 1/2 for RMSProp and Adam.
POWER_KEYS = ("power",)
#: Keys passed through unchanged by both rules.
UNCHANGED_KEYS = (
    "nesterov", "eps_in_sqrt", "centered", "bias_correction", "mask", "weight_decay_mask", "mu_dtype", "nu_dtype",
    "accumulator_dtype", "momentum_decay", "debias_before_max", "threshold", "nesterov_momentum",
)
KNOWN_KEYS = (*LEARNING_RATE_KEYS, *DECAY_KEYS, "betas", *HEAVY_BALL_KEYS, *EPS_KEYS, *EPS_ROOT_KEYS, *ADAGRAD_KEYS,
              *WEIGHT_DECAY_KEYS, *POWER_KEYS, *UNCHANGED_KEYS)
RULES = ("sqrt", "linear")


def _check_kappa(owner: str, kappa: Any) -> float:
    if isinstance(kappa, bool) or not isinstance(kappa, numbers.Real):
        raise TypeError(f"{owner}: kappa (the batch-size ratio) must be a real number, got {kappa!r}.")
    k = float(kappa)
    if not (math.isfinite(k) and k > 0):
        raise ValueError(f"{owner}: kappa (the batch-size ratio new/old) must be finite and in (0, inf), "
                         f"got {kappa!r}.")
    return k


def _scale_rate(rate: Any, factor: float, kappa: float) -> Any:
    """``factor * rate``; a schedule is also re-timed: ``factor * rate(kappa * count)``.

    At batch ``kappa * B``, step ``k`` has seen as many samples as step ``kappa * k`` at batch ``B``.
    """
    if callable(rate):
        def scaled(count):
            return factor * rate(jnp.asarray(count) * kappa)

        return scaled
    return rate * factor


def _scale_learning_rate(owner: str, key: str, value: Any, factor: float, kappa: float) -> Any:
    if value is None:
        return None
    if not callable(value) and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise TypeError(f"{owner}: {key} must be a number or a schedule, got {value!r}.")
    return _scale_rate(value, factor, kappa)


def _scale_decay(owner: str, key: str, beta: Any, kappa: float) -> Any:
    if isinstance(beta, (tuple, list)):  # PyTorch's betas=(b1, b2)
        return type(beta)(_scale_decay(owner, f"{key}[{i}]", b, kappa) for i, b in enumerate(beta))
    if beta is None:
        return None
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
        raise TypeError(f"{owner}: {key} must be a real number in [0, 1), got {beta!r}.")
    b = float(beta)
    if not (0.0 <= b < 1.0):
        raise ValueError(f"{owner}: {key} must be finite and in [0, 1), got {beta!r}.")
    one_minus = kappa * (1.0 - b)
    if one_minus >= 1.0 - 1e-12:  # (1 - 0.9) * 10 rounds to just below 1
        raise ValueError(
            f"{owner}: kappa * (1 - {key}) = {kappa:g} * {1.0 - b:g} = {one_minus:g} >= 1, so the scaled "
            f"{key} = 1 - kappa * (1 - {key}) would be <= 0. The square-root rule needs kappa < "
            f"1 / (1 - {key}) = {1.0 / (1.0 - b):g}; use a larger {key} at the base batch size or a smaller kappa."
        )
    return 1.0 - one_minus


def _is_on(momentum: Any) -> bool:
    """Whether a heavy-ball momentum is on: anything but ``None`` and ``0`` (plain steps); checked when scaled."""
    return not (momentum is None or (isinstance(momentum, numbers.Real) and not isinstance(momentum, bool)
                                     and momentum == 0))


def _eps_in_sqrt(owner: str, hparams: Mapping[str, Any], eps_in_sqrt: bool | None) -> bool:
    """Where ``eps`` sits: the mapping's ``eps_in_sqrt``, else the argument, else the optimizer's default."""
    given = hparams.get("eps_in_sqrt")
    if given is not None and eps_in_sqrt is not None and given != eps_in_sqrt:
        raise ValueError(f"{owner}: eps_in_sqrt={eps_in_sqrt!r} contradicts the hyperparameters' "
                         f"eps_in_sqrt={given!r}; give one of them.")
    flag = given if given is not None else eps_in_sqrt
    if flag is None:
        return any(key in hparams for key in EPS_IN_SQRT_BY_DEFAULT_KEYS)
    if not isinstance(flag, (bool, jnp.bool_)):
        raise TypeError(f"{owner}: eps_in_sqrt must be True or False, got {flag!r}.")
    return bool(flag)


def _exponent(owner: str, hparams: Mapping[str, Any]) -> float:
    """The exponent p of the second moment in the step ``g / v^p``: ``hparams["power"]``, else 1/2."""
    p = hparams.get("power", 0.5)
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 < p <= 1:
        raise ValueError(f"{owner}: power must be a number in (0, 1], got {p!r}.")
    return float(p)


def _unknown(owner: str, key: str) -> str:
    return (f"{owner}: does not know how to scale {key!r}; known keys: {', '.join(sorted(KNOWN_KEYS))}. "
            "Pass strict=False to leave unknown keys unchanged.")


def _linear_rule(owner: str, hparams: Mapping[str, Any], k: float, strict: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in hparams.items():
        if key in LEARNING_RATE_KEYS:
            out[key] = _scale_learning_rate(owner, key, value, k, k)
        elif strict and key not in KNOWN_KEYS:
            raise ValueError(_unknown(owner, key))
        else:
            out[key] = value
    return out


def _sqrt_rule(owner: str, hparams: Mapping[str, Any], k: float, strict: bool,
               eps_in_sqrt: bool | None) -> dict[str, Any]:
    p = _exponent(owner, hparams)
    root = math.sqrt(k)  # p = 1/2 (RMSProp, Adam): exactly the square root
    preconditioner = root if p == 0.5 else k**p  # v ~ noise / batch, so v^p grows x kappa^p
    eps_divisor = k if _eps_in_sqrt(owner, hparams, eps_in_sqrt) else preconditioner
    heavy_ball = any(_is_on(hparams.get(key)) for key in HEAVY_BALL_KEYS)
    lr_factor = root if p == 0.5 else k ** (1 - p)
    if heavy_ball:
        lr_factor *= k  # with a heavy ball, eta / (1 - mu) is what grows x kappa^(1-p)
    out: dict[str, Any] = {}
    for key, value in hparams.items():
        if key in LEARNING_RATE_KEYS:
            out[key] = _scale_learning_rate(owner, key, value, lr_factor, k)
        elif key in UNCHANGED_KEYS or key in POWER_KEYS:
            out[key] = value
        elif key in ADAGRAD_KEYS:
            raise ValueError(
                f"{owner}: {key} is AdaGrad's, whose accumulator is a sum of squares over all steps, not an EMA: "
                "the square-root rule does not cover it (with the gradient noise dominating, AdaGrad's loss per "
                "sample seen hardly depends on the batch size with its learning rate unchanged)."
            )
        elif key in DECAY_KEYS or key == "betas":
            out[key] = _scale_decay(owner, key, value, k)
        elif key in HEAVY_BALL_KEYS:
            out[key] = _scale_decay(owner, key, value, k) if _is_on(value) else value
        elif key in EPS_KEYS:
            out[key] = value / eps_divisor
        elif key in EPS_ROOT_KEYS:
            out[key] = value / k
        elif key in WEIGHT_DECAY_KEYS:
            out[key] = _scale_rate(value, preconditioner, k)
        elif strict:
            raise ValueError(_unknown(owner, key))
        else:
            out[key] = value
    return out


def scale_hyperparameters(hparams: Mapping[str, Any], kappa: float, rule: str = "sqrt", *,
                          strict: bool = True, eps_in_sqrt: bool | None = None) -> dict[str, Any]:
    r"""Maps hyperparameters tuned at batch size :math:`B` to those for batch size :math:`\kappa B`.

    ``rule="sqrt"`` (RMSProp, Adam; Malladi et al., 2022, the square-root
    scaling rule derived from their SDE approximations):

    .. math::

        \eta \mapsto \sqrt{\kappa}\,\eta, \qquad
        1-\beta \mapsto \kappa\,(1-\beta)\ \ (\beta_1, \beta_2, \text{decay}, \dots), \qquad
        \lambda \mapsto \sqrt{\kappa}\,\lambda,

        \epsilon \mapsto \epsilon/\sqrt{\kappa}\ \ \text{in } g/(\sqrt{v}+\epsilon), \qquad
        \epsilon \mapsto \epsilon/\kappa\ \ \text{in } g/\sqrt{v+\epsilon}\ \
        (\texttt{eps\_in\_sqrt}, \epsilon_{root}, v_0 = \texttt{initial\_scale}),

    and with a heavy-ball momentum :math:`\mu` (``momentum``: RMSProp's
    :math:`t_k = \mu t_{k-1} + \eta\, g_k/\sqrt{v_k}`, :math:`p_k = p_{k-1} - t_k`):

    .. math::

        1-\mu \mapsto \kappa\,(1-\mu), \qquad \eta \mapsto \kappa^{3/2}\,\eta
        \quad\Big(\text{so } \frac{\eta}{1-\mu} \mapsto \sqrt{\kappa}\,\frac{\eta}{1-\mu}\Big).

    With another exponent :math:`p` of the second moment (``power``, the step
    :math:`g/\hat v^{\,p}` of :func:`adaptix.scale_by_rms`; :math:`p = \frac12` above):
    :math:`\eta \mapsto \kappa^{1-p}\eta` (:math:`\kappa^{2-p}\eta` with a heavy ball),
    :math:`\epsilon \mapsto \epsilon/\kappa^p` outside the power (÷κ inside it),
    :math:`\lambda \mapsto \kappa^p\lambda`. As :math:`p \to 0` this is the linear rule; the
    diagonal natural gradient (:math:`p = 1`) keeps its learning rate.

    ``rule="linear"`` (SGD, SGD with momentum; Goyal et al., 2017):

    .. math::

        \eta \mapsto \kappa\,\eta, \qquad \text{everything else unchanged.}

    A learning-rate schedule :math:`\eta(k)` becomes
    :math:`k \mapsto c\,\eta(\kappa k)` (:math:`c = \sqrt\kappa`, :math:`\kappa^{3/2}` or :math:`\kappa`),
    so that it is a function of the samples seen, as the rules intend.

    Args:
      hparams: keyword arguments of an optimizer, e.g.
        ``{"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8}``. Known
        keys: learning rates ``learning_rate``/``lr``; EMA decays ``b1``, ``b2``,
        ``decay``, ``rho``, ``alpha``, ``beta``, ``beta1``, ``beta2`` and
        PyTorch's ``betas`` pair; the heavy-ball ``momentum``; ``eps``,
        ``eps_root``, ``initial_scale``, ``weight_decay``; AdaGrad's
        ``initial_accumulator_value`` (refused by the square-root rule); and
        flags passed through unchanged (``nesterov``, ``eps_in_sqrt``, ``mask``, ...).
      kappa: the ratio new batch size / old batch size, ``> 0`` (``< 1`` shrinks).
      rule: ``"sqrt"`` or ``"linear"``.
      strict: raise on keys the rule does not know (default); ``False`` passes
        them through unchanged.
      eps_in_sqrt: where ``eps`` sits, for the square-root rule, when
        ``hparams`` has no ``eps_in_sqrt`` (a primitive whose signature lacks
        it). ``None``: the optimizer's default, read from the keys — inside
        the root with RMSProp's ``decay`` (``adaptix.rmsprop``,
        ``optax.rmsprop``, ``scale_by_rms``, ``scale_by_stddev``), outside
        otherwise (the Adam family; PyTorch's ``RMSprop(alpha, eps)``).

    Returns:
      A new dict with the scaled values (the input is not modified).

    Raises:
      ValueError: if ``kappa <= 0``, if a decay or momentum is outside ``[0, 1)``, if
        :math:`\kappa(1-\beta) \ge 1` or :math:`\kappa(1-\mu) \ge 1` under the
        square-root rule (the scaled value would be :math:`\le 0`), on AdaGrad's
        ``initial_accumulator_value`` under the square-root rule, if
        ``eps_in_sqrt`` contradicts ``hparams["eps_in_sqrt"]``, or on an unknown
        key with ``strict``.

    Example:
      >>> import adaptix
      >>> hp = adaptix.scale_hyperparameters({"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8}, 4)
      >>> {k: round(v, 12) for k, v in hp.items()}
      {'learning_rate': 0.002, 'b1': 0.6, 'b2': 0.996, 'eps': 5e-09}
      >>> rms = adaptix.sqrt_scaling({"learning_rate": 1e-4, "decay": 0.99, "eps": 1e-8, "momentum": 0.9}, 4)
      >>> {k: round(v, 12) for k, v in rms.items()}  # eps inside the root (rmsprop's default): / kappa
      {'learning_rate': 0.0008, 'decay': 0.96, 'eps': 2.5e-09, 'momentum': 0.6}
      >>> adaptix.scale_hyperparameters({"learning_rate": 0.1, "momentum": 0.9}, 4, rule="linear")
      {'learning_rate': 0.4, 'momentum': 0.9}
      >>> adaptix.adam(**hp)  # doctest: +ELLIPSIS
      CountedTransformation(...)

    Note:
      Why these maps. While the gradient noise dominates the squared mean
      gradient, a minibatch gradient is :math:`g = \nabla f + \xi` with
      :math:`\operatorname{Var}\xi = \Sigma/B`, so :math:`v \approx \Sigma/B`
      and :math:`g/\sqrt{v}` has a drift :math:`\propto \sqrt{B}\,\nabla f` and
      a noise of order 1 per step. Per sample seen (:math:`1/B` steps) the drift
      is :math:`\propto \eta/\sqrt{B}` and the noise variance
      :math:`\propto \eta^2/B`: both are kept by :math:`\eta \propto \sqrt{B}`.
      An EMA remembers :math:`B/(1-\beta)` samples: kept by
      :math:`1-\beta \propto B`. A constant added to :math:`v` must scale like
      :math:`v`, ÷κ; one added to :math:`\sqrt v`, ÷√κ. With :math:`g/v^p` the
      preconditioner grows as :math:`B^p`: per sample the drift is
      :math:`\propto \eta B^{p-1}` and the noise variance :math:`\propto \eta^2 B^{2p-2}`,
      both kept by :math:`\eta \propto B^{1-p}`.

      A heavy ball placed after the learning rate is an EMA of the steps:
      :math:`t_k = \frac{\eta}{1-\mu}\,[\mu s_{k-1} + (1-\mu)\, g_k/\sqrt{v_k}]`
      with :math:`s = (1-\mu) t/\eta`, i.e. Adam's form with learning rate
      :math:`\eta/(1-\mu)` and decay :math:`\mu`. The rule maps those two as
      Adam's :math:`\eta` and :math:`\beta_1`, which keeps the SDE of Malladi
      et al., whose decays are :math:`1-\beta = c\,\eta^2` (memory on the SDE's
      time scale): :math:`c = (1-\mu)/(\eta/(1-\mu))^2 = (1-\mu)^3/\eta^2` is
      unchanged. Keeping
      :math:`\mu` and taking :math:`\eta \mapsto \sqrt\kappa\,\eta` is the same
      only in the limit of a momentum too fast to matter; treating :math:`\mu`
      as an EMA decay of the raw gradient (:math:`1-\mu \mapsto \kappa(1-\mu)`,
      :math:`\eta \mapsto \sqrt\kappa\,\eta`) shrinks :math:`\eta/(1-\mu)` as
      :math:`\kappa^{-1/2}`. Nesterov's look-ahead gives the raw step a weight
      :math:`1-\mu` next to the average, which vanishes in that limit; it is
      mapped alike. Under the linear rule (SGD, whose SDE time step is
      :math:`\eta`), Goyal et al. keep :math:`\mu`: exact for a fast momentum,
      where SGD with momentum follows SGD with :math:`\eta/(1-\mu)` (Smith et
      al., 2018).

      AdaGrad is not covered: its :math:`G_t = \sum g^2` is a sum, not an EMA,
      and after the same samples at :math:`\kappa B` it is :math:`\kappa^2` times
      smaller, so one step of :math:`g/\sqrt{G}` is :math:`\kappa` old ones: its
      curve per sample hardly depends on :math:`B` with :math:`\eta` unchanged.

      The square-root rule keeps the SDE of RMSProp/Adam unchanged only while the
      gradient noise dominates the squared mean gradient (small batches) and for
      :math:`\kappa(1-\beta)` well below 1; the linear rule is the SGD analogue
      (where the SDE time step is :math:`\eta`, not :math:`\eta^2`). Neither rule
      holds once the batch exceeds the critical batch size. Decoupled weight
      decay (AdamW's ``weight_decay``, applied as :math:`\eta\lambda p` per
      step) keeps its decay per sample seen: :math:`\kappa` old steps decay by
      :math:`\kappa\eta\lambda`, one new step by :math:`\eta'\lambda'`. Under
      the square-root rule that gives :math:`\lambda' = \sqrt\kappa\,\lambda`,
      which is also what keeps the SDE's decay drift :math:`\lambda/\eta` (per
      unit of SDE time :math:`\eta^2`) unchanged; under the linear rule
      :math:`\lambda' = \lambda`. An L2 penalty inside the loss is a property of
      the loss and needs no scaling.

    References:
      Malladi, Lyu, Panigrahi & Arora, 2022, On the SDEs and Scaling Rules for
      Adaptive Gradient Algorithms, NeurIPS, https://arxiv.org/abs/2205.10287;
      Goyal et al., 2017, Accurate, Large Minibatch SGD: Training ImageNet in
      1 Hour, https://arxiv.org/abs/1706.02677; Smith, Kindermans, Ying & Le,
      2018, Don't Decay the Learning Rate, Increase the Batch Size, ICLR
      (SGD's noise scale with momentum, :math:`\eta N / (B(1-\mu))`),
      https://arxiv.org/abs/1711.00489
    """
    owner = "scale_hyperparameters"
    if rule not in RULES:
        raise ValueError(f"{owner}: rule must be one of {RULES}, got {rule!r}.")
    if not isinstance(hparams, Mapping):
        raise TypeError(f"{owner}: hparams must be a dict of keyword arguments, got {type(hparams).__name__}.")
    k = _check_kappa(owner, kappa)
    if rule == "linear":
        return _linear_rule(owner, hparams, k, strict)
    return _sqrt_rule(owner, hparams, k, strict, eps_in_sqrt)


def sqrt_scaling(hparams: Mapping[str, Any], kappa: float, *, strict: bool = True,
                 eps_in_sqrt: bool | None = None) -> dict[str, Any]:
    r"""The square-root scaling rule for RMSProp/Adam: ``scale_hyperparameters(hparams, kappa, "sqrt")``.

    .. math::

        \eta \mapsto \sqrt{\kappa}\,\eta, \quad 1-\beta_i \mapsto \kappa(1-\beta_i), \quad
        \epsilon \mapsto \epsilon/\sqrt{\kappa}\ (\epsilon/\kappa \text{ inside the root}),

    and with a heavy-ball ``momentum`` :math:`\mu`:
    :math:`1-\mu \mapsto \kappa(1-\mu)`, :math:`\eta \mapsto \kappa^{3/2}\eta`
    (see :func:`scale_hyperparameters`).

    Example:
      >>> import adaptix
      >>> hp = adaptix.sqrt_scaling({"learning_rate": 1e-2, "decay": 0.99}, 9)
      >>> round(hp["learning_rate"], 12), round(hp["decay"], 12)
      (0.03, 0.91)

    References:
      Malladi et al., 2022, https://arxiv.org/abs/2205.10287
    """
    return scale_hyperparameters(hparams, kappa, "sqrt", strict=strict, eps_in_sqrt=eps_in_sqrt)


def linear_scaling(hparams: Mapping[str, Any], kappa: float, *, strict: bool = True) -> dict[str, Any]:
    r"""The linear scaling rule for SGD: ``scale_hyperparameters(hparams, kappa, "linear")``.

    .. math::

        \eta \mapsto \kappa\,\eta \quad (\text{momentum, weight decay unchanged}).

    Example:
      >>> import adaptix
      >>> adaptix.linear_scaling({"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}, 8)
      {'learning_rate': 0.8, 'momentum': 0.9, 'nesterov': True}

    References:
      Goyal et al., 2017, https://arxiv.org/abs/1706.02677
    """
    return scale_hyperparameters(hparams, kappa, "linear", strict=strict)
