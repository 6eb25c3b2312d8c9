"""Choosing each optimizer's step size as the paper did: a dense log grid, searched until it brackets the winner.

Kingma & Ba (2015, section 6) searched "a dense grid" of step sizes for every optimizer and reported
the best. The protocol here:

1. every grid point is trained for ``tune_epochs`` epochs (the experiments default to a tenth of
   the run) from every seed, and scored by the mean minibatch training cost over the last tenth
   of that run, at least its last 20 minibatches (:func:`~adaptix.experiments.trainers.tail_cost`;
   inf if it diverged): the quantity the figures plot;
2. the winner is the grid point with the lowest score averaged over the seeds;
3. when the winner lies at an edge of the grid, the grid is extended one step further on that
   side, with the grid's own ratio, and searched again (at most :data:`MAX_EXTENSIONS` times), so
   a reported rate is never an edge of the grid unless the extensions ran out;
4. an optimizer with *variants* (SGD-Nesterov with momentum 0.9 and 0.99: ``Experiment.variants``)
   searches the grid for each, and the best (variant, step size) wins.

The scores of every point searched are kept in ``results.json`` (``grid``, ``grid_sd``, per seed).
How sure the choice is, :func:`winner_margins`: the winner against its neighbours on the grid by the
verdict rule (paired over seeds, a margin larger than twice its s.d.); a run records it as its
``tuning`` and the summary names every arm whose winner its neighbours match.
"""

from __future__ import annotations

import math
import time

from tqdm.auto import tqdm

from adaptix.experiments.checkpoints import RunProgress
from adaptix.experiments.optimizers import is_rate_free
from adaptix.experiments.options import RunOptions
from adaptix.experiments.results import beyond_edge, mean_score
from adaptix.experiments.sweep import LanesDoNotFit
from adaptix.experiments.trainers import grid_search, note_sequential, sweep_grid

#: How often a grid is extended past an edge that won.
MAX_EXTENSIONS = 3


def tuning_grid(experiment, name: str, grid: tuple[float, ...] | None = None,
                relative: bool = False) -> tuple[float, ...]:
    """The step sizes tried for optimizer ``name``: the experiment's grid, an explicit one, or factors of its
    default."""
    if grid is None:
        return experiment.grid
    if relative:
        return tuple(float(f"{f * experiment.learning_rate(name):.3g}") for f in grid)
    return tuple(grid)


def grid_key(variant: str, lr: float, arm: str) -> str:
    """The key of a grid point in ``results.json``: the step size, prefixed by the variant when it is not the arm."""
    return f"{lr:g}" if variant == arm else f"{variant}@{lr:g}"


def _score(experiment, data, variant: str, points: list[float], options: RunOptions, epochs: int,
           seeds: tuple[int, ...], progress: RunProgress, key: str) -> dict[int, dict[float, float]]:
    """seed -> step size -> score for ``points``, vmapped (resumable per epoch) or one run after another (per seed)."""
    if not options.sequential:
        try:
            scores = sweep_grid(experiment, data, variant, epochs=epochs, seeds=seeds, progress=options.progress,
                                grid=tuple(points), checkpoints=progress.epochs(key))
            return {seed: {lr: scores[seed][f"{lr:g}"] for lr in points} for seed in seeds}
        except LanesDoNotFit as too_large:
            note_sequential(f"{variant} tuning", too_large)
    disable = None if options.progress is None else not options.progress
    out = {}
    with tqdm(total=len(points) * len(seeds), desc=f"{variant} tuning, one run at a time", disable=disable,
              leave=False) as bar:
        for seed in seeds:
            done = progress.get(f"{key}/seed{seed}")
            if done is None:
                done = grid_search(experiment, data, variant, epochs=epochs, seed=seed, progress=options.progress,
                                   grid=tuple(points), bar=bar)[1]
                progress.put(f"{key}/seed{seed}", done)
            else:
                bar.update(len(points))
            out[seed] = {lr: done[f"{lr:g}"] for lr in points}
    return out


def _bracketed(experiment, data, variant: str, grid: tuple[float, ...], options: RunOptions, epochs: int,
               seeds: tuple[int, ...], progress: RunProgress, key: str) -> dict[int, dict[float, float]]:
    """Every seed's scores over ``grid``, extended past a winning edge until the winner is inside (or
    :data:`MAX_EXTENSIONS` ran out)."""
    points = sorted(grid)
    scores = _score(experiment, data, variant, points, options, epochs, seeds, progress, f"{key}-{variant}")
    for extension in range(MAX_EXTENSIONS):
        new = beyond_edge({lr: mean_score([scores[seed][lr] for seed in seeds])[0] for lr in points})
        if new is None:
            break
        more = _score(experiment, data, variant, [new], options, epochs, seeds, progress,
                      f"{key}-{variant}-extension{extension}")
        for seed in seeds:
            scores[seed].update(more[seed])
        points = sorted([*points, new])
    return scores


def tune(experiment, data, arm: str, options: RunOptions, epochs: int, seeds: tuple[int, ...],
         progress: RunProgress, key: str) -> tuple[str, float, dict[int, dict[str, float]]]:
    """The (variant, step size) of ``arm`` with the lowest mean score over ``seeds``, and every seed's scores.

    The scores are keyed by :func:`grid_key`. Resumable: the vmapped search from its last epoch
    checkpoint, the sequential one from the last seed whose grid search finished.
    """
    grid = tuning_grid(experiment, arm, options.grid, options.grid_relative)
    scores: dict[int, dict[str, float]] = {seed: {} for seed in seeds}
    candidates = []
    for variant in experiment.variants.get(arm, (arm,)):
        found = _bracketed(experiment, data, variant, grid, options, epochs, seeds, progress, f"{key}-tune")
        for seed in seeds:
            scores[seed].update({grid_key(variant, lr, arm): v for lr, v in sorted(found[seed].items())})
        candidates += [(variant, lr) for lr in found[seeds[0]]]
    mean = {k: mean_score([scores[seed][k] for seed in seeds])[0] for k in scores[seeds[0]]}
    variant, lr = min(candidates, key=lambda c: mean[grid_key(*c, arm)])
    return variant, lr, scores


def winner_margins(scores: dict[int, dict[str, float]], variant: str, learning_rate: float, arm: str) -> dict:
    """The tuned step size against its grid neighbours (the same variant), paired over the seeds.

    For each neighbour ``n`` of the winner ``w``, per seed ``d = score(n) - score(w)``;
    ``resolved`` when the mean of ``d`` exceeds twice its s.d. (the verdict rule,
    :mod:`~adaptix.experiments.verdicts`), or when ``n`` diverged from some seed. Returns
    ``{"resolved": all neighbours resolved, "neighbours": {key: {"mean_d", "sd_d", "resolved"}}}``,
    the keys those of :func:`grid_key`; with one seed, nothing is resolved but divergence.
    """
    seeds = sorted(scores)
    prefix = "" if variant == arm else f"{variant}@"
    keys = sorted((k for k in scores[seeds[0]] if (k.startswith(prefix) if prefix else "@" not in k)),
                  key=lambda k: float(k[len(prefix):]))
    winner = grid_key(variant, learning_rate, arm)
    i = keys.index(winner)

    def score(seed: int, key: str) -> float:  # results.json writes a diverged score as null
        value = scores[seed][key]
        return math.inf if value is None else value

    neighbours = {}
    for key in keys[max(i - 1, 0) : i] + keys[i + 1 : i + 2]:
        d = [score(s, key) - score(s, winner) for s in seeds]
        if not all(math.isfinite(v) for v in d):
            neighbours[key] = {"mean_d": None, "sd_d": None, "resolved": True}  # it diverged
            continue
        mean, sd = mean_score(d)
        neighbours[key] = {"mean_d": mean, "sd_d": sd, "resolved": bool(len(d) > 1 and mean > 2 * sd)}
    return {"resolved": all(n["resolved"] for n in neighbours.values()), "neighbours": neighbours}


def describe_tuning(runs: list[dict]) -> list[str]:
    """A line for every tuned run whose winner a grid neighbour matches (:func:`winner_margins`)."""
    lines = []
    for r in runs:
        tuning = r.get("tuning")
        if not tuning or tuning["resolved"]:
            continue
        close = ", ".join(f"{k} (d = {n['mean_d']:+.3g} ± {n['sd_d']:.2g})"
                          for k, n in tuning["neighbours"].items() if not n["resolved"])
        lines.append(f"tuning of {r['optimizer']}: its step size {r['learning_rate']:g} is not told apart from "
                     f"{close} by the paired rule, so it is uncertain")
    return lines


def tuned(experiment, data, arm: str, options: RunOptions, epochs: int, seeds: tuple[int, ...],
          progress: RunProgress, key: str) -> tuple[str, float, dict[int, dict[str, float]] | None, float | None]:
    """:func:`tune`'s variant, step size and scores, and its wall time; from ``progress`` when a run before this
    one finished it.

    A rate-free arm (:func:`~adaptix.experiments.optimizers.is_rate_free`, vSGD) has nothing to search: its
    default variant, the rate 1.0 (which its factory ignores), and no scores or time, as an untuned arm.
    """
    if is_rate_free(experiment.variant(arm)) and all(is_rate_free(v) for v in experiment.variants.get(arm, ())):
        return experiment.variant(arm), 1.0, None, None
    done = progress.get(f"{key}/tuned")
    if done is None:
        start = time.perf_counter()
        variant, lr, scores = tune(experiment, data, arm, options, epochs, seeds, progress, key)
        done = {"variant": variant, "learning_rate": lr, "scores": {str(s): v for s, v in scores.items()},
                "seconds": time.perf_counter() - start}
        progress.put(f"{key}/tuned", done)
    return done["variant"], done["learning_rate"], {int(s): v for s, v in done["scores"].items()}, done["seconds"]
