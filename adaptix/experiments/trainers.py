"""Training one optimizer on an experiment's model from several seeds: vmapped lanes or one run after another.

:func:`train_seeds` trains every seed at once (one ``jit(vmap(...))`` program, see
:mod:`adaptix.experiments.sweep`) and :func:`train_sequentially` one after the other; both
evaluate after every epoch. :func:`sweep_grid` and :func:`grid_search` score step sizes for
:mod:`adaptix.experiments.tuning`: the mean minibatch cost over the last tenth of a short run,
at least its last 20 minibatches (:func:`tail_cost`).
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict

import numpy as np
from flax import nnx

from adaptix.experiments import registry, sweep
from adaptix.experiments.checkpoints import EpochCheckpoints, RunProgress
from adaptix.experiments.optimizers import optimizer_factory
from adaptix.experiments.results import finite_or_inf
from adaptix.experiments.train import History, classification_cost, train


def fresh_model(experiment: registry.Experiment, data, seed: int) -> nnx.Module:
    return experiment.model(data, nnx.Rngs(params=seed, dropout=seed + 1))


#: The fewest minibatches :func:`tail_cost` averages: a tenth of a 15-iteration run would be one
#: minibatch, whose sampling noise hides the differences between step sizes.
MIN_TAIL = 20


def tail_cost(history: History) -> float:
    """Mean minibatch cost over the last tenth of a run, at least :data:`MIN_TAIL` iterations (inf if it diverged)."""
    losses = history.iteration_loss
    if history.diverged or not losses:
        return math.inf
    tail = losses[-max(MIN_TAIL, len(losses) // 10) :]
    return float(np.mean(tail))


def grid_search(experiment, data, name: str, *, epochs: int, seed: int, progress,
                grid: tuple[float, ...] | None = None, bar=None) -> tuple[float, dict[str, float]]:
    """The paper's protocol, one run after another: the step size with the lowest training cost after a short budget.

    The score of a step size is :func:`tail_cost` of a run of ``epochs`` epochs from the model of
    ``seed``; ``bar`` (a tqdm bar) advances by one per grid point.
    """
    grid = experiment.grid if grid is None else grid
    scores = {}
    for lr in grid:
        tx = optimizer_factory(name)(experiment.schedule(lr, name))
        h = train(fresh_model(experiment, data, seed), tx, data, name=name, learning_rate=lr, epochs=epochs,
                  batch_size=experiment.batch_size, l2=experiment.l2, seed=seed, evaluate_every_epoch=False,
                  progress=progress)
        scores[f"{lr:g}"] = finite_or_inf(tail_cost(h))
        if bar is not None:
            bar.update()
    best = min(grid, key=lambda lr: scores[f"{lr:g}"])
    return best, scores


def note_sequential(what: str, too_large: sweep.LanesDoNotFit) -> None:
    """Says on stderr that ``what`` trains one run after another (as ``--sequential``), and why."""
    print(f"adaptix-experiments: {what}: {too_large}; training them one after another, as --sequential does",
          file=sys.stderr, flush=True)


def init_lanes(experiment, data, name: str, rates, seeds) -> tuple[sweep.Lanes, sweep.LaneState]:
    factory = optimizer_factory(name)
    return sweep.init_lanes(lambda seed: fresh_model(experiment, data, seed),
                            lambda lr: factory(experiment.schedule(lr, name)), rates, seeds)


def lane_loss(l2: float) -> sweep.Loss:
    return lambda model, batch: classification_cost(model, *batch, l2)


def lane_history(run: sweep.LaneRun, g: int, s: int, name: str, lr: float) -> History:
    losses, metrics = run.lane_curves(g, s)
    return History(optimizer=name, learning_rate=lr, iteration_loss=losses,
                   epoch_train_loss=metrics.get("train_cost", []), epoch_test_accuracy=metrics.get("test_accuracy", []),
                   seconds=run.seconds, diverged=bool(run.diverged[g, s]))


def sweep_grid(experiment, data, name: str, *, epochs: int, seeds: tuple[int, ...], progress,
               grid: tuple[float, ...], checkpoints: EpochCheckpoints | None = None) -> dict[int, dict[str, float]]:
    """:func:`grid_search` for every step size of ``grid`` and every seed at once, as one vmapped training.

    Returns seed -> step size -> score (:func:`tail_cost`, inf for a lane that diverged).
    """
    lanes, state = init_lanes(experiment, data, name, grid, seeds)
    run = sweep.train_lanes(lanes, state, lane_loss(experiment.l2), data.train, epochs=epochs,
                            batch_size=experiment.batch_size, progress=progress, checkpoints=checkpoints,
                            desc=f"{name} tuning, {len(grid)} rates x {len(seeds)} seeds")
    return {seed: {f"{lr:g}": finite_or_inf(tail_cost(lane_history(run, g, s, name, lr)))
                   for g, lr in enumerate(grid)} for s, seed in enumerate(seeds)}


def train_seeds(experiment, data, name: str, lr: float, *, epochs: int, seeds: tuple[int, ...],
                progress, checkpoints: EpochCheckpoints | None = None) -> tuple[list[History], float]:
    """Trains the model of every seed with step size ``lr`` at once (one vmapped training), evaluated every epoch.

    Returns the seeds' histories, which match those of :func:`~adaptix.experiments.train.train`
    to rounding, and the wall time.
    """
    lanes, state = init_lanes(experiment, data, name, [lr], seeds)

    def evaluate(lanes, state):
        train_cost, _ = sweep.evaluate_classifier(lanes, state, data.train, l2=experiment.l2)
        _, test_accuracy = sweep.evaluate_classifier(lanes, state, data.test, l2=experiment.l2)
        return {"train_cost": train_cost, "test_accuracy": test_accuracy}

    run = sweep.train_lanes(lanes, state, lane_loss(experiment.l2), data.train, epochs=epochs,
                            batch_size=experiment.batch_size, evaluate=evaluate, progress=progress,
                            checkpoints=checkpoints, desc=f"{name} lr={lr:g}, {len(seeds)} seeds")
    return [lane_history(run, 0, s, name, lr) for s in range(len(seeds))], run.seconds


def train_sequentially(experiment, data, name: str, lr: float, *, epochs: int, seeds: tuple[int, ...],
                       show_progress: bool | None, progress: RunProgress, key: str) -> list[History]:
    """Every seed's :func:`~adaptix.experiments.train.train`, one after another, each resumable.

    ``progress`` keeps each finished seed's history under ``key/seed<seed>`` and every training's
    epoch checkpoints; ``show_progress`` is the progress bar's (None: only on a terminal).
    """
    histories = []
    for seed in seeds:
        done = progress.get(f"{key}/seed{seed}")
        if done is None:
            tx = optimizer_factory(name)(experiment.schedule(lr, name))
            history = train(fresh_model(experiment, data, seed), tx, data, name=name, learning_rate=lr,
                            epochs=epochs, batch_size=experiment.batch_size, l2=experiment.l2, seed=seed,
                            progress=show_progress, checkpoints=progress.epochs(f"{key}-train-seed{seed}"))
            done = asdict(history)
            progress.put(f"{key}/seed{seed}", done)
        histories.append(History(**done))
    return histories

