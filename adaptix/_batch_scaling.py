"""Batch-size scaling rules: map hyperparameters tuned at batch ``B`` to batch ``kappa * B``.

- :func:`sqrt_scaling` — the square-root rule of the SDE analysis of RMSProp and
  Adam (Malladi et al., 2022): learning rate ×√κ, every ``1 - beta`` ×κ,
  ``eps`` ÷√κ;
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
DECAY_KEYS = ("b1", "b2", "decay", "rho", "momentum", "alpha", "beta", "beta1", "beta2")
#: Keys that are an epsilon added to a root-mean-square (``eps_root``: inside the root).
EPS_KEYS = ("eps",)
EPS_ROOT_KEYS = ("eps_root",)
#: Decoupled weight decay.
WEIGHT_DECAY_KEYS = ("weight_decay",)
#: Keys passed through unchanged by both rules.
UNCHANGED_KEYS = (
    "nesterov", "eps_in_sqrt", "centered", "bias_correction", "initial_scale", "initial_accumulator_value",
    "mask", "weight_decay_mask", "mu_dtype", "nu_dtype", "accumulator_dtype", "momentum_decay", "debias_before_max",
    "threshold", "nesterov_momentum",
)
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


def scale_hyperparameters(hparams: Mapping[str, Any], kappa: float, rule: str = "sqrt", *,
                          strict: bool = True) -> dict[str, Any]:
    r"""Maps hyperparameters tuned at batch size :math:`B` to those for batch size :math:`\kappa B`.

    ``rule="sqrt"`` (RMSProp, Adam; Malladi et al., 2022, the square-root
    scaling rule derived from their SDE approximations):

    .. math::

        \eta \mapsto \sqrt{\kappa}\,\eta, \qquad
        1-\beta \mapsto \kappa\,(1-\beta)\ \ (\beta_1, \beta_2, \text{decay}, \dots), \qquad
        \epsilon \mapsto \epsilon/\sqrt{\kappa}, \qquad
        \epsilon_{root} \mapsto \epsilon_{root}/\kappa, \qquad
        \lambda \mapsto \sqrt{\kappa}\,\lambda.

    ``rule="linear"`` (SGD, SGD with momentum; Goyal et al., 2017):

    .. math::

        \eta \mapsto \kappa\,\eta, \qquad \text{everything else unchanged.}

    A learning-rate schedule :math:`\eta(k)` becomes
    :math:`k \mapsto c\,\eta(\kappa k)` (:math:`c = \sqrt\kappa` or :math:`\kappa`),
    so that it is a function of the samples seen, as the rules intend.

    Args:
      hparams: keyword arguments of an optimizer, e.g.
        ``{"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8}``. Known
        keys: learning rates ``learning_rate``/``lr``; decays ``b1``, ``b2``,
        ``decay``, ``rho``, ``momentum``, ``alpha``, ``beta``, ``beta1``,
        ``beta2`` and PyTorch's ``betas`` pair; ``eps``, ``eps_root``,
        ``weight_decay``; and flags passed through unchanged (``nesterov``,
        ``eps_in_sqrt``, ``mask``, ...).
      kappa: the ratio new batch size / old batch size, ``> 0`` (``< 1`` shrinks).
      rule: ``"sqrt"`` or ``"linear"``.
      strict: raise on keys the rule does not know (default); ``False`` passes
        them through unchanged.

    Returns:
      A new dict with the scaled values (the input is not modified).

    Raises:
      ValueError: if ``kappa <= 0``, if a decay is outside ``[0, 1)``, if
        :math:`\kappa(1-\beta) \ge 1` under the square-root rule (the scaled
        :math:`\beta` would be :math:`\le 0`), or on an unknown key with ``strict``.

    Example:
      >>> import adaptix
      >>> hp = adaptix.scale_hyperparameters({"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8}, 4)
      >>> {k: round(v, 12) for k, v in hp.items()}
      {'learning_rate': 0.002, 'b1': 0.6, 'b2': 0.996, 'eps': 5e-09}
      >>> adaptix.scale_hyperparameters({"learning_rate": 0.1, "momentum": 0.9}, 4, rule="linear")
      {'learning_rate': 0.4, 'momentum': 0.9}
      >>> adaptix.adam(**hp)  # doctest: +ELLIPSIS
      CountedTransformation(...)

    Note:
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
      1 Hour, https://arxiv.org/abs/1706.02677
    """
    owner = "scale_hyperparameters"
    if rule not in RULES:
        raise ValueError(f"{owner}: rule must be one of {RULES}, got {rule!r}.")
    if not isinstance(hparams, Mapping):
        raise TypeError(f"{owner}: hparams must be a dict of keyword arguments, got {type(hparams).__name__}.")
    k = _check_kappa(owner, kappa)
    root = math.sqrt(k)
    out: dict[str, Any] = {}
    for key, value in hparams.items():
        if key in LEARNING_RATE_KEYS:
            if value is None:
                out[key] = None
                continue
            if not callable(value) and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
                raise TypeError(f"{owner}: {key} must be a number or a schedule, got {value!r}.")
            out[key] = _scale_rate(value, root if rule == "sqrt" else k, k)
        elif rule == "linear" or key in UNCHANGED_KEYS:
            if strict and key not in (*DECAY_KEYS, "betas", *EPS_KEYS, *EPS_ROOT_KEYS, *WEIGHT_DECAY_KEYS,
                                      *UNCHANGED_KEYS):
                raise ValueError(_unknown(owner, key))
            out[key] = value
        elif key in DECAY_KEYS or key == "betas":
            out[key] = _scale_decay(owner, key, value, k)
        elif key in EPS_KEYS:
            out[key] = value / root
        elif key in EPS_ROOT_KEYS:
            out[key] = value / k
        elif key in WEIGHT_DECAY_KEYS:
            out[key] = _scale_rate(value, root, k)
        elif strict:
            raise ValueError(_unknown(owner, key))
        else:
            out[key] = value
    return out


def _unknown(owner: str, key: str) -> str:
    known = sorted({*LEARNING_RATE_KEYS, *DECAY_KEYS, "betas", *EPS_KEYS, *EPS_ROOT_KEYS, *WEIGHT_DECAY_KEYS,
                    *UNCHANGED_KEYS})
    return (f"{owner}: does not know how to scale {key!r}; known keys: {', '.join(known)}. "
            "Pass strict=False to leave unknown keys unchanged.")


def sqrt_scaling(hparams: Mapping[str, Any], kappa: float, *, strict: bool = True) -> dict[str, Any]:
    r"""The square-root scaling rule for RMSProp/Adam: ``scale_hyperparameters(hparams, kappa, "sqrt")``.

    .. math::

        \eta \mapsto \sqrt{\kappa}\,\eta, \quad 1-\beta_i \mapsto \kappa(1-\beta_i), \quad
        \epsilon \mapsto \epsilon/\sqrt{\kappa}.

    Example:
      >>> import adaptix
      >>> hp = adaptix.sqrt_scaling({"learning_rate": 1e-2, "decay": 0.99}, 9)
      >>> round(hp["learning_rate"], 12), round(hp["decay"], 12)
      (0.03, 0.91)

    References:
      Malladi et al., 2022, https://arxiv.org/abs/2205.10287
    """
    return scale_hyperparameters(hparams, kappa, "sqrt", strict=strict)


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

