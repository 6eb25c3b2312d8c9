"""How optimizers are named on the command line: adaptix aliases, a few special names, ``module:function``."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable

import jax.numpy as jnp
import optax

import adaptix


def adam_without_bias_correction(
    learning_rate: optax.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> adaptix.Transformation:
    r"""Adam with neither moment debiased: ``m_t / (sqrt(v_t) + eps)`` times ``-lr``.

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
        p_t = p_{t-1} - \eta\, \frac{m_t}{\sqrt{v_t} + \epsilon}.

    Example:
      >>> import jax.numpy as jnp, numpy as np
      >>> opt = adam_without_bias_correction(0.1, b1=0.0, b2=0.99)
      >>> np.asarray(opt.update(jnp.array([5.0]), opt.init(jnp.zeros(1)))[0]).round(4)  # -lr / sqrt(1 - b2)
      array([-1.], dtype=float32)
    """
    return adaptix.chain(
        adaptix.trace(b1, ema=True),
        adaptix.scale_by_rms(b2, eps, eps_in_sqrt=False, bias_correction=False),
        adaptix.scale_by_learning_rate(learning_rate),
    )


# Every adaptix alias can be named on the command line; these need more than a learning rate.
SPECIAL_OPTIMIZERS: dict[str, Callable[[optax.ScalarOrSchedule], optax.GradientTransformation]] = {
    "sgd-nesterov": lambda lr: adaptix.sgd(lr, momentum=0.9, nesterov=True),
    "sgd-nesterov-0.99": lambda lr: adaptix.sgd(lr, momentum=0.99, nesterov=True),
    # Kingma & Ba's AdaGrad (section 5): theta - alpha g / sqrt(sum g^2), the accumulator from 0, eps outside the
    # root; it anneals by itself, so the experiments give it a constant alpha (adaptix.adagrad is Optax's form)
    "adagrad-paper": lambda lr: adaptix.adagrad(lr, initial_accumulator_value=0.0, eps=1e-8, eps_in_sqrt=False),
    "sgd-momentum": lambda lr: adaptix.sgd(lr, momentum=0.9),
    # chain(trace(0.9, ema=True), scale_by_rms(0.999, 1e-8, eps_in_sqrt=False), scale_by_learning_rate(lr))
    "adam-no-bias-correction": adam_without_bias_correction,
    # Adam with its moments stored in bfloat16 (arithmetic in float32): m only, and m and v.
    "adam-bf16-mu": lambda lr: adaptix.adam(lr, mu_dtype=jnp.bfloat16),
    "adam-bf16-mu-nu": lambda lr: adaptix.adam(lr, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16),
    # both moments in 8-bit block-wise codes (adaptix.quantized: 256 entries per float32 scale; leaves of fewer
    # than 4,096 entries stay float32), about 2 bytes of state per parameter on large leaves
    "adam-8bit": lambda lr: adaptix.adam(lr, mu_dtype=adaptix.quantized(), nu_dtype=adaptix.quantized()),
}
ALIASES = (
    "sgd", "adagrad", "rmsprop", "adadelta", "adam", "adamw", "amsgrad", "nadam", "nadamw",
    "adamax", "radam", "lion", "sign_sgd", "signum", "rprop",
)
# Optimizers that need no learning rate, as published: the factory ignores the rate it is handed (and the
# experiment's schedule built on it, such as alpha / sqrt(t)), and --tune searches none (tuning.tuned).
RATE_FREE_OPTIMIZERS: dict[str, Callable[[], optax.GradientTransformation]] = {
    "vsgd": adaptix.vsgd,  # Schaul, Zhang & LeCun's rates, from the gradient's statistics and curvature
}


def optimizer_names() -> tuple[str, ...]:
    """Every name the command line knows, sorted: the adaptix aliases, the special and the rate-free names."""
    return tuple(sorted((*ALIASES, *SPECIAL_OPTIMIZERS, *RATE_FREE_OPTIMIZERS)))


def is_rate_free(name: str) -> bool:
    """Whether ``name`` sets its own step sizes (:data:`RATE_FREE_OPTIMIZERS`): nothing to tune or schedule."""
    return name in RATE_FREE_OPTIMIZERS


def optimizer_factory(name: str) -> Callable[[optax.ScalarOrSchedule], optax.GradientTransformation]:
    """``learning_rate -> transformation`` for an alias name, a special name, or ``module:function``.

    A rate-free optimizer's factory takes the rate like the others (the trainers hand every one a rate) and
    ignores it.
    """
    if name in RATE_FREE_OPTIMIZERS:
        make = RATE_FREE_OPTIMIZERS[name]
        return lambda lr: make()
    if name in SPECIAL_OPTIMIZERS:
        return SPECIAL_OPTIMIZERS[name]
    if name in ALIASES:
        alias = getattr(adaptix, name)
        return lambda lr: alias(learning_rate=lr)
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"cannot import the optimizer factory {name!r}: {err}") from err
        if not callable(factory):
            raise ValueError(f"the optimizer factory {name!r} is not callable (a {type(factory).__name__})")
        return lambda lr: factory(learning_rate=lr)
    raise ValueError(f"unknown optimizer {name!r}; use one of {', '.join(optimizer_names())}, or module:function")


def parse_learning_rate(item: str, text: str) -> float:
    """The step size after the ``@`` of ``item``: a finite positive number, else a ``ValueError`` that says so."""
    if not text.strip():
        raise ValueError(f"nothing after '@' in {item!r}: give a step size (adam@1e-3) or drop the '@' to use the "
                         "experiment's")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"the step size in {item!r} must be a number in (0, inf), got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"the step size in {item!r} must be a number in (0, inf), got {text!r}")
    return value


def parse_optimizers(spec: str) -> list[tuple[str, float | None]]:
    """``"adam,adagrad@0.01,mymod:make"`` -> ``[("adam", None), ("adagrad", 0.01), ("mymod:make", None)]``.

    Every name is resolved (an unknown one, or a factory that does not import, is a ``ValueError``
    here, before anything runs); every ``@`` rate must be a finite positive number.

    Example:
      >>> parse_optimizers("adam, sgd-nesterov@0.05")
      [('adam', None), ('sgd-nesterov', 0.05)]
      >>> parse_optimizers("adam@0")
      Traceback (most recent call last):
      ...
      ValueError: the step size in 'adam@0' must be a number in (0, inf), got '0'
    """
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, at, lr = item.partition("@")
        optimizer_factory(name.strip())  # fail early on a bad name
        out.append((name.strip(), parse_learning_rate(item, lr) if at else None))
    if not out:
        raise ValueError(f"no optimizer named in {spec!r}; give a comma-separated list such as adam,sgd-nesterov@0.05")
    return out
