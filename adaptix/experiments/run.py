"""Runs an experiment: optional learning-rate grid search, training, summary, results.json, plot."""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from flax import nnx

from adaptix.experiments import registry
from adaptix.experiments.optimizers import optimizer_factory
from adaptix.experiments.options import RunOptions
from adaptix.experiments.results import finite_or_inf, format_table, save
from adaptix.experiments.train import History, train


def _fresh_model(experiment: registry.Experiment, data, seed: int) -> nnx.Module:
    return experiment.model(data, nnx.Rngs(params=seed, dropout=seed + 1))


def _tail_cost(history: History) -> float:
    """Mean minibatch cost over the last tenth of a run (inf if it diverged)."""
    losses = history.iteration_loss
    if history.diverged or not losses:
        return math.inf
    tail = losses[-max(1, len(losses) // 10) :]
    return float(np.mean(tail))


def tuning_grid(experiment, name: str, grid: tuple[float, ...] | None = None,
                relative: bool = False) -> tuple[float, ...]:
    """The step sizes tried for optimizer ``name``: the experiment's grid, an explicit one, or factors of its
    default."""
    if grid is None:
        return experiment.grid
    if relative:
        return tuple(float(f"{f * experiment.learning_rate(name):.3g}") for f in grid)
    return tuple(grid)


def grid_search(experiment, data, name: str, *, epochs: int, seed: int, progress,
                grid: tuple[float, ...] | None = None) -> tuple[float, dict[str, float]]:
    """The paper's protocol: the step size with the lowest training cost after a short budget."""
    grid = experiment.grid if grid is None else grid
    scores = {}
    for lr in grid:
        tx = optimizer_factory(name)(experiment.schedule(lr))
        h = train(_fresh_model(experiment, data, seed), tx, data, name=name, learning_rate=lr, epochs=epochs,
                  batch_size=experiment.batch_size, l2=experiment.l2, seed=seed, evaluate_every_epoch=False,
                  progress=progress)
        scores[f"{lr:g}"] = finite_or_inf(_tail_cost(h))
    best = min(grid, key=lambda lr: scores[f"{lr:g}"])
    return best, scores


def run_experiment(
    name: str,
    *,
    optimizers: list[tuple[str, float | None]] | None = None,
    epochs: int | None = None,
    data_dir: Path | None = None,
    out: Path = Path("runs"),
    seed: int = 0,
    quick: bool = False,
    tune: bool = False,
    tune_epochs: int | None = None,
    progress: bool | None = None,
    loss_every: int = 1,
    grid: tuple[float, ...] | None = None,
    grid_relative: bool = False,
) -> dict:
    """Trains every optimizer on the experiment and writes ``results.json`` and ``<name>.png`` to ``out``.

    With ``tune``, each optimizer without an explicit rate is grid-searched over ``grid`` (default:
    the experiment's), or over ``grid`` times its default rate with ``grid_relative``.
    ``loss_every=k`` stores in ``results.json`` the mean minibatch cost of each block of ``k``
    iterations instead of every iteration (``iteration_loss_every`` records ``k``), which keeps the
    file of a long run small; the plot is drawn from the full curve. The returned dict always holds
    every iteration. An experiment with its own ``runner`` gets these options as a :class:`RunOptions`.
    """
    if loss_every < 1:
        raise ValueError(f"loss_every must be a positive integer, got {loss_every}")
    experiment = registry.get(name)
    options = RunOptions(optimizers=optimizers, epochs=epochs, data_dir=data_dir, out=out, seed=seed, quick=quick,
                         tune=tune, tune_epochs=tune_epochs, progress=progress, loss_every=loss_every, grid=grid,
                         grid_relative=grid_relative)
    runner = experiment.runner if experiment.runner is not None else _compare
    return runner(experiment, options)


def _compare(experiment: registry.Experiment, options: RunOptions) -> dict:
    """The runner of an experiment with a ``load`` and a ``model``: trains each optimizer on that model."""
    optimizers = options.optimizers
    if optimizers is None:
        optimizers = [(o, None) for o in experiment.optimizers]
    quick, tune, seed, progress = options.quick, options.tune, options.seed, options.progress
    epochs = options.epochs if options.epochs is not None else (experiment.quick_epochs if quick else experiment.epochs)
    tune_epochs = options.tune_epochs or epochs
    t0 = time.perf_counter()
    data = experiment.load(options.data_dir, quick)
    load_seconds = time.perf_counter() - t0

    runs = []
    for opt_name, lr in optimizers:
        scores, tune_seconds = None, None
        if lr is None and tune:
            t_tune = time.perf_counter()
            lr, scores = grid_search(experiment, data, opt_name, epochs=tune_epochs, seed=seed, progress=progress,
                                     grid=tuning_grid(experiment, opt_name, options.grid, options.grid_relative))
            tune_seconds = time.perf_counter() - t_tune
        elif lr is None:
            lr = experiment.learning_rate(opt_name)
        tx = optimizer_factory(opt_name)(experiment.schedule(lr))
        history = train(_fresh_model(experiment, data, seed), tx, data, name=opt_name, learning_rate=lr,
                        epochs=epochs, batch_size=experiment.batch_size, l2=experiment.l2, seed=seed,
                        progress=progress)
        record = asdict(history)
        record["grid"] = scores  # step size -> tail training cost after tune_epochs (None: not tuned)
        record["tune_seconds"] = tune_seconds
        runs.append(record)

    results = {
        "experiment": experiment.name,
        "description": experiment.description,
        "claim": experiment.claim,
        "seed": seed,
        "quick": quick,
        "epochs": epochs,
        "batch_size": experiment.batch_size,
        "l2": experiment.l2,
        "tune_epochs": tune_epochs if tune else None,
        "step_size_decay": "alpha/sqrt(t)" if experiment.decay_sqrt else "constant",
        "train_size": len(data.train),
        "test_size": len(data.test),
        "load_seconds": load_seconds,
        "wall_seconds": time.perf_counter() - t0,  # loading, tuning, training and evaluation
        "runs": runs,
    }
    return save(results, options.out, plot, loss_every=options.loss_every)


def summary_table(results: dict) -> str:
    """A plain-text table: final training cost, test accuracy and wall time per optimizer."""
    experiment = registry.EXPERIMENTS.get(results["experiment"])
    if experiment is not None and experiment.summarize is not None:
        return experiment.summarize(results)
    rows = [("optimizer", "lr", "train cost", "test acc", "seconds")]
    for r in results["runs"]:
        cost = "diverged" if r["diverged"] else f"{r['epoch_train_loss'][-1]:.4f}"
        acc = f"{r['epoch_test_accuracy'][-1]:.4f}" if r["epoch_test_accuracy"] else "-"
        rows.append((r["optimizer"], f"{r['learning_rate']:g}", cost, acc, f"{r['seconds']:.1f}"))
    head = (f"{results['experiment']}: {results['train_size']} train / {results['test_size']} test examples, "
            f"{results['epochs']} epochs, batch {results['batch_size']}, seed {results['seed']}")
    return head + "\n" + format_table(rows)


def _smooth(values: list[float], window: int) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if window <= 1 or len(v) < window:
        return v
    kernel = np.ones(window) / window
    return np.convolve(v, kernel, mode="valid")


def plot(results: dict, path: Path) -> None:
    """Training cost against iterations, one curve per optimizer, as in the paper's figures.

    Left: the minibatch cost, smoothed over a hundredth of the run. Right (when the runs evaluated
    more than one epoch): the cost on the whole training set after each epoch, with test accuracy.
    Works on the dict :func:`run_experiment` returns and on a ``results.json`` read back.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_epoch = any(len(r.get("epoch_train_loss") or []) > 1 for r in results["runs"])
    fig, axes = plt.subplots(1, 2 if per_epoch else 1, figsize=(11.5 if per_epoch else 6.4, 4.4), dpi=110,
                             squeeze=False)
    ax = axes[0, 0]
    for r in results["runs"]:
        losses = [v if v is not None else np.nan for v in r["iteration_loss"]]
        every = r.get("iteration_loss_every", 1)  # a curve read back from a downsampled results.json
        window = max(1, len(losses) // 100)
        y = _smooth(losses, window)
        ax.plot((np.arange(len(y)) + window) * every, y, label=f"{r['optimizer']} (lr {r['learning_rate']:g})", lw=1.4)
    ax.set_yscale("log")
    ax.set_xlabel("iterations")
    ax.set_ylabel("training cost (minibatch, smoothed)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if per_epoch:
        ax2 = axes[0, 1]
        for r in results["runs"]:
            cost = [v if v is not None else np.nan for v in r["epoch_train_loss"]]
            acc = r["epoch_test_accuracy"][-1] if r["epoch_test_accuracy"] else float("nan")
            ax2.plot(np.arange(1, len(cost) + 1), cost, marker="." if len(cost) < 60 else None, lw=1.4,
                     label=f"{r['optimizer']}: final {cost[-1]:.4f}, test acc {acc:.4f}")
        ax2.set_yscale("log")
        ax2.set_xlabel("iterations over the entire training set (epochs)")
        ax2.set_ylabel("training cost (whole training set)")
        ax2.grid(alpha=0.3, which="both")
        ax2.legend(fontsize=8)
    fig.suptitle(f"{results['experiment']}: {results['description']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
