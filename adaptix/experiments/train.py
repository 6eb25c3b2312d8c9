"""Training loop: a model, an optimizer, minibatches; records the curves the paper plots."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from adaptix.experiments.checkpoints import EpochCheckpoints, generator_states, restore_generators
from adaptix.experiments.data import Data, Split


@dataclass
class History:
    """What one training run produced."""

    optimizer: str
    learning_rate: float
    iteration_loss: list[float] = field(default_factory=list)  # minibatch cost, every iteration
    epoch_train_loss: list[float] = field(default_factory=list)  # full training cost, every epoch
    epoch_test_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0
    diverged: bool = False

    @property
    def final_train_loss(self) -> float:
        return self.epoch_train_loss[-1] if self.epoch_train_loss else float("nan")

    @property
    def final_test_accuracy(self) -> float:
        return self.epoch_test_accuracy[-1] if self.epoch_test_accuracy else float("nan")


def _dense(x) -> np.ndarray:
    """A minibatch as a dense float32 array (IMDB's features are a sparse matrix)."""
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float32)


def _batches(split: Split, batch_size: int, rng: np.random.Generator | None):
    n = len(split)
    order = rng.permutation(n) if rng is not None else np.arange(n)
    stop = n - n % batch_size if rng is not None else n  # training drops the ragged tail
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        yield _dense(split.x[idx]), split.y[idx]


def _l2_penalty(model: nnx.Module, weight: float) -> jax.Array:
    if weight == 0.0:
        return jnp.zeros([])
    return 0.5 * weight * sum(jnp.sum(jnp.square(w)) for w in model.l2_weights())


def classification_cost(model: nnx.Module, x: jax.Array, y: jax.Array, l2: float = 0.0) -> jax.Array:
    """The training objective of the experiments: mean softmax cross-entropy of ``model(x)`` plus the L2 term."""
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean() + _l2_penalty(model, l2)


@jax.jit
def _batch_stats(graphdef, state, x, y):
    model = nnx.merge(graphdef, state)
    logits = model(x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()
    return loss, (logits.argmax(-1) == y).sum()


def evaluate(model: nnx.Module, split: Split, l2: float = 0.0, batch_size: int = 1000) -> tuple[float, float]:
    """Full-split cost (mean cross-entropy + L2 term) and accuracy, with dropout off."""
    model.eval()
    graphdef, state = nnx.split(model)
    total_loss, correct = 0.0, 0
    for x, y in _batches(split, batch_size, None):
        loss, hits = _batch_stats(graphdef, state, x, y)
        total_loss += float(loss)
        correct += int(hits)
    model.train()
    n = len(split)
    return total_loss / n + float(_l2_penalty(model, l2)), correct / n


def train(
    model: nnx.Module,
    tx: optax.GradientTransformation,
    data: Data,
    *,
    name: str,
    learning_rate: float,
    epochs: int,
    batch_size: int = 128,
    l2: float = 0.0,
    seed: int = 0,
    evaluate_every_epoch: bool = True,
    progress: bool | None = None,
    on_epoch: Callable[[int, History], None] | None = None,
    checkpoints: EpochCheckpoints | None = None,
) -> History:
    """Trains ``model`` in place with ``tx`` through ``nnx.Optimizer`` and a jitted step.

    The minibatch order depends only on ``seed``, so every optimizer sees the
    same sequence of batches. A non-finite cost stops the run and marks it
    ``diverged``. With ``checkpoints``, the model, the optimizer, the generator of
    the minibatch order and the history are saved every ``checkpoints.every``
    epochs, and a run that finds a checkpoint there goes on from it, bit for bit.
    """
    model.train()
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    # The functional form of an nnx step (split once, jit a pure function of the
    # state, donate it) avoids re-walking the object graph on every call.
    graphdef, state = nnx.split((model, optimizer))

    @partial(jax.jit, donate_argnums=0)
    def step(state, x, y):
        model, optimizer = nnx.merge(graphdef, state)

        loss, grads = nnx.value_and_grad(classification_cost)(model, x, y, l2)
        optimizer.update(model, grads)
        return nnx.state((model, optimizer)), loss

    history = History(optimizer=name, learning_rate=learning_rate)
    rng = np.random.default_rng(seed)
    steps_per_epoch = len(data.train) // batch_size
    first, earlier_seconds = 0, 0.0
    resumed = checkpoints.restore(state) if checkpoints is not None else None
    if resumed is not None:
        first, state, meta = resumed
        restore_generators([rng], meta["generators"])
        history = History(**meta["history"])
        earlier_seconds = history.seconds
    start = time.perf_counter()
    disable = None if progress is None else not progress  # None: only on a terminal
    with tqdm(total=epochs * steps_per_epoch, initial=first * steps_per_epoch, desc=f"{name} lr={learning_rate:g}",
              disable=disable, leave=False) as bar:
        for epoch in range(first, epochs):
            losses = []
            for x, y in _batches(data.train, batch_size, rng):
                state, loss = step(state, x, y)
                losses.append(loss)
                bar.update()
            nnx.update((model, optimizer), state)
            losses = [float(v) for v in jax.device_get(losses)]
            history.iteration_loss.extend(losses)
            if not np.all(np.isfinite(losses)):
                history.diverged = True
                break
            if evaluate_every_epoch or epoch == epochs - 1:
                train_loss, _ = evaluate(model, data.train, l2)
                _, accuracy = evaluate(model, data.test, l2)
                history.epoch_train_loss.append(train_loss)
                history.epoch_test_accuracy.append(accuracy)
                bar.set_postfix(cost=f"{train_loss:.4f}", acc=f"{accuracy:.4f}")
            if on_epoch is not None:
                on_epoch(epoch, history)
            if checkpoints is not None and checkpoints.due(epoch + 1) and epoch + 1 < epochs:
                history.seconds = earlier_seconds + time.perf_counter() - start
                meta = {"generators": generator_states([rng]), "history": asdict(history)}
                checkpoints.save(epoch + 1, state, meta)
    history.seconds = earlier_seconds + time.perf_counter() - start
    return history
