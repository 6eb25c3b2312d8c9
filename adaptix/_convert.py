"""Optax states in and out: continue an Optax run with adaptix (``from_optax``) or the reverse (``to_optax``).

Both states name their parts as Optax does (``count``, ``mu``, ``nu``, ``nu_max``,
``trace``, ``sum_of_squares``, ``e_x``, ``ema``, ...), so a conversion matches
named fields: every field of the target is filled from the field of the source
with the same name (AdaDelta's :math:`E[g^2]` is ``e_g`` in Optax and ``nu`` in
adaptix), each value checked against the target's structure and shapes and cast
to its dtype (a moment stored in 8-bit codes is read as float32, or quantized
as the target stores it). A field that has no counterpart means the algorithms differ, and
the conversion fails with the fields it could not place. Optax keeps one
counter per counting stage (an Adam with a schedule has two, always equal);
adaptix keeps one per optimizer.

Where two algorithms keep states of the same shape but read them differently
(PyTorch's AMSGrad maximum, ``optax.adadelta(learning_rate=None)``'s missing
sign flip), only running both tells them apart: pass the other transformation
(``optax_tx=`` to :func:`from_optax`, ``tx=`` to :func:`to_optax`) and the
conversion is checked by one probe step of each.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adaptix._quantized import dequantize, is_quantized
from adaptix._tree import check_matches, stored_as

# Optax's name -> adaptix's, where they differ.
_CANONICAL = {"e_g": "nu"}

# States of Optax's whose algorithm adaptix implements differently, and why.
_DIFFERENT_ALGORITHMS = {
    "ScaleByRpropState": (
        "optax.rprop applies each step one step late (its first update is zero, and its update t+1 is "
        "torch.optim.Rprop's update t), while adaptix.rprop is PyTorch's and the paper's algorithm; the two "
        "keep different previous values (Optax the previous update, adaptix the previous gradient), so a "
        "state of one cannot continue the other."
    ),
}


def _is_state(node: Any) -> bool:
    return isinstance(node, tuple) and hasattr(node, "_fields") and not is_quantized(node)


def _holds_states(value: Any) -> bool:
    if _is_state(value):
        return True
    if isinstance(value, (tuple, list)):
        return any(_holds_states(v) for v in value)
    return False


def _fields(tree: Any, owner: str) -> list[tuple[str, Any]]:
    """The named parts of a state: ``(name, value)`` for every NamedTuple field holding arrays."""
    found: list[tuple[str, Any]] = []

    def visit(node):
        if _is_state(node):
            why = _DIFFERENT_ALGORITHMS.get(type(node).__name__)
            if why is not None and type(node).__module__.startswith("optax"):
                raise ValueError(f"{owner}: the algorithms differ: {why}")
            for name, value in zip(node._fields, node):
                if _holds_states(value):
                    visit(value)
                elif value is not None and jax.tree.leaves(value):
                    found.append((_CANONICAL.get(name, name), value))
        elif isinstance(node, (tuple, list)):
            for value in node:
                visit(value)

    visit(tree)
    return found


def _convert(source: Any, template: Any, owner: str, source_name: str, target_name: str) -> Any:
    """``template`` with every named field filled from the same-named field of ``source``."""
    available: dict[str, list[Any]] = {}
    for name, value in _fields(source, owner):
        available.setdefault(name, []).append(value)
    wanted = [name for name, _ in _fields(template, owner)]
    missing = sorted({n for n in wanted if n not in available})
    unused = sorted({n for n in available if n not in wanted and n != "count"})
    if missing or unused:
        raise ValueError(
            f"{owner}: the algorithms differ: the {target_name} state needs "
            f"{', '.join(missing) or 'nothing more'} that the {source_name} state does not have, and the "
            f"{source_name} state holds {', '.join(unused) or 'nothing more'} that the {target_name} state has "
            f"no place for.\n  {source_name}: {jax.tree.structure(source)}\n"
            f"  {target_name}: {jax.tree.structure(template)}"
        )
    for name in set(wanted):
        if name != "count" and (wanted.count(name) > 1 or len(available[name]) > 1):
            raise ValueError(f"{owner}: the states hold several '{name}' fields; which goes where is ambiguous.")
    counts = available.get("count", [])
    if len(counts) > 1 and not any(isinstance(c, jax.core.Tracer) for c in counts):
        if len({int(np.asarray(c)) for c in counts}) > 1:
            raise ValueError(f"{owner}: the {source_name} state's step counters disagree: "
                             f"{[int(np.asarray(c)) for c in counts]}.")

    def filled(name, target_value):
        value = available[name][0]
        check_matches(value, target_value, owner, f"{source_name} {name}", f"{target_name} {name}")
        # a quantized moment is read as float32 and stored as the target stores it (cast, or quantized)
        return jax.tree.map(lambda s, t: stored_as(jnp.asarray(dequantize(s)), t), value, target_value,
                            is_leaf=is_quantized)

    def rebuild(node):
        if _is_state(node):
            new = {}
            for name, value in zip(node._fields, node):
                if _holds_states(value):
                    new[name] = rebuild(value)
                elif value is not None and jax.tree.leaves(value):
                    new[name] = filled(_CANONICAL.get(name, name), value)
                else:
                    new[name] = value
            return type(node)(**new)
        if isinstance(node, (tuple, list)):
            return type(node)(rebuild(v) for v in node)
        return node

    return rebuild(template)


def _probe(params: Any) -> Any:
    """A fixed, non-degenerate gradient shaped like ``params``."""

    def one(p):
        p = jnp.asarray(p)
        n = int(np.prod(p.shape)) if p.shape else 1
        x = jnp.cos(jnp.arange(n, dtype=jnp.float32) * 0.7 + 0.3) * 0.5 + 0.2
        return x.reshape(p.shape).astype(p.dtype)

    return jax.tree.map(one, params)


def _check_continues(owner, optax_tx, optax_state, tx, state, params) -> None:
    """One probe step of both optimizers from their states must agree (to the codes' spacing where the
    adaptix state is quantized: a moment in 8-bit codes is within 1.4 % of the float one)."""
    grads = _probe(params)
    ours, _ = tx.update(grads, state, params)
    theirs, _ = optax_tx.update(grads, optax_state, params)
    quantized = any(is_quantized(x) for x in jax.tree.leaves(state, is_leaf=is_quantized))
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        wide = np.asarray(jax.tree.leaves(params)[0]).dtype == np.float64
        rtol = 0.03 if quantized else 1e-9 if wide else 1e-4
        tol = rtol * max(float(np.max(np.abs(b), initial=0.0)), 1e-30)
        if np.allclose(a, b, rtol=rtol, atol=tol):
            continue
        if np.allclose(a, -b, rtol=rtol, atol=tol):
            raise ValueError(
                f"{owner}: the algorithms differ: the Optax optimizer's update has the opposite sign of "
                "adaptix's. optax.adadelta(learning_rate=None) never flips the sign and ascends the loss; "
                "adaptix.adadelta(learning_rate=None) means 1.0, as PyTorch and Zeiler's paper."
            )
        raise ValueError(
            f"{owner}: the algorithms (or hyperparameters) differ: from the converted states, one probe step "
            f"of the two optimizers disagrees (largest difference {float(np.max(np.abs(a - b))):.3g} on updates "
            f"of size {float(np.max(np.abs(b), initial=0.0)):.3g}). Known cases: amsgrad(debias_before_max=False) "
            "is PyTorch's AMSGrad, not Optax's; nadam(momentum_decay=...) is PyTorch's NAdam."
        )


def from_optax(optax_state: Any, tx: optax.GradientTransformation, params: Any, *,
               optax_tx: optax.GradientTransformation | None = None) -> Any:
    r"""The adaptix state that continues a run saved with an Optax optimizer.

    ``adaptix.adam(lr)`` continues an ``optax.adam(lr)`` state exactly: 5 steps
    with Optax, the conversion and 5 with adaptix equal 10 Optax steps (float64:
    to rounding). Works for every alias whose algorithm is Optax's (see the
    README's "Switching from Optax").

    Args:
      optax_state: the Optax optimizer's state (e.g. restored from an Orbax
        checkpoint with ``optax_tx.init(params)`` as the target).
      tx: the adaptix optimizer that continues the run.
      params: the parameters (their tree fixes the state's layout).
      optax_tx: the Optax optimizer that made ``optax_state``; if given, one
        probe step of both checks that they continue alike.

    Returns:
      ``tx.init(params)`` with every part taken from ``optax_state``.

    Raises:
      ValueError: where the algorithms differ (``optax.rprop``'s lag; with
        ``optax_tx``, any probe-step disagreement such as
        ``optax.adadelta(learning_rate=None)``'s ascent), or the trees do not
        match; the message names the fields or the leaf.

    Example:
      >>> import jax.numpy as jnp, optax, adaptix
      >>> params = {"w": jnp.ones(3)}
      >>> opt = optax.adam(1e-2)
      >>> state = opt.update({"w": jnp.ones(3)}, opt.init(params), params)[1]
      >>> ours = adaptix.from_optax(state, adaptix.adam(1e-2), params, optax_tx=opt)
      >>> mu = optax.tree_utils.tree_get(ours, "mu")["w"]
      >>> int(optax.tree_utils.tree_get(ours, "count")), bool((mu == state[0].mu["w"]).all())
      (1, True)
    """
    state = _convert(optax_state, tx.init(params), "from_optax", "Optax", "adaptix")
    if optax_tx is not None:
        _check_continues("from_optax", optax_tx, optax_state, tx, state, params)
    return state


def to_optax(state: Any, optax_tx: optax.GradientTransformation, params: Any, *,
             tx: optax.GradientTransformation | None = None) -> Any:
    r"""The Optax state that continues a run of an adaptix optimizer (the reverse of :func:`from_optax`).

    Args:
      state: the adaptix optimizer's state.
      optax_tx: the Optax optimizer that continues the run.
      params: the parameters.
      tx: the adaptix optimizer that made ``state``; if given, one probe step
        of both checks that they continue alike.

    Returns:
      ``optax_tx.init(params)`` with every part taken from ``state`` (every
      Optax step counter gets adaptix's one count).

    Example:
      >>> import jax.numpy as jnp, optax, adaptix
      >>> params = {"w": jnp.ones(2)}
      >>> tx = adaptix.sgd(0.1, momentum=0.9)
      >>> state = tx.update({"w": jnp.ones(2)}, tx.init(params), params)[1]
      >>> adaptix.to_optax(state, optax.sgd(0.1, momentum=0.9), params, tx=tx)[0].trace["w"]
      Array([1., 1.], dtype=float32)
    """
    optax_state = _convert(state, optax_tx.init(params), "to_optax", "adaptix", "Optax")
    if tx is not None:
        _check_continues("to_optax", optax_tx, optax_state, tx, state, params)
    return optax_state
