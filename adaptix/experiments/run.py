"""Runs an experiment: optional learning-rate grid search, training, summary, results.json, plot."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from flax import nnx

from adaptix.experiments import registry
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


def grid_search(experiment, data, name: str, *, epochs: int, seed: int, progress) -> tuple[float, dict[str, float]]:
    """The paper's protocol: the step size with the lowest training cost after a short budget."""
    scores = {}
    for lr in experiment.grid:
        tx = registry.optimizer_factory(name)(experiment.schedule(lr))
        h = train(_fresh_model(experiment, data, seed), tx, data, name=name, learning_rate=lr, epochs=epochs,
                  batch_size=experiment.batch_size, l2=experiment.l2, seed=seed, evaluate_every_epoch=False,
                  progress=progress)
        scores[f"{lr:g}"] = registry.finite_or_inf(_tail_cost(h))
    best = min(experiment.grid, key=lambda lr: scores[f"{lr:g}"])
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
) -> dict:
    """Trains every optimizer on the experiment and writes ``results.json`` and ``<name>.png`` to ``out``."""
    experiment = registry.get(name)
    if optimizers is None:
        optimizers = [(o, None) for o in experiment.optimizers]
    epochs = epochs if epochs is not None else (experiment.quick_epochs if quick else experiment.epochs)
    t0 = time.perf_counter()
    data = experiment.load(data_dir, quick)
    load_seconds = time.perf_counter() - t0

    runs = []
    for opt_name, lr in optimizers:
        grid = None
        if lr is None and tune:
            lr, grid = grid_search(experiment, data, opt_name, epochs=tune_epochs or epochs, seed=seed, progress=progress)
        elif lr is None:
            lr = experiment.learning_rate(opt_name)
        tx = registry.optimizer_factory(opt_name)(experiment.schedule(lr))
        history = train(_fresh_model(experiment, data, seed), tx, data, name=opt_name, learning_rate=lr,
                        epochs=epochs, batch_size=experiment.batch_size, l2=experiment.l2, seed=seed,
                        progress=progress)
        record = asdict(history)
        record["grid"] = grid
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
        "tune_epochs": (tune_epochs or epochs) if tune else None,
        "step_size_decay": "alpha/sqrt(t)" if experiment.decay_sqrt else "constant",
        "train_size": len(data.train),
        "test_size": len(data.test),
        "load_seconds": load_seconds,
        "runs": runs,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    plot(results, out / f"{experiment.name}.png")
    return results


def summary_table(results: dict) -> str:
    """A plain-text table: final training cost, test accuracy and wall time per optimizer."""
    rows = [("optimizer", "lr", "train cost", "test acc", "seconds")]
    for r in results["runs"]:
        cost = "diverged" if r["diverged"] else f"{r['epoch_train_loss'][-1]:.4f}"
        acc = f"{r['epoch_test_accuracy'][-1]:.4f}" if r["epoch_test_accuracy"] else "-"
        rows.append((r["optimizer"], f"{r['learning_rate']:g}", cost, acc, f"{r['seconds']:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    head = (f"{results['experiment']}: {results['train_size']} train / {results['test_size']} test examples, "
            f"{results['epochs']} epochs, batch {results['batch_size']}, seed {results['seed']}")
    return head + "\n" + "\n".join(lines)


def _smooth(values: list[float], window: int) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if window <= 1 or len(v) < window:
        return v
    kernel = np.ones(window) / window
    return np.convolve(v, kernel, mode="valid")


def plot(results: dict, path: Path) -> None:
    """Training cost against iterations, one curve per optimizer, as in the paper's figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    for r in results["runs"]:
        losses = r["iteration_loss"]
        window = max(1, len(losses) // 100)
        y = _smooth(losses, window)
        ax.plot(np.arange(len(y)) + window, y, label=f"{r['optimizer']} (lr {r['learning_rate']:g})", lw=1.4)
    ax.set_yscale("log")
    ax.set_xlabel("iterations")
    ax.set_ylabel("training cost (minibatch, smoothed)")
    ax.set_title(f"{results['experiment']}: {results['description']}", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
