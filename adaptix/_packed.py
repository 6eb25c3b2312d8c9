"""``packed``: run an optimizer on a few flat buffers instead of many small leaves.

A jitted step pays for every array that crosses the ``jit`` boundary (about a
microsecond each on a CPU host) and runs a few kernels per leaf, so the step of
a model of many small leaves (biases, norms, small layers) is dispatch-bound
long before it is memory-bound. :func:`packed` concatenates the small leaves of
each dtype into one vector before the inner optimizer sees them, keeps the
inner optimizer's state in that packed form, and slices the updates back into
the original tree. Large leaves are passed through as they are: concatenating
them would cost a full extra pass over memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adaptix import _validate as v
from adaptix._base import CHAIN_INPUT, CountedTransformation, Transformation
from adaptix._tree import check_matches


class PackedState(NamedTuple):
    """State of :func:`packed`: the inner optimizer's state for the packed tree.

    The packed tree is ``{"large": [...], "small": {dtype name: vector}}``: the
    leaves above ``max_leaf_size`` in their original order, and one vector per
    dtype holding the others, raveled and concatenated in tree order.
    """

    inner: Any


@dataclass(frozen=True)
class _Layout:
    """Where each leaf of a tree goes in the packed tree (static: shapes and dtypes only)."""

    treedef: Any
    shapes: tuple
    large: tuple  # leaf indices kept as they are
    small: tuple  # ((dtype name, (leaf indices...)), ...)

    @classmethod
    def of(cls, tree: Any, max_leaf_size: int) -> _Layout:
        leaves, treedef = jax.tree.flatten(tree)
        large, small = [], {}
        for i, x in enumerate(leaves):
            if int(np.size(x)) > max_leaf_size:
                large.append(i)
            else:
                small.setdefault(jnp.dtype(jnp.result_type(x)).name, []).append(i)
        return cls(treedef, tuple(np.shape(x) for x in leaves), tuple(large),
                   tuple((name, tuple(idx)) for name, idx in small.items()))

    def pack(self, tree: Any) -> dict:
        leaves = self.treedef.flatten_up_to(tree)
        small = {}
        for name, idx in self.small:
            parts = [jnp.ravel(jnp.asarray(leaves[i])) for i in idx]
            small[name] = parts[0] if len(parts) == 1 else jnp.concatenate(parts)
        return {"large": [leaves[i] for i in self.large], "small": small}

    def unpack(self, packed: dict) -> Any:
        leaves = [None] * len(self.shapes)
        for i, x in zip(self.large, packed["large"]):
            leaves[i] = x
        for name, idx in self.small:
            flat, offset = packed["small"][name], 0
            for i in idx:
                size = int(np.prod(self.shapes[i], dtype=np.int64))
                leaves[i] = flat[offset:offset + size].reshape(self.shapes[i])
                offset += size
        return self.treedef.unflatten(leaves)


def packed(inner: optax.GradientTransformation, max_leaf_size: int = 65536) -> Transformation:
    r"""Runs ``inner`` on the small leaves packed into one flat vector per dtype.

    Leaves with at most ``max_leaf_size`` entries are raveled and concatenated,
    per dtype, in tree order; larger leaves stay as they are. ``inner`` sees
    that packed tree (its params, updates and, inside an adaptix chain,
    ``chain_input``), keeps its state for it, and its updates are sliced back into the
    original tree. For an ``inner`` that treats every coordinate on its own —
    every adaptix alias except :func:`full_matrix_adagrad` — each coordinate
    goes through the same arithmetic, and the updates agree to within 2 units in
    the last place (``tests/test_packed.py``, every optimizer of the test table,
    eagerly and under ``jit``; not always bit for bit, because XLA:CPU compiles a
    leaf of 4 and a vector of 8 into different loops). What changes is the number
    of arrays: the state of a 52-leaf model becomes two vectors instead of 104.

    Use it for models with many small leaves, where the step is dispatch-bound:
    on the project's 2-core CPU (``benchmarks/step.py``, see
    ``benchmarks/RESULTS.md``) an Adam step over 1000 leaves of 16x16 takes about
    half the time of the unpacked one, level with ``torch.optim.Adam(fused=True)``.
    It compiles *slower*, though: XLA:CPU spends about 9 ms compiling each slice
    that unpacks a leaf (1000 leaves: about 14 s instead of 5 s), which pays
    off after a few thousand steps.

    Args:
      inner: the optimizer to run on the packed tree.
      max_leaf_size: leaves with more entries than this are not packed (an
        int ``>= 0``).

    Example:
      >>> import jax.numpy as jnp, numpy as np, optax, adaptix
      >>> opt = adaptix.packed(adaptix.adam(1e-3))
      >>> params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
      >>> state = opt.init(params)
      >>> optax.tree_utils.tree_get(state, "mu")["small"]["float32"].shape  # one moment vector for both leaves
      (8,)
      >>> updates, state = opt.update({"w": jnp.ones((3, 2)), "b": -jnp.ones(2)}, state, params)
      >>> np.asarray(updates["b"]).round(6)  # Adam's first step: -lr * sign(g)
      array([0.001, 0.001], dtype=float32)

    Note:
      Transformations that look at a leaf as a whole — per-leaf norms or
      shapes, :func:`full_matrix_adagrad`, weight-decay masks given as a tree of
      the parameters' structure — see the packed tree instead and either fail
      or act differently: wrap only the elementwise part of a chain. The
      packed vectors are not laid out like sharded parameters; packing is for
      the small leaves of models that live on one device.
    """
    if not isinstance(inner, optax.GradientTransformation):
        raise TypeError(f"packed: inner must be an optax.GradientTransformation, got {type(inner).__name__}.")
    v.check_int("packed", "max_leaf_size", max_leaf_size, 0)
    passes_chain_input = isinstance(inner, Transformation)
    stage = inner if passes_chain_input else optax.with_extra_args_support(inner)
    reads_step = isinstance(inner, CountedTransformation)

    def init(params, **chain_keywords):  # chain_counts=True when inner reads the step and a chain counts
        return PackedState(inner=stage.init(_Layout.of(params, max_leaf_size).pack(params), **chain_keywords))

    def update(updates, state, params=None, **extra):
        layout = _Layout.of(updates, max_leaf_size)
        if params is not None:
            check_matches(updates, params, "packed", "updates", "params")
        packed_params = None if params is None else layout.pack(params)
        chain_input = extra.pop(CHAIN_INPUT, None)
        if passes_chain_input and chain_input is not None:
            check_matches(chain_input, updates, "packed", "chain_input", "updates")
            extra[CHAIN_INPUT] = layout.pack(chain_input)
        new_updates, inner_state = stage.update(layout.pack(updates), state.inner, packed_params, **extra)
        return layout.unpack(new_updates), PackedState(inner=inner_state)

    if reads_step:
        return CountedTransformation(init, update)
    return Transformation(lambda params: init(params), update)
