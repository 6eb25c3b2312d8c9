"""Toy problems for a quick look: optimizers' trajectories on 2-D landscapes.

Runs each chosen optimizer on the landscapes of :mod:`adaptix.experiments.landscapes`: an
ill-conditioned quadratic, Rosenbrock's valley, the saddle ``x^2 - y^2`` and a quadratic with
noisy gradients. Each optimizer's step size is picked per landscape from a small log grid: the
one with the best :func:`score` (all grid points run at once under ``jax.vmap``, so this costs
one compilation per optimizer and landscape), unless the command line fixes it
(``adam@0.05``). On the noisy landscape every step size runs from each of ``seeds`` noise seeds:
the step size is picked by the mean score over them and the record gives the mean final loss
with its s.d. (the noise-free landscapes are deterministic and run once). The figure shows the
trajectories on contour plots (the first seed's on the noisy one) and the loss against steps
(there the mean over seeds, shaded over the seeds' range).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from adaptix.experiments import landscapes
from adaptix.experiments.figures import readable_log_axis, whole_number_ticks
from adaptix.experiments.interrupts import RunInterrupted, signal_of
from adaptix.experiments.optimizers import optimizer_factory
from adaptix.experiments.options import RunOptions
from adaptix.experiments.results import format_table, save

CLAIM = ("Not a claim of the paper, a quick look: the per-coordinate methods (AdaGrad, RMSProp, Adam) leave the "
         "saddle within a few steps where SGD lingers near it")
DESCRIPTION = "Toy landscapes (ill-conditioned quadratic, Rosenbrock, saddle, noisy quadratic): trajectories"
OPTIMIZERS = ("sgd", "sgd-nesterov", "adagrad", "rmsprop", "adam")
GRID = tuple(float(f"{v:.3g}") for v in np.logspace(-3, 0, 7))  # 0.001 ... 1
QUICK_GRID = (1e-3, 1e-2, 1e-1, 1.0)
STEPS, QUICK_STEPS = 300, 100


def problems() -> list[landscapes.Problem]:
    """The four landscapes, in the order of the figure's columns."""
    return [
        landscapes.quadratic(condition=50.0),
        landscapes.rosenbrock(),
        landscapes.saddle(),
        landscapes.noisy_quadratic(condition=10.0, noise=1.0),
    ]


def score(problem: landscapes.Problem, losses: np.ndarray) -> float:
    """How good a trajectory is (lower is better); inf if it diverged.

    With a known minimum ``f*``: the mean of ``log10(f - f* + 1e-12)`` along the trajectory, which
    rewards getting close fast and staying close. Without one (the saddle, unbounded below): the
    mean loss, clipped at ``f(x0) - 10`` so that running away down the saddle counts as success
    without dominating.
    """
    if not np.all(np.isfinite(losses)):
        return math.inf
    if problem.minimum is not None:
        floor = float(problem.loss(jnp.asarray(problem.minimum)))
        return float(np.mean(np.log10(np.maximum(losses - floor, 0.0) + 1e-12)))
    return float(np.mean(np.maximum(losses, float(losses[0]) - 10.0)))


def _trajectories(factory: Callable, problem: landscapes.Problem, rates: tuple[float, ...], steps: int,
                  seed: int) -> np.ndarray:
    """Iterates ``(rates, steps + 1, dim)`` for every step size; vmapped when the factory allows it."""
    lrs = jnp.asarray(rates, jnp.float32)
    try:
        xs = jax.vmap(lambda lr: landscapes.trajectory(factory(lr), problem, steps=steps, seed=seed))(lrs)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError, TypeError, ValueError):
        # a user's factory that needs a concrete learning rate: one compilation per step size
        xs = jnp.stack([landscapes.trajectory(factory(lr), problem, steps=steps, seed=seed) for lr in rates])
    return np.asarray(xs, np.float64)


def run(*, optimizers: list[tuple[str, float | None]] | None = None, out: Path = Path("runs/toys"), seed: int = 0,
        seeds: int = 1, quick: bool = False, steps: int | None = None, progress: bool | None = None) -> dict:
    """Runs every optimizer on every landscape; writes ``results.json`` and ``toys.png`` to ``out``.

    Both are rewritten after each landscape (``complete`` false until the last), so an
    interrupted run (SIGINT, or SIGTERM under :func:`~adaptix.experiments.interrupts.sigterm_interrupts`)
    keeps the landscapes it finished and raises :class:`~adaptix.experiments.interrupts.RunInterrupted`.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    optimizers = optimizers or [(name, None) for name in OPTIMIZERS]
    steps = steps if steps is not None else (QUICK_STEPS if quick else STEPS)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"--epochs (the number of steps of toys) must be a positive integer, got {steps!r}")
    grid = QUICK_GRID if quick else GRID
    probs = problems()
    noise_seeds = list(range(seed, seed + seeds))
    results = {"experiment": "toys", "description": DESCRIPTION, "claim": CLAIM, "seed": seed, "seeds": noise_seeds,
               "quick": quick, "steps": steps, "grid": list(grid), "landscapes": [], "complete": False}
    disable = None if progress is None else not progress
    try:
        with tqdm(total=len(probs) * len(optimizers), desc="toys", disable=disable, leave=False) as bar:
            for i, problem in enumerate(probs):
                results["landscapes"].append(_landscape(problem, optimizers, grid, steps, noise_seeds, bar))
                results["wall_seconds"] = time.perf_counter() - t0
                results["complete"] = i + 1 == len(probs)
                save(results, out, plot)
    except KeyboardInterrupt as stop:
        if results["landscapes"]:
            save(results, out, plot)
        raise RunInterrupted(f"toys stopped after {len(results['landscapes'])} of {len(probs)} landscapes; those "
                             f"are saved in {out}; run it again to redo the rest", signal_of(stop)) from None
    return results


def _landscape(problem: landscapes.Problem, optimizers, grid, steps: int, seeds: list[int], bar) -> dict:
    """One landscape's record: every optimizer's best trajectory (its step size tuned over ``grid`` unless given).

    A noisy landscape runs every step size from each seed and scores a step size by the mean of its
    seeds' scores (inf if any diverged); a noise-free one runs once, from the first seed.
    """
    seeds = seeds if problem.noisy else seeds[:1]
    entry = {"name": problem.name, "x0": problem.x0.tolist(),
             "minimum": None if problem.minimum is None else problem.minimum.tolist(),
             "noise": problem.noise if not isinstance(problem.noise, np.ndarray) else problem.noise.tolist(),
             "seeds": seeds, "runs": []}
    for name, lr in optimizers:
        start = time.perf_counter()
        factory = optimizer_factory(name)
        rates = (lr,) if lr is not None else grid
        xs = np.stack([_trajectories(factory, problem, rates, steps, s) for s in seeds])  # (seeds, rates, steps+1, dim)
        losses = np.stack([[np.asarray(landscapes.losses(problem, x), np.float64) for x in per_seed]
                           for per_seed in xs])  # (seeds, rates, steps+1)
        scores = [float(np.mean([score(problem, losses[i, r]) for i in range(len(seeds))])) for r in range(len(rates))]
        best = int(np.argmin(scores))
        finals = losses[:, best, -1]
        entry["runs"].append({
            "optimizer": name,
            "learning_rate": rates[best],
            "grid": None if lr is not None else {f"{r:g}": s for r, s in zip(rates, scores)},
            "final_loss": float(np.mean(finals)),
            "final_loss_sd": float(np.std(finals, ddof=1)) if len(seeds) > 1 else None,
            "final_loss_per_seed": finals.tolist(),
            "loss": np.mean(losses[:, best], axis=0).tolist(),
            "loss_per_seed": losses[:, best].tolist() if len(seeds) > 1 else None,
            "trajectory": xs[0, best].tolist(),
            "seconds": time.perf_counter() - start,
        })
        bar.update()
    return entry


def run_experiment(experiment, options: RunOptions) -> dict:
    """The command line's entry point; ``--epochs`` is the number of steps here (always tuned; no data)."""
    del experiment
    return run(optimizers=options.optimizers, out=options.out, seed=options.seed, seeds=options.seeds,
               quick=options.quick, steps=options.epochs, progress=options.progress)


def summary(results: dict) -> str:
    """Step size and final loss per landscape and optimizer."""
    names = [r["optimizer"] for r in results["landscapes"][0]["runs"]]
    rows = [["landscape", *names]]
    for entry in results["landscapes"]:
        rows.append([entry["name"], *(_final(r) + f" (lr {r['learning_rate']:g})" for r in entry["runs"])])
    seeds = results.get("seeds", [results["seed"]])
    noise = f"; the noisy landscape: mean ± s.d. over {len(seeds)} seeds" if len(seeds) > 1 else ""
    return (f"toys: final loss after {results['steps']} steps (step size picked from {results['grid']}{noise})\n"
            + format_table(rows))


def _final(record: dict) -> str:
    sd = record.get("final_loss_sd")
    return f"{record['final_loss']:.3g}" + ("" if sd is None else f" ± {sd:.2g}")


def plot(results: dict, path: Path) -> None:
    """Top row: trajectories on contour plots; bottom row: loss against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs = {p.name: p for p in problems()}
    n = len(results["landscapes"])
    fig, axes = plt.subplots(2, n, figsize=(3.5 * n, 6.6), dpi=100, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for col, entry in enumerate(results["landscapes"]):
        problem = probs[entry["name"]]
        ax, lax = axes[0, col], axes[1, col]
        X, Y, Z = landscapes.contour_grid(problem, n=120)
        if problem.minimum is not None:  # log-spaced levels above the minimum
            floor = float(problem.loss(jnp.asarray(problem.minimum)))
            levels = floor + np.geomspace(1e-2, max(Z.max() - floor, 1e-1), 14)
        else:
            levels = 14
        ax.contour(X, Y, Z, levels=levels, colors="0.75", linewidths=0.6)
        (x_lo, x_hi), (y_lo, y_hi) = problem.bounds
        for i, r in enumerate(entry["runs"]):
            xs = np.asarray(r["trajectory"], float)
            ax.plot(xs[:, 0], xs[:, 1], "-", color=colors[i % len(colors)], lw=1.2, label=r["optimizer"])
            loss = np.asarray(r["loss"], float)
            if problem.minimum is not None:
                y = np.maximum(loss - floor, 1e-12)
                lax.set_yscale("log")
                lax.set_ylabel("loss − minimum")
            else:
                y = np.maximum(loss, -10.0)
                lax.set_ylabel("loss (clipped at −10)")
            lax.plot(np.arange(len(y)), y, color=colors[i % len(colors)], lw=1.2,
                     label=f"{r['optimizer']} (lr {r['learning_rate']:g})")
            if r.get("loss_per_seed") is not None:  # the noisy landscape: the mean, shaded over the seeds' range
                # (a range, not ±1 s.d.: the losses are near 0 and spread over decades, so mean − s.d. < 0)
                per_seed = np.asarray(r["loss_per_seed"], float) - (floor if problem.minimum is not None else 0.0)
                lax.fill_between(np.arange(len(y)), np.maximum(per_seed.min(axis=0), 1e-12),
                                 np.maximum(per_seed.max(axis=0), 1e-12), color=colors[i % len(colors)], alpha=0.12,
                                 lw=0)
        ax.plot(*problem.x0[:2], "ko", ms=4)
        if problem.minimum is not None:
            ax.plot(*problem.minimum[:2], "k*", ms=9)
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(y_lo, y_hi)
        ax.set_title(entry["name"], fontsize=9)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        lax.set_title(f"{entry['name']}: loss", fontsize=9)
        if problem.minimum is not None:
            readable_log_axis(lax)
        whole_number_ticks(lax)
        lax.set_xlabel("step")
        lax.grid(alpha=0.3, which="both")
        lax.legend(fontsize=6.5)
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
