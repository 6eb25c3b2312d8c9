"""Hyperparameters as data: :func:`inject_hyperparams`, Optax's wrapper without its pitfalls.

A wrapped optimizer keeps its numeric hyperparameters in its state, so a jitted step reads them
as inputs: changing the learning rate between steps, or vmapping a step over a grid of rates,
compiles once. Three rules make the wrapped optimizer the plain one's equal:

* numbers are stored in float32, or the parameters' dtype where it is wider (``hyperparam_dtype``
  overrides), never in the parameters' bfloat16 (Optax stores them there: ``b2 = 0.999`` becomes
  1.0), and every adaptix primitive computes with a hyperparameter in that same working precision
  (:func:`adaptix._accumulators.working`), so the updates are the plain alias's bit for bit;
* a value set in ``state.hyperparams`` is stored in the dtype of the value it replaces
  (:class:`Hyperparams`), so a Python float, a NumPy scalar or a jax scalar gives a jitted step the
  same input type and never retraces it, also inside ``flax.nnx.Optimizer`` and ``TrainState``;
* the state is Optax's ``InjectStatefulHyperparamsState`` around the plain alias's state, so
  ``optax.tree_utils.tree_get(state, "learning_rate")``, Optax's checkpoints and code written for
  ``optax.inject_hyperparams`` work unchanged.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax.schedules import InjectStatefulHyperparamsState, StatefulSchedule, WrappedSchedule

from adaptix import _validate as v
from adaptix._accumulators import scalar_dtype


def _is_number(value: Any) -> bool:
    """A numeric hyperparameter: a Python or NumPy number, or an array (not a bool)."""
    if isinstance(value, (bool, np.bool_)):
        return False
    return isinstance(value, (int, float, np.number, np.ndarray, jax.Array))


def _stored(value: Any, dtype: Any) -> jax.Array:
    """A number as stored: floats (and Python ints) in ``dtype``; integer and complex arrays keep theirs."""
    if isinstance(value, (np.ndarray, np.number, jax.Array)) and not jnp.issubdtype(value.dtype, jnp.floating):
        return jnp.asarray(value)
    return jnp.asarray(value, dtype)


class Hyperparams(dict):
    """The ``hyperparams`` dict of an injected state: a value set in it keeps the stored dtype.

    ``state.hyperparams["learning_rate"] = 0.01`` stores ``jnp.asarray(0.01, old.dtype)``, where
    ``old`` is the value it replaces, so a jitted step sees an input of the same type whether the
    new value is a Python float, a NumPy scalar or a jax array (weakly typed or not): it is not
    traced again. Where the value is held in a ``flax.nnx`` variable (``nnx.Optimizer`` wraps every
    state leaf in one), the variable keeps its place and gets the new value. Otherwise a plain
    dict, and a pytree with the keys of one (``tree_get``, Orbax and ``flax.serialization`` see a
    dict).
    """

    def __setitem__(self, key: str, value: Any) -> None:
        old = self.get(key)
        if _is_number(value) and hasattr(old, "get_value") and hasattr(old, "set_value"):  # an nnx Variable
            old.set_value(_replacement(value, old.get_value()))
            return
        super().__setitem__(key, _replacement(value, old))

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def copy(self) -> Hyperparams:
        return Hyperparams(self)

    def __repr__(self) -> str:
        return f"Hyperparams({dict.__repr__(self)})"


def _replacement(value: Any, old: Any) -> Any:
    """``value`` in the dtype and shape of the stored ``old`` (as it is where ``old`` is not a number)."""
    if not (_is_number(value) and isinstance(old, (jax.Array, np.ndarray))):
        return value
    new = jnp.asarray(value, old.dtype)
    if new.shape != old.shape:
        raise ValueError(f"inject_hyperparams: a hyperparameter of shape {old.shape} cannot be replaced by one "
                         f"of shape {new.shape}")
    return new


def _flatten_with_keys(h: Hyperparams):
    keys = sorted(h)
    return tuple((jax.tree_util.DictKey(k), dict.__getitem__(h, k)) for k in keys), tuple(keys)


def _unflatten(keys: tuple[str, ...], values: Iterable[Any]) -> Hyperparams:
    return Hyperparams(zip(keys, values))  # dict.__init__: no conversion (JAX passes placeholders)


jax.tree_util.register_pytree_with_keys(
    Hyperparams, _flatten_with_keys, _unflatten,
    flatten_func=lambda h: (tuple(dict.__getitem__(h, k) for k in sorted(h)), tuple(sorted(h))),
)


@functools.cache
def _register_with_flax() -> None:
    """Makes ``flax.serialization`` save and restore :class:`Hyperparams` as the dict it is (when flax is there)."""
    if importlib.util.find_spec("flax") is None:
        return
    from flax import serialization

    def to_state_dict(h: Hyperparams) -> dict:
        return {key: serialization.to_state_dict(value) for key, value in h.items()}

    def from_state_dict(target: Hyperparams, state: dict) -> Hyperparams:
        missing = set(target) - set(state)
        if missing:
            raise ValueError(f"inject_hyperparams: the saved state has no hyperparameters {sorted(missing)} "
                             f"(it has {sorted(state)}); at {serialization.current_path()}")
        return Hyperparams((k, serialization.from_state_dict(value, state[k], name=k)) for k, value in target.items())

    if not serialization.is_serializable(Hyperparams):
        serialization.register_serialization_state(Hyperparams, to_state_dict, from_state_dict)


def _sort_arguments(arguments: dict[str, Any], static: set[str]):
    """``(numbers, schedules, others)``: what is stored, what is a schedule, what is passed as it is."""
    numbers, schedules, others = {}, {}, {}
    for name, value in arguments.items():
        if name in static or isinstance(value, bool) or value is None:
            others[name] = value
        elif isinstance(value, StatefulSchedule):
            schedules[name] = value
        elif callable(value):
            schedules[name] = WrappedSchedule(value)
        elif _is_number(value):
            numbers[name] = value
        else:
            others[name] = value
    return numbers, schedules, others


def _check_static_args(owner: str, static: set[str], signature: inspect.Signature) -> None:
    unknown = static - set(signature.parameters)
    if unknown:
        raise ValueError(f"{owner}: static_args {sorted(unknown)} are not parameters of the factory; "
                         f"its parameters are {list(signature.parameters)}.")


def inject_hyperparams(
    inner_factory: Callable[..., optax.GradientTransformation],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any = None,
) -> Callable[..., optax.GradientTransformationExtraArgs]:
    r"""Wraps ``inner_factory`` so that its numeric hyperparameters live in the optimizer state.

    The call and the state are Optax's (``optax.inject_hyperparams``): ``inject_hyperparams(adam)(
    learning_rate=1e-3)`` returns a transformation whose state is an
    ``optax.InjectStatefulHyperparamsState(count, hyperparams, hyperparams_states, inner_state)``;
    ``inner_state`` is the state of ``adam(1e-3)`` itself (same tree, same dtypes). Every number
    among the arguments (after defaults) is stored in ``hyperparams``; a callable is a schedule of
    the step count (or an ``optax.schedules.StatefulSchedule``), evaluated every step, its current
    value shown in ``hyperparams`` (setting it there has no effect); booleans, ``None``, dtypes and
    ``static_args`` are passed to the factory as they are. At each update the factory is called
    with the stored values (arrays), and its transformation updates ``inner_state``.

    Unlike Optax's wrapper:

    * floats are stored in float32, or the parameters' floating dtype where it is wider
      (float64), never in bfloat16 or float16; ``hyperparam_dtype`` sets the dtype instead. As
      adaptix's primitives compute with every hyperparameter in that precision, the updates equal
      the plain alias's bit for bit (Optax's wrapper changes ``1 - b2`` by float32 rounding, and
      rounds ``b2 = 0.999`` to 1 with bfloat16 parameters);
    * a value set in ``state.hyperparams`` takes the stored value's dtype (:class:`Hyperparams`),
      so a jitted step is not retraced, whatever type of scalar it was given as;
    * the factory is called once at construction with the given values, so a bad hyperparameter
      is refused with the factory's message there, not at the first update.

    Args:
      inner_factory: returns a gradient transformation (an adaptix alias, a chain, any Optax one).
      static_args: names of ``inner_factory``'s parameters to pass as they are: integer sizes
        (``full_matrix_adagrad``'s ``max_size``), callables that are not schedules.
      hyperparam_dtype: the dtype of the stored floats; ``None``: float32 or the parameters' wider
        floating dtype.

    Returns:
      A function with ``inner_factory``'s signature returning an
      ``optax.GradientTransformationExtraArgs``.

    Example:
      >>> import jax, jax.numpy as jnp, adaptix
      >>> opt = adaptix.inject_hyperparams(adaptix.adam)(learning_rate=1e-3)
      >>> params = jnp.zeros(3)
      >>> state = opt.init(params)
      >>> step = jax.jit(opt.update)
      >>> u, state = step(jnp.ones(3), state, params)
      >>> state.hyperparams["learning_rate"] = 1e-4  # stored as float32: the next call is not retraced
      >>> u, state = step(jnp.ones(3), state, params)
      >>> print(f"{u[0]:.4g}")
      -0.0001

    References:
      Optax's ``inject_hyperparams``, https://optax.readthedocs.io/en/latest/api/optimizer_wrappers.html
    """
    owner = "inject_hyperparams"
    if not callable(inner_factory):
        raise TypeError(f"{owner}: inner_factory must be a function returning a transformation, got "
                        f"{inner_factory!r}.")
    static = {static_args} if isinstance(static_args, str) else set(static_args)
    signature = inspect.signature(inner_factory)
    _check_static_args(owner, static, signature)
    v.check_dtype(owner, "hyperparam_dtype", hyperparam_dtype)
    if hyperparam_dtype is not None and not jnp.issubdtype(hyperparam_dtype, jnp.floating):
        raise TypeError(f"{owner}: hyperparam_dtype must be a real floating dtype, got {hyperparam_dtype!r}.")

    @functools.wraps(inner_factory)
    def wrapped(*args: Any, **kwargs: Any) -> optax.GradientTransformationExtraArgs:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        numbers, schedules, others = _sort_arguments(bound.arguments, static)
        inner_factory(**others, **numbers, **{k: s(s.init()) for k, s in schedules.items()})  # validates
        _register_with_flax()

        def stored_dtype(tree):
            return jnp.dtype(hyperparam_dtype) if hyperparam_dtype is not None else scalar_dtype(tree)

        def init(params):
            dtype = stored_dtype(params)
            schedule_states = {k: s.init() for k, s in schedules.items()}
            hyperparams = Hyperparams((k, _stored(x, dtype)) for k, x in numbers.items())
            hyperparams.update({k: _stored(s(schedule_states[k]), dtype) for k, s in schedules.items()})
            inner_state = inner_factory(**others, **hyperparams).init(params)
            return InjectStatefulHyperparamsState(count=jnp.zeros([], jnp.int32), hyperparams=hyperparams,
                                                  hyperparams_states=schedule_states, inner_state=inner_state)

        def update(updates, state, params=None, **extra):
            dtype = stored_dtype(updates)
            hyperparams = Hyperparams((k, x if isinstance(x, jax.Array) or not _is_number(x) else _stored(x, dtype))
                                      for k, x in state.hyperparams.items())  # a dict replaced by hand
            for k, s in schedules.items():
                dict.__setitem__(hyperparams, k, _stored(s(state.hyperparams_states[k], **extra),
                                                         _schedule_dtype(state.hyperparams, k, dtype)))
            inner = optax.with_extra_args_support(inner_factory(**others, **hyperparams))
            updates, inner_state = inner.update(updates, state.inner_state, params, **extra)
            schedule_states = {k: s.update(state.hyperparams_states[k], **extra) for k, s in schedules.items()}
            return updates, InjectStatefulHyperparamsState(
                count=optax.safe_increment(state.count), hyperparams=hyperparams,
                hyperparams_states=schedule_states, inner_state=inner_state)

        return optax.GradientTransformationExtraArgs(init, update)

    return wrapped


def _schedule_dtype(hyperparams: dict, key: str, default: Any) -> Any:
    """The dtype a schedule's value was stored in at ``init`` (a state restored without it: ``default``)."""
    old = dict.get(hyperparams, key)
    return getattr(old, "dtype", default)
