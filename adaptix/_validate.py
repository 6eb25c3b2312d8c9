"""Construction-time validation of hyperparameters.

Every primitive and alias checks its hyperparameters when it is built, so a bad
value fails at once with its name, its value and the valid range, instead of
surfacing later as NaN or divergence. Values that are traced (as under
``optax.inject_hyperparams`` inside ``jax.jit``) cannot be inspected and are
accepted; concrete arrays are checked like Python numbers.

The rule (``docs/reliability.md``): a value is refused when the update it gives
is undefined or non-finite, or when it leaves the domain the method is defined
on; a value with a meaning is accepted. So a decay rate may be 1 (``trace(1.0)``
is a running sum, ``scale_by_inf_norm(1.0)`` a running maximum) except where it
is bias-corrected (:math:`1 - \\beta^t = 0` divides by zero), and rates, weight
decays and epsilons must be ``>= 0`` (a negative rate turns descent into ascent:
``scale`` says that explicitly; a negative eps can put a negative number under
the square root).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _concrete_value(name: str, value: Any, owner: str) -> float | None:
    """The value as a float, ``None`` if traced; ``TypeError`` if not a real number."""
    if isinstance(value, jax.core.Tracer):
        return None
    if isinstance(value, bool) or value is None:
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r}.")
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        dtype = jnp.dtype(value.dtype)
        if np.shape(value) != () or not jnp.issubdtype(dtype, jnp.number):
            raise TypeError(f"{owner}: {name} must be a real scalar, got an array of shape "
                            f"{np.shape(value)} and dtype {dtype}.")
        if jnp.issubdtype(dtype, jnp.complexfloating):
            raise TypeError(f"{owner}: {name} must be real, got {value!r}.")
        return float(value)
    raise TypeError(f"{owner}: {name} must be a real number, got {type(value).__name__} {value!r}.")


def _interval(low: float, high: float, low_open: bool = False, high_open: bool = False) -> str:
    """``[0, 1)``, ``(0, inf)``: an infinite bound is never included."""
    left = "(" if low_open or low == -math.inf else "["
    right = ")" if high_open or high == math.inf else "]"
    return f"{left}{low:g}, {high:g}{right}"


def check_range(
    owner: str,
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
    why: str = "",
) -> None:
    """Checks ``low <= value <= high`` (``<`` where open) and finiteness; ``why`` explains the bound."""
    v = _concrete_value(name, value, owner)
    if v is None:
        return
    interval = _interval(low, high, low_open, high_open)
    ok = math.isfinite(v)
    ok = ok and (v > low if low_open else v >= low)
    ok = ok and (v < high if high_open else v <= high)
    if not ok:
        reason = f" ({why})" if why else ""
        raise ValueError(f"{owner}: {name} must be finite and in {interval}, got {value!r}{reason}.")


def check_decay(owner: str, name: str, value: Any, *, debiased: bool = False) -> None:
    """A decay rate of an average: in ``[0, 1]`` (1 keeps it as it is), ``[0, 1)`` where it is ``debiased``."""
    if debiased:
        check_debiased_decay(owner, name, value)
    else:
        check_range(owner, name, value, 0.0, 1.0)


def check_debiased_decay(owner: str, name: str, value: Any) -> None:
    """A decay rate that is bias-corrected (or otherwise divides by ``1 - beta``): in ``[0, 1)``."""
    check_range(owner, name, value, 0.0, 1.0, high_open=True,
                why=f"{name} = 1 makes the bias correction 1 - {name}^t zero")


def check_nonnegative(owner: str, name: str, value: Any) -> None:
    """An epsilon, weight decay or initial accumulator: finite and ``>= 0``."""
    check_range(owner, name, value, 0.0)


def check_positive(owner: str, name: str, value: Any) -> None:
    """A number ``> 0``, not a schedule (a rate that enters a model's prior, say)."""
    if callable(value) and not isinstance(value, (jax.Array, np.ndarray)):
        raise TypeError(f"{owner}: {name} must be a number > 0, not a schedule, got {value!r}.")
    check_range(owner, name, value, 0.0, low_open=True)


def check_rate(owner: str, name: str, value: Any) -> None:
    """A learning rate or step size: a finite number ``>= 0`` or a schedule."""
    if callable(value) and not isinstance(value, (jax.Array, np.ndarray)):
        return
    check_nonnegative(owner, name, value)


def check_real(owner: str, name: str, value: Any) -> None:
    """Any finite real number (a sign or scale factor)."""
    if callable(value) and not isinstance(value, (jax.Array, np.ndarray)):
        return
    check_range(owner, name, value)


def check_int(owner: str, name: str, value: Any, low: int = 0, *, none_ok: bool = False) -> None:
    """A Python integer ``>= low`` (a size, a count, a period), or ``None`` with ``none_ok``."""
    if none_ok and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        kind = "None or an int" if none_ok else "an int"
        raise ValueError(f"{owner}: {name} must be {kind} in {_interval(low, math.inf)}, got {value!r}.")


def check_bool(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be True or False, got {value!r}.")


def check_dtype(owner: str, name: str, value: Any, *, also: str = "") -> None:
    """``None`` or a floating dtype; ``also`` names what else the caller accepts (in the message)."""
    if value is None:
        return
    alternatives = f", {also}" if also else ""
    try:
        dtype = jnp.dtype(value)
    except TypeError as err:
        raise TypeError(f"{owner}: {name} must be a dtype{alternatives} or None, got {value!r}.") from err
    if not jnp.issubdtype(dtype, jnp.inexact):
        raise TypeError(f"{owner}: {name} must be a floating dtype{alternatives} or None, got {dtype}.")
