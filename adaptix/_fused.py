"""Fused execution: update and apply in one sweep through memory, leaf by leaf.

An optimizer step is memory-bound. Adam must read params, grads, m, v and write
params, m, v: 28 bytes per float32 parameter. Written as ``update`` followed by
``optax.apply_updates``, XLA on CPU compiles Adam into three passes per leaf
(m, then v, then params recomputed from both), about 40 bytes per parameter.
:func:`update_and_apply` instead walks every large leaf in cache-sized chunks
and runs the whole chain, and the parameter write, on one chunk at a time: each
byte of the leaf and of its optimizer state crosses the memory bus once.

This works for any chain whose stages act coordinate by coordinate (every
adaptix primitive except those that reduce over a leaf), because such a chain
run on a slice of every per-parameter array gives that slice of the result.
Anything else falls back to the plain two calls, with identical results.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from adaptix._base import check_same_structure

DEFAULT_CHUNK_SIZE = 1 << 15  # 32k elements: a chunk of p, g, m, v, ... stays in L2 cache


def elementwise(update: Callable) -> Callable:
    """Marks an ``update`` function as coordinate-wise, so that fused execution may chunk it.

    A stage is coordinate-wise when coordinate ``k`` of its output and of every
    per-parameter state array depends only on coordinate ``k`` of its inputs
    (updates, ``grad``, params, state) and on shared scalars such as step
    counts. Run on a slice of every per-parameter array, it returns that slice
    of the result. Reductions over a leaf (norms, full-matrix statistics) are not.
    """
    update.elementwise = True
    return update


def is_elementwise(tx: Any) -> bool:
    """Whether ``tx`` acts coordinate by coordinate (every stage marked with :func:`elementwise`)."""
    return bool(getattr(tx.update, "elementwise", False))


def _apply(p, u):
    return jnp.asarray(p + u).astype(jnp.asarray(p).dtype)


def update_and_apply(
    tx: optax.GradientTransformation,
    grads: Any,
    state: Any,
    params: Any,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    **extra: Any,
) -> tuple[Any, Any]:
    r"""``tx.update`` then ``optax.apply_updates``, fused into one pass over memory.

    Returns ``(new_params, new_state)``, equal to::

        updates, new_state = tx.update(grads, state, params, **extra)
        new_params = optax.apply_updates(params, updates)

    Use it inside your jitted, donated train step in place of those two lines.
    Leaves larger than ``chunk_size`` are processed in chunks of that many
    elements, each chunk running the whole chain and writing its slice of the
    parameters and of every optimizer-state array before the next chunk is
    read. Chains that are not coordinate-wise (for instance containing
    ``optax.clip_by_global_norm`` or a masked stage) take the plain path.

    Args:
      tx: the transformation, typically an adaptix alias or chain.
      grads: the gradient tree (same structure as ``params``).
      state: ``tx``'s state.
      params: the current parameters.
      chunk_size: elements per chunk for large leaves.
      **extra: extra keyword arguments for ``tx.update``.

    Example:
      >>> import jax, jax.numpy as jnp, adaptix
      >>> opt = adaptix.adam(1e-3)
      >>> params = {"w": jnp.ones((256, 256))}
      >>> state = opt.init(params)
      >>> grads = {"w": jnp.full((256, 256), 0.5)}
      >>> new_params, state = adaptix.update_and_apply(opt, grads, state, params, chunk_size=4096)
      >>> float(new_params["w"][0, 0])
      0.9990000128746033
    """
    if not is_elementwise(tx):
        updates, new_state = tx.update(grads, state, params, **extra)
        return optax.apply_updates(params, updates), new_state
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"update_and_apply: chunk_size must be a positive int, got {chunk_size!r}.")
    check_same_structure(grads, params, "update_and_apply: grads", "params")

    p_leaves, params_def = jax.tree.flatten(params)
    g_leaves = jax.tree.leaves(grads)
    is_container = _per_parameter_test(params_def, [jnp.shape(p) for p in p_leaves])
    # The state as a list of nodes: per-parameter containers (subtrees shaped
    # like the params: moments, traces, ...) and shared leaves (step counts, ...).
    nodes, nodes_def = jax.tree.flatten(state, is_leaf=is_container)
    container = [is_container(n) for n in nodes]
    node_leaves = [jax.tree.leaves(n) if c else None for n, c in zip(nodes, container)]

    new_params, new_nodes = [], []
    for i, (p, g) in enumerate(zip(p_leaves, g_leaves)):
        leaf_state = jax.tree.unflatten(
            nodes_def, [leaves[i] if c else n for n, c, leaves in zip(nodes, container, node_leaves)]
        )
        p_new, leaf_state = _fused_leaf(tx, p, g, leaf_state, chunk_size, extra)
        new_params.append(p_new)
        new_nodes.append(nodes_def.flatten_up_to(leaf_state))

    # Containers are rebuilt from every leaf; shared values, identical for every
    # leaf, are taken from the first.
    rebuilt = [
        jax.tree.unflatten(params_def, [nodes_i[j] for nodes_i in new_nodes]) if c else new_nodes[0][j]
        for j, c in enumerate(container)
    ]
    return jax.tree.unflatten(params_def, new_params), jax.tree.unflatten(nodes_def, rebuilt)


def _per_parameter_test(params_def, shapes):
    """A predicate telling the per-parameter containers of a state from its shared leaves."""
    if params_def == jax.tree.structure(0):  # bare array parameters
        return lambda node: isinstance(node, jax.Array) and jnp.shape(node) == shapes[0]

    def is_container(node) -> bool:
        leaves, treedef = jax.tree.flatten(node)
        return treedef == params_def and all(jnp.shape(x) == s for x, s in zip(leaves, shapes))

    return is_container


def _fused_leaf(tx, p, g, state, chunk_size, extra):
    """Update and apply for one leaf (``state`` holds this leaf's slices and the shared values)."""
    size = int(jnp.size(p))
    if size <= chunk_size:
        u, new_state = tx.update(g, state, p, **extra)
        return _apply(p, u), new_state

    shape = jnp.shape(p)
    state_leaves, state_def = jax.tree.flatten(state)
    per_param = [jnp.shape(x) == shape for x in state_leaves]
    flat = lambda x: jnp.reshape(x, (-1,))
    p_flat, g_flat = flat(p), flat(g)
    arrays = [flat(x) if is_p else x for x, is_p in zip(state_leaves, per_param)]

    def run_chunk(start, length, p_buf, arrays):
        sl = lambda x: jax.lax.dynamic_slice_in_dim(x, start, length)
        chunk_state = jax.tree.unflatten(
            state_def, [sl(a) if is_p else x for a, x, is_p in zip(arrays, state_leaves, per_param)]
        )
        u, new_chunk_state = tx.update(sl(g_flat), chunk_state, sl(p_buf), **extra)
        p_chunk = _apply(sl(p_buf), u)
        new_leaves = jax.tree.leaves(new_chunk_state)
        # Materialise the chunk's results before writing any of them back, so
        # that no write overwrites a slice another output still has to read.
        p_chunk, new_leaves = jax.lax.optimization_barrier((p_chunk, new_leaves))
        p_buf = jax.lax.dynamic_update_slice_in_dim(p_buf, p_chunk, start, 0)
        arrays = [
            jax.lax.dynamic_update_slice_in_dim(a, new.astype(a.dtype), start, 0) if is_p else new
            for a, new, is_p in zip(arrays, new_leaves, per_param)
        ]
        return p_buf, arrays

    num_full, tail = divmod(size, chunk_size)
    shared_old = [x for x, is_p in zip(state_leaves, per_param) if not is_p]

    def body(k, carry):
        p_buf, arrays = carry
        # every chunk starts from the old shared values (step counts, ...)
        it = iter(shared_old)
        arrays = [a if is_p else next(it) for a, is_p in zip(arrays, per_param)]
        return run_chunk(k * chunk_size, chunk_size, p_buf, arrays)

    p_buf, arrays = jax.lax.fori_loop(0, num_full, body, (p_flat, arrays))
    if tail:
        it = iter(shared_old)
        arrays = [a if is_p else next(it) for a, is_p in zip(arrays, per_param)]
        p_buf, arrays = run_chunk(num_full * chunk_size, tail, p_buf, arrays)
    new_leaves = [jnp.reshape(a, shape) if is_p else a for a, is_p in zip(arrays, per_param)]
    return jnp.reshape(p_buf, shape), jax.tree.unflatten(state_def, new_leaves)
