r"""Sweeps as one compiled program: many training runs of one ``flax.nnx`` model in one ``jit(vmap(...))``.

A *lane* is one training run: a learning rate and a seed. The lanes of a sweep form a grid,
``G`` learning rates by ``S`` seeds, and every array of their state carries the two leading axes
``(G, S)``. Lane ``(g, s)`` trains ``make_model(seeds[s])`` with ``optimizer(learning_rates[g])``
on the minibatch sequence of seed ``s``, and its step is the ordinary one,

.. math::

    \ell, \nabla = \operatorname{value\_and\_grad}(\text{loss})(\theta_{gs}), \quad
    u, \sigma_{gs} = \text{tx}_g.\text{update}(\nabla, \sigma_{gs}, \theta_{gs}), \quad
    \theta_{gs} \leftarrow \theta_{gs} + u,

with ``tx_g = optimizer(learning_rates[g])`` built *inside* the traced step from the lane's
learning rate (a traced scalar: adaptix skips the validation of tracers), so all ``G x S`` lanes
run as one jitted step: ``vmap`` over the seeds (each seed its own minibatch ``x[s]``) inside a
``vmap`` over the learning rates (which share the ``S`` minibatches, so they are not copied ``G``
times). The state is donated to the step. The lanes never mix: a lane whose cost is not finite
(diverged) does not change the others, :func:`train_lanes` marks it diverged and keeps its curve
up to the end of the epoch where it diverged, as the one-run loop of
:func:`adaptix.experiments.train.train` does.

Per-seed randomness is the same as ``G`` separate runs would have: each seed's model is built by
``make_model(seed)`` (its parameters and, through the ``nnx.Rngs`` it holds, its dropout keys),
and the order of the minibatches of seed ``s`` is drawn from ``np.random.default_rng(seeds[s])``,
one permutation per epoch, so it depends only on the seed: the same for every learning rate
and every optimizer.

Example: three learning rates of Adam by two seeds of a small MLP, one compiled step::

    from flax import nnx
    import optax, adaptix
    from adaptix.experiments import sweep
    from adaptix.experiments.data import Split
    from adaptix.experiments.models import MLP

    def loss(model, batch):
        x, y = batch
        return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    lanes, state = sweep.init_lanes(lambda seed: MLP(64, 10, hidden=(100,), rngs=nnx.Rngs(seed)),
                                    lambda lr: adaptix.adam(lr), [1e-3, 1e-2, 1e-1], seeds=[0, 1])
    run = sweep.train_lanes(lanes, state, loss, Split(x_train, y_train), epochs=5, batch_size=32)
    run.iteration_loss.shape        # (3, 2, 5 * (len(y_train) // 32))
    model = sweep.lane_model(lanes, run.state, 1, 0)   # lr 1e-2, seed 0, a plain nnx model

The lanes must fit in memory together (``G x S`` copies of the parameters, of the optimizer
state and of the activations of a minibatch). :func:`train_lanes` compiles the step first and
raises :class:`LanesDoNotFit` before any step runs when what the compiled program needs
(``memory_analysis()``: arguments, outputs and temporaries) exceeds
:data:`MEMORY_FRACTION` of the memory available (``MemAvailable`` on a CPU, the device's free
memory on an accelerator); callers then train one run at a time. (The CIFAR-10 CNN at batch 128
needs 0.48 GB for one lane and 3.3 GB for six on a CPU, by ``memory_analysis()``; thirty lanes
were killed by the kernel at 22 GB.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from adaptix.experiments.checkpoints import EpochCheckpoints, generator_states, restore_generators
from adaptix.experiments.data import Split
from adaptix.experiments.train import _dense, _l2_penalty

#: ``(params, rest, opt_state)``: the model's ``nnx.Param`` state, its other state (such as dropout
#: keys and counters) and the optimizer's state, every array with the leading axes ``(G, S)``.
LaneState = tuple
Loss = Callable[[nnx.Module, tuple], jax.Array]  # (model, batch) -> scalar cost of the minibatch


@dataclass(frozen=True, eq=False)
class Lanes:
    """What the lanes of a sweep share: the model's structure, the optimizer, the grid.

    ``graphdef`` is the model in training mode, ``eval_graphdef`` the same model with
    ``model.eval()`` (dropout off); ``optimizer`` maps a (traced) learning rate to a
    transformation; ``learning_rates`` is the float32 ``(G,)`` axis and ``seeds`` the ``(S,)`` axis.
    """

    graphdef: nnx.GraphDef
    eval_graphdef: nnx.GraphDef
    optimizer: Callable[[jax.Array], optax.GradientTransformation]
    learning_rates: jax.Array
    seeds: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, int]:
        """``(G, S)``: the number of learning rates and of seeds."""
        return (len(self.learning_rates), len(self.seeds))


def _over_lanes(fn: Callable, grid_axes: tuple, seed_axes: tuple) -> Callable:
    """``fn`` of one lane mapped over the ``(G, S)`` grid: ``vmap`` over seeds inside ``vmap`` over rates."""
    return jax.vmap(jax.vmap(fn, in_axes=seed_axes), in_axes=grid_axes)


def init_lanes(make_model: Callable[[int], nnx.Module],
               optimizer: Callable[[jax.Array], optax.GradientTransformation],
               learning_rates: Sequence[float], seeds: Sequence[int]) -> tuple[Lanes, LaneState]:
    """Builds the lanes of ``learning_rates x seeds`` and their stacked initial state.

    Args:
      make_model: ``seed -> nnx.Module``; called once per seed (every learning rate of a seed
        starts from the same model), for instance
        ``lambda seed: Model(rngs=nnx.Rngs(params=seed, dropout=seed + 1))``.
      optimizer: ``learning_rate -> GradientTransformation``; called with a traced scalar, under
        ``vmap`` for ``tx.init`` and inside the jitted step.
      learning_rates: the ``G`` step sizes.
      seeds: the ``S`` seeds.

    Returns:
      ``(lanes, state)``: the shared :class:`Lanes` and the :data:`LaneState` ``(params, rest,
      opt_state)`` with the leading axes ``(G, S)``; ``opt_state`` is ``tx.init`` of each lane.
    """
    seeds = tuple(int(s) for s in seeds)
    if not seeds or not len(learning_rates):
        raise ValueError("init_lanes needs at least one learning rate and one seed")
    per_seed = []
    for seed in seeds:
        model = make_model(seed)
        model.train()
        per_seed.append(nnx.split(model, nnx.Param, ...))
    graphdef = per_seed[0][0]
    model.eval()
    eval_graphdef = nnx.split(model, nnx.Param, ...)[0]
    rates = jnp.asarray(learning_rates, dtype=jnp.float32)
    params, rest = (jax.tree.map(lambda *leaves: jnp.stack(leaves), *(split[i] for split in per_seed)) for i in (1, 2))

    # eager rather than jitted: a few dispatches, and nothing to compile for each new optimizer
    tile = lambda leaf: jnp.broadcast_to(leaf, (len(rates), *leaf.shape))
    params, rest = jax.tree.map(tile, params), jax.tree.map(tile, rest)
    opt_state = _over_lanes(lambda p, lr: optimizer(lr).init(p), (0, 0), (0, None))(params, rates)
    opt_state = jax.tree.map(jnp.array, opt_state)  # own buffers, even where an init returns its params: donated
    return Lanes(graphdef, eval_graphdef, optimizer, rates, seeds), (params, rest, opt_state)


def lane_step(lanes: Lanes, loss: Loss, *, donate: bool = True) -> Callable[[LaneState, tuple], tuple]:
    """The jitted training step of every lane at once: ``step(state, batch) -> (state, losses)``.

    Args:
      lanes: from :func:`init_lanes`.
      loss: ``(model, batch) -> scalar`` for one lane's minibatch, the model in training mode.
      donate: donate ``state`` to the step (its buffers are reused for the new state).

    ``batch`` is a tuple of arrays with a leading seed axis (``x`` of shape ``(S, B, ...)``): lane
    ``(g, s)`` sees ``batch[i][s]``. ``losses`` has the shape ``(G, S)``: each lane's cost before
    its update.
    """
    graphdef, optimizer = lanes.graphdef, lanes.optimizer

    def one_lane(params, rest, opt_state, learning_rate, batch):
        model = nnx.merge(graphdef, params, rest)
        value, grads = nnx.value_and_grad(loss)(model, batch)
        updates, opt_state = optimizer(learning_rate).update(grads, opt_state, params)
        _, _, rest = nnx.split(model, nnx.Param, ...)
        return optax.apply_updates(params, updates), rest, opt_state, value

    mapped = _over_lanes(one_lane, (0, 0, 0, 0, None), (0, 0, 0, None, 0))

    @partial(jax.jit, donate_argnums=0 if donate else ())
    def step(state, batch, learning_rates):
        params, rest, opt_state, losses = mapped(*state, learning_rates, batch)
        return (params, rest, opt_state), losses

    return partial(step, learning_rates=lanes.learning_rates)


#: The share of the available memory that a vmapped sweep may plan to use (the rest is headroom
#: for what the process allocates beside the compiled step: minibatches, evaluation, the runtime).
MEMORY_FRACTION = 0.75


class LanesDoNotFit(MemoryError):
    """The compiled step of every lane at once needs more memory than is available (bytes, both)."""

    def __init__(self, shape: tuple[int, int], needed: int, available: int):
        self.shape, self.needed, self.available = shape, needed, available
        rates, seeds = (f"{n} {what}{'s' if n != 1 else ''}" for n, what in zip(shape, ("step size", "seed")))
        super().__init__(f"{shape[0] * shape[1]} vmapped lanes ({rates} x {seeds}) need "
                         f"{needed / 2**30:.1f} GiB, {available / 2**30:.1f} GiB available")


def available_memory(device: jax.Device | None = None) -> int | None:
    """Bytes free for a program on ``device`` (default: the first): an accelerator's free memory,
    a CPU's ``MemAvailable`` (Linux); ``None`` where it cannot be told (then nothing is refused)."""
    device = device or jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def compiled_step(lanes: Lanes, loss: Loss, state: LaneState, split: Split, batch_size: int):
    """:func:`lane_step` compiled ahead of the run, once its memory is known to fit.

    Returns ``step(state, batch) -> (state, losses)``. Raises :class:`LanesDoNotFit` when the
    compiled program needs more than :data:`MEMORY_FRACTION` of :func:`available_memory`.
    """
    jitted = lane_step(lanes, loss)
    S = len(lanes.seeds)
    x_shape = (S, batch_size, *np.shape(split.x)[1:])
    batch = (jax.ShapeDtypeStruct(x_shape, jnp.float32),
             jax.ShapeDtypeStruct((S, batch_size), jax.dtypes.canonicalize_dtype(np.asarray(split.y).dtype)))
    compiled = jitted.func.lower(state, batch, lanes.learning_rates).compile()
    memory = compiled.memory_analysis()
    available = available_memory()
    if memory is not None and available is not None:
        needed = (memory.argument_size_in_bytes + memory.output_size_in_bytes - memory.alias_size_in_bytes
                  + memory.temp_size_in_bytes)
        if needed > MEMORY_FRACTION * available:
            raise LanesDoNotFit(lanes.shape, needed, available)
    return lambda state, batch: compiled(state, batch, lanes.learning_rates)


def lane_model(lanes: Lanes, state: LaneState, g: int, s: int, *, train: bool = False) -> nnx.Module:
    """Lane ``(g, s)`` as a plain ``nnx`` model (in evaluation mode unless ``train``), for inspection or reuse."""
    params, rest = (jax.tree.map(lambda leaf: leaf[g, s], part) for part in state[:2])
    return nnx.merge(lanes.graphdef if train else lanes.eval_graphdef, params, rest)


def seed_batches(split: Split, batch_size: int, rngs: Sequence[np.random.Generator]) -> Iterator[tuple]:
    """One epoch of minibatches for every seed: ``(x, y)`` of shapes ``(S, batch_size, ...)``, ``(S, batch_size)``.

    Seed ``s`` draws one permutation from ``rngs[s]`` and walks through it in steps of
    ``batch_size``, dropping the ragged tail: the same minibatches as
    :func:`adaptix.experiments.train.train` with that generator. Sparse inputs (IMDB) are densified.
    """
    n = len(split)
    orders = np.stack([rng.permutation(n) for rng in rngs])
    sparse = hasattr(split.x, "toarray")
    for start in range(0, n - n % batch_size, batch_size):
        idx = orders[:, start : start + batch_size]
        x = np.stack([_dense(split.x[i]) for i in idx]) if sparse else np.asarray(split.x[idx], dtype=np.float32)
        yield x, split.y[idx]


@dataclass
class LaneRun:
    """What :func:`train_lanes` produced, lane ``(g, s)`` at index ``[g, s]`` of every array.

    ``iteration_loss``: ``(G, S, epochs * steps)``, each lane's minibatch cost (NaN after the epoch
    where a lane diverged); ``diverged_epoch``: ``(G, S)``, the epoch where the cost was first not
    finite, -1 for a lane that did not diverge; ``metrics``: name -> ``(G, S, epochs)``, what
    ``evaluate`` returned after each epoch (NaN from the epoch where a lane diverged on);
    ``state``: the final :data:`LaneState`; ``steps_per_epoch``; ``seconds``: the wall time,
    compilation included.
    """

    lanes: Lanes
    state: LaneState
    iteration_loss: np.ndarray
    diverged_epoch: np.ndarray
    steps_per_epoch: int
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def diverged(self) -> np.ndarray:
        """``(G, S)`` booleans: the lanes whose cost was not finite at some iteration."""
        return self.diverged_epoch >= 0

    def lane_curves(self, g: int, s: int) -> tuple[list[float], dict[str, list[float]]]:
        """Lane ``(g, s)``'s minibatch costs and metrics as lists, cut where a one-run loop stops.

        A lane that diverged in epoch ``k`` keeps the costs of epochs ``0 .. k`` and the metrics of
        epochs ``0 .. k - 1``, as :func:`adaptix.experiments.train.train` records a diverged run.
        """
        stop = int(self.diverged_epoch[g, s])
        losses, metrics = self.iteration_loss[g, s], {k: m[g, s] for k, m in self.metrics.items()}
        if stop >= 0:
            losses, metrics = losses[: (stop + 1) * self.steps_per_epoch], {k: m[:stop] for k, m in metrics.items()}
        return [float(v) for v in losses], {k: [float(v) for v in m] for k, m in metrics.items()}


def train_lanes(lanes: Lanes, state: LaneState, loss: Loss, split: Split, *, epochs: int, batch_size: int,
                evaluate: Callable[[Lanes, LaneState], dict[str, np.ndarray]] | None = None,
                progress: bool | None = None, desc: str = "lanes",
                checkpoints: EpochCheckpoints | None = None) -> LaneRun:
    """Trains every lane for ``epochs`` passes over ``split`` with one jitted, vmapped step.

    Args:
      lanes, state: from :func:`init_lanes` (``state`` is donated: use the returned one).
      loss: ``(model, (x, y)) -> scalar``, the cost of one lane's minibatch (see :func:`lane_step`).
      split: the training data; the minibatches of seed ``s`` follow :func:`seed_batches`.
      epochs, batch_size: the budget; an epoch is ``len(split) // batch_size`` steps.
      evaluate: called after each epoch with the lanes and the state, returns name -> ``(G, S)``
        values (for instance :func:`evaluate_classifier`'s cost and accuracy); ``None``: no evaluation.
      progress: a tqdm bar over the steps; ``None`` shows it only on a terminal.
      desc: the bar's label.
      checkpoints: where to save the lanes every ``checkpoints.every`` epochs (state, curves,
        generators of the minibatch order), and to resume from: with a checkpoint in it, the
        training goes on from there, bit for bit as if it had not stopped.

    Returns:
      a :class:`LaneRun`. A lane whose cost is not finite in an epoch is marked diverged at that
      epoch; the others go on unchanged, and the loop stops early once every lane has diverged.

    Raises:
      LanesDoNotFit: before the first step, when the compiled step would not fit in memory.
    """
    steps = len(split) // batch_size
    if steps == 0:
        raise ValueError(f"batch_size {batch_size} is larger than the {len(split)} examples: no step to take")
    rngs = [np.random.default_rng(seed) for seed in lanes.seeds]
    losses = np.full((*lanes.shape, epochs * steps), np.nan, dtype=np.float32)
    diverged_epoch = np.full(lanes.shape, -1)
    metrics: dict[str, np.ndarray] = {}
    first, earlier_seconds = 0, 0.0
    resumed = checkpoints.restore((state, losses, diverged_epoch)) if checkpoints is not None else None
    if resumed is not None:
        first, (state, losses, diverged_epoch), meta = resumed
        losses, diverged_epoch = np.array(losses), np.array(diverged_epoch)  # writable host copies
        restore_generators(rngs, meta["generators"])
        metrics = {name: np.asarray(values, dtype=float) for name, values in meta["metrics"].items()}
        earlier_seconds = meta["seconds"]
    start = time.perf_counter()
    step = compiled_step(lanes, loss, state, split, batch_size)  # LanesDoNotFit before any step
    disable = None if progress is None else not progress
    with tqdm(total=epochs * steps, initial=first * steps, desc=desc, disable=disable, leave=False) as bar:
        for epoch in range(first, epochs):
            if np.all(diverged_epoch >= 0):
                break
            state = _lane_epoch(step, state, split, batch_size, rngs, bar, epoch, losses, diverged_epoch)
            if evaluate is not None:
                for name, values in evaluate(lanes, state).items():
                    metrics.setdefault(name, np.full((*lanes.shape, epochs), np.nan))
                    metrics[name][..., epoch] = np.where(diverged_epoch < 0, values, np.nan)
            if checkpoints is not None and checkpoints.due(epoch + 1) and epoch + 1 < epochs:
                meta = {"generators": generator_states(rngs), "metrics": {k: v.tolist() for k, v in metrics.items()},
                        "seconds": earlier_seconds + time.perf_counter() - start}
                checkpoints.save(epoch + 1, (state, losses, diverged_epoch), meta)
    seconds = earlier_seconds + time.perf_counter() - start
    return LaneRun(lanes, state, losses, diverged_epoch, steps, metrics, seconds)


def _lane_epoch(step, state, split, batch_size, rngs, bar, epoch, losses, diverged_epoch) -> LaneState:
    """One epoch of every lane; writes its costs into ``losses`` and marks the lanes that diverged in it."""
    pending = []
    for x, y in seed_batches(split, batch_size, rngs):
        state, value = step(state, (x, y))
        pending.append(value)
        bar.update()
    epoch_losses = np.stack(jax.device_get(pending), axis=-1)  # (G, S, steps)
    steps = epoch_losses.shape[-1]
    alive = diverged_epoch < 0
    losses[..., epoch * steps : (epoch + 1) * steps] = np.where(alive[..., None], epoch_losses, np.nan)
    diverged_epoch[alive & ~np.isfinite(epoch_losses).all(-1)] = epoch
    return state


@jax.jit
def _lane_batch_stats(graphdef, params, rest, x, y):
    def one_lane(params, rest):
        logits = nnx.merge(graphdef, params, rest)(x)
        cost = optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()
        return cost, (logits.argmax(-1) == y).sum()

    return _over_lanes(one_lane, (0, 0), (0, 0))(params, rest)


@partial(jax.jit, static_argnums=3)
def _lane_l2(graphdef, params, rest, weight):
    return _over_lanes(lambda p, r: _l2_penalty(nnx.merge(graphdef, p, r), weight), (0, 0), (0, 0))(params, rest)


def evaluate_classifier(lanes: Lanes, state: LaneState, split: Split, *, l2: float = 0.0,
                        batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Every lane's cost and accuracy on a whole split, dropout off: two ``(G, S)`` arrays.

    The cost is the mean softmax cross-entropy plus ``l2 / 2`` times the squared norm of the
    model's ``l2_weights()`` (when ``l2`` is not 0), as
    :func:`adaptix.experiments.train.evaluate` computes it for one model. The lanes share each
    batch of ``split``.
    """
    params, rest, _ = state
    total, correct = np.zeros(lanes.shape), np.zeros(lanes.shape, dtype=np.int64)
    n = len(split)
    for start in range(0, n, batch_size):
        x, y = _dense(split.x[start : start + batch_size]), split.y[start : start + batch_size]
        cost, hits = jax.device_get(_lane_batch_stats(lanes.eval_graphdef, params, rest, x, y))
        total += cost
        correct += hits
    penalty = np.asarray(_lane_l2(lanes.eval_graphdef, params, rest, l2)) if l2 else 0.0
    return total / n + penalty, correct / n
