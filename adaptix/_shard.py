"""``shard_state``: the optimizer state sharded over the data-parallel mesh axis (ZeRO stage 1).

With data parallelism the parameters are replicated along the data axis of the mesh, and
adaptix's state follows them (``docs/sharding.md``): every device holds every moment, so Adam's
state costs each device twice the model. :func:`shard_state` splits the state along that axis
instead: each of the N devices keeps 1/N of every parameter-shaped state leaf, computes its part of
the update, and the updates are gathered back to the parameters' layout. The parameters stay
where the user put them, the training step needs no annotation of its own, and the state keeps the
inner optimizer's structure (checkpoints, ``optax.tree_utils.tree_get`` and ``flax.nnx.Optimizer``
see the same tree).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from adaptix._base import CHAIN_INPUT, CountedTransformation, Transformation
from adaptix._quantized import QuantizedArray

try:  # experimental in JAX; without it, the updates' layout under jit is left to the partitioner
    from jax.experimental.shard_alike import shard_alike
except ImportError:  # pragma: no cover
    shard_alike = None

OWNER = "shard_state"


def _axis_names(mesh: Any, axis: Any) -> tuple[str, ...]:
    """``axis`` as a tuple of the mesh's axis names; refuses anything else, naming the mesh's axes."""
    if not isinstance(mesh, Mesh):
        raise TypeError(f"{OWNER}: mesh must be a jax.sharding.Mesh (its devices are where the state goes), "
                        f"got {type(mesh).__name__} {mesh!r}.")
    names = (axis,) if isinstance(axis, str) else axis
    valid = tuple(mesh.axis_names)
    if (not isinstance(names, Sequence) or isinstance(names, str) or not names
            or not all(isinstance(n, str) for n in names)):
        raise TypeError(f"{OWNER}: axis must be a mesh axis name or a non-empty tuple of them (the mesh's axes "
                        f"are {valid}), got {axis!r}.")
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"{OWNER}: axis must name axes of the mesh, which are {valid}; got {axis!r} "
                         f"({', '.join(map(repr, unknown))} is not one).")
    if len(set(names)) != len(names):
        raise ValueError(f"{OWNER}: axis names a mesh axis twice: {axis!r}.")
    return tuple(names)


def sharded_dim(shape: Sequence[int], n: int) -> int | None:
    """The dimension of ``shape`` that :func:`shard_state` splits ``n`` ways, ``None`` if none fits.

    The first dimension whose size is a multiple of ``n`` (and at least ``n``): any such dimension
    gives every device exactly ``1/n``, and the first one gives each device a contiguous block of a
    row-major array (the last one costs a transposing copy per leaf and step: +80% on an Adam step
    of ``benchmarks/sharding.py --quick``). Chosen from the shape alone, so that it is the same
    eagerly and under ``jit``.
    """
    for i, size in enumerate(shape):
        if size >= n and size % n == 0:
            return i
    return None


def _axes_of(entry: Any) -> tuple:
    """The mesh axes of one ``PartitionSpec`` entry."""
    if entry is None or entry is P.UNCONSTRAINED:
        return ()
    return (entry,) if isinstance(entry, str) else tuple(entry)


def _known_spec(spec: Sequence[Any], ndim: int, dim: int, names: tuple[str, ...]) -> P:
    """A known layout with ``names`` on ``dim`` alone: taken off the other dimensions, which keep their other axes."""
    out = []
    for i in range(ndim):
        if i == dim:
            out.append(names[0] if len(names) == 1 else names)
            continue
        rest = tuple(a for a in _axes_of(spec[i] if i < len(spec) else None) if a not in names)
        out.append(None if not rest else rest[0] if len(rest) == 1 else rest)
    return P(*out)


def _traced_spec(ndim: int, dim: int, names: tuple[str, ...]) -> P:
    """Under ``jit`` (automatic axes) the layout is not visible: ``names`` on ``dim``, the rest left to propagation."""
    entry = names[0] if len(names) == 1 else names
    return P(*([P.UNCONSTRAINED] * dim), entry, *([P.UNCONSTRAINED] * (ndim - dim - 1)))


def _is_stored(x: Any) -> bool:
    """A quantized moment leaf (codes of the parameter's shape and per-block scales) counts as one leaf."""
    return isinstance(x, QuantizedArray)


def _map_params_shaped(f, state: Any, like: Any) -> Any:
    """``f(leaf)`` on every leaf of the subtrees of ``state`` with ``like``'s structure and shapes.

    A quantized leaf (:class:`~adaptix.QuantizedArray`) stands for a moment of its parameter's shape:
    ``f`` is applied to its codes and to its scales (one per block, split too when their number
    divides; each block is a run of the raveled leaf, so a device's rows hold whole blocks when
    the block size divides a row block).
    """
    treedef = jax.tree.structure(like)
    shapes = [np.shape(x) for x in jax.tree.leaves(like)]

    def params_shaped(node: Any) -> bool:
        return (jax.tree.structure(node, is_leaf=_is_stored) == treedef
                and [np.shape(x) for x in jax.tree.leaves(node, is_leaf=_is_stored)] == shapes)

    def apply(leaf: Any) -> Any:
        return QuantizedArray(f(leaf.codes), f(leaf.scales)) if _is_stored(leaf) else f(leaf)

    def visit(node: Any) -> Any:
        return jax.tree.map(apply, node, is_leaf=_is_stored) if params_shaped(node) else node

    return jax.tree.map(visit, state, is_leaf=params_shaped)


def _explicit(mesh: Mesh, names: tuple[str, ...]) -> bool:
    """Whether the axes are explicit (``jax.sharding.AxisType.Explicit``): shardings are part of the types."""
    explicit = getattr(getattr(jax.sharding, "AxisType", None), "Explicit", None)
    types = getattr(mesh, "axis_types", None)
    return explicit is not None and types is not None and all(
        types[mesh.axis_names.index(n)] == explicit for n in names)


def _put(leaf: Any, mesh: Mesh, names: tuple[str, ...], explicit: bool) -> Any:
    """One state leaf on its layout: ``names`` on :func:`sharded_dim`, other axes kept elsewhere."""
    if not isinstance(leaf, (jax.Array, np.ndarray)) or np.ndim(leaf) == 0:
        return leaf
    dim = sharded_dim(np.shape(leaf), int(np.prod([mesh.shape[n] for n in names])))
    if dim is None:
        return leaf
    if explicit:  # the layout is in the type, also under jit
        spec = _known_spec(jax.typeof(leaf).sharding.spec, np.ndim(leaf), dim, names)
        return jax.sharding.reshard(leaf, NamedSharding(mesh, spec))
    sharding = getattr(leaf, "sharding", None)
    if not isinstance(leaf, jax.core.Tracer) and isinstance(sharding, NamedSharding) and sharding.mesh == mesh:
        return jax.device_put(leaf, NamedSharding(mesh, _known_spec(sharding.spec, np.ndim(leaf), dim, names)))
    return jax.lax.with_sharding_constraint(leaf, NamedSharding(mesh, _traced_spec(np.ndim(leaf), dim, names)))


def _laid_out_like(updates: Any, params: Any, mesh: Mesh, explicit: bool, state: Any) -> Any:
    """``updates`` in the parameters' layout: computed from sharded state, they are gathered back.

    Under ``jit`` with automatic axes, ``shard_alike`` ties each update to its parameter. An
    update that *is* a state leaf (momentum as the last stage) is first copied through an
    ``optimization_barrier``: one value cannot be both sharded (the state) and replicated.
    """
    state_leaves = {id(x) for x in jax.tree.leaves(state)}

    def gather(u: Any, p: Any) -> Any:
        if u is None or p is None or np.shape(u) != np.shape(p) or np.ndim(u) == 0:
            return u
        if explicit:
            return jax.sharding.reshard(u, NamedSharding(mesh, jax.typeof(p).sharding.spec))
        if isinstance(p, jax.core.Tracer) or isinstance(u, jax.core.Tracer):
            if shard_alike is None:
                return u
            return shard_alike(p, jax.lax.optimization_barrier(u) if id(u) in state_leaves else u)[1]
        if isinstance(p, jax.Array) and isinstance(u, jax.Array) and not u.sharding.is_equivalent_to(
                p.sharding, u.ndim):
            return jax.device_put(u, p.sharding)
        return u

    return jax.tree.map(gather, updates, params, is_leaf=lambda x: x is None)


def shard_state(inner: optax.GradientTransformation, mesh: Mesh,
                axis: str | tuple[str, ...] = "data") -> Transformation:
    r"""``inner`` with its state sharded along the mesh axis ``axis``: ZeRO stage 1.

    Every state leaf shaped like a parameter with at least one dimension (Adam's ``mu`` and ``nu``,
    AdaGrad's sums, ...) is split along ``axis`` on one dimension: the first one whose size is a
    multiple of the axis size :math:`N` (:func:`sharded_dim`; a ``(512, 2048)`` matrix on 8
    devices: its 512 rows, so that each device holds one contiguous block). ``axis`` is taken off
    the leaf's other dimensions; their other mesh axes stay (a model-parallel axis on another
    dimension carries over; under ``jit``, where a parameter's layout is not visible, the other
    dimensions are left to the partitioner). A leaf with no such dimension (a ``(6,)`` bias on 8
    devices) stays laid out like its parameter, and scalars (step counts, injected
    hyperparameters) stay replicated. This holds after ``init``, eager or under ``jax.jit``, and
    after every ``update`` (``jax.lax.with_sharding_constraint``; ``jax.sharding.reshard`` with
    explicit mesh axes). When ``params`` is given, the updates are returned in the parameters'
    layout (all-gathered from the shards, one all-gather per leaf, as in ZeRO-1).

    With replicated parameters on :math:`N` data-parallel devices each device then holds
    :math:`1/N` of the optimizer state (``benchmarks/sharding.py``: 16.4M parameters on 8
    devices, Adam's state per device from 131 MB to 16.4 MB, ``docs/sharding.md``). Each
    coordinate goes through the same arithmetic; a jitted training step equals ``inner``'s bit
    for bit for SGD, AdaGrad, RMSProp, Rprop and others, and within 3 units in the last place for
    the rest, where XLA's fusions of the partitioned step round a multiply-add differently
    (``tests/test_shard_state.py``, every optimizer of the test table).

    The state is ``inner``'s own state, nothing added: ``optax.tree_utils.tree_get`` finds its
    fields, and a checkpoint of it restores into ``inner`` alone and back. The wrapper holds no
    arrays, only the mesh and the axis names (static Python objects: ``flax.nnx.Optimizer``
    accepts it), and passes extra arguments (``grad=``, ``value=``, an adaptix chain's
    ``chain_input`` and step) through to ``inner``.

    Args:
      inner: the optimizer whose state is sharded (any Optax gradient transformation).
      mesh: the ``jax.sharding.Mesh`` of the parameters' devices (all processes' devices in a
        multi-process run).
      axis: the mesh axis (or a tuple of axes, split together) along which to shard the state:
        the data-parallel one.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, optax, adaptix
      >>> from jax.sharding import Mesh
      >>> mesh = Mesh(np.array(jax.devices()), ("data",))
      >>> opt = adaptix.shard_state(adaptix.adam(1e-3), mesh, "data")
      >>> params = {"w": jnp.ones((64, 3))}
      >>> state = opt.init(params)
      >>> mu = optax.tree_utils.tree_get(state, "mu")["w"]
      >>> mu.sharding.shard_shape(mu.shape) == (64 // jax.device_count(), 3)  # 1/N of the rows on each device
      True

    Note:
      Where it does not compose:

      * Parameters already sharded along ``axis`` (fully sharded data parallelism) need no
        wrapper: their state follows them. Wrapped, the state of a leaf split along ``axis`` on
        another dimension than :func:`sharded_dim` is split on that one instead (and the
        gradients are resharded to it every step); and a
        model-parallel axis on the chosen dimension gives way to ``axis`` (a ``(8, 16)`` leaf
        split ``("model", None)`` gets state ``("data", None)``, or under ``jit`` maybe
        ``("data", "model")``). The choice sees only the shape, because under ``jit`` with
        automatic axes the parameters' layout is not visible.
      * :func:`packed` inside, ``shard_state(packed(opt), ...)``: the packed vectors are not
        shaped like the parameters, so they stay as ``packed`` lays them out (replicated for
        replicated parameters): the same numbers, no memory saved. The other order,
        ``packed(shard_state(opt, ...), ...)``, shards the large leaves and every packed vector
        whose length is a multiple of :math:`N`; the others stay replicated.
      * State that is not shaped like the parameters (:func:`full_matrix_adagrad`'s matrices,
        ``optax.masked``'s masked-out nodes) stays as ``inner`` lays it out. Quantized (8-bit)
        moments are split: their codes like a float32 moment, their per-block scales along the
        blocks when the axis size divides their number.
      * Without ``params``, the updates' layout is left to the partitioner; with it, XLA still
        chooses the layout of the *new* parameters in a jitted step: pin it (``out_shardings``,
        or ``jax.lax.with_sharding_constraint`` in the step) to keep them replicated.
    """
    if not isinstance(inner, optax.GradientTransformation):
        raise TypeError(f"{OWNER}: inner must be an optax.GradientTransformation, got {type(inner).__name__}.")
    names = _axis_names(mesh, axis)
    explicit = _explicit(mesh, names)
    passes_chain_input = isinstance(inner, Transformation)
    stage = inner if isinstance(inner, optax.GradientTransformationExtraArgs) else optax.with_extra_args_support(inner)

    def put(leaf):
        return _put(leaf, mesh, names, explicit)

    def init(params, **chain_keywords):  # chain_counts=True when inner reads the step and a chain counts
        return _map_params_shaped(put, stage.init(params, **chain_keywords), params)

    def update(updates, state, params=None, **extra):
        if not passes_chain_input:
            extra.pop(CHAIN_INPUT, None)
        new_updates, new_state = stage.update(updates, state, params, **extra)
        if params is not None:
            new_updates = _laid_out_like(new_updates, params, mesh, explicit, new_state)
        return new_updates, _map_params_shaped(put, new_state, updates)

    if isinstance(inner, CountedTransformation):
        return CountedTransformation(init, update)
    return Transformation(lambda params: init(params), update)
