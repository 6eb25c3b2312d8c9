"""Runs an experiment: optional learning-rate grid search, training, summary, results.json, plot."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from adaptix import __version__ as adaptix_version
from adaptix.experiments import registry, sweep
from adaptix.experiments.checkpoints import EpochCheckpoints, RunProgress
from adaptix.experiments.figures import fitted_title, readable_log_axis, whole_number_ticks
from adaptix.experiments.interrupts import RunInterrupted, signal_of, sigterm_interrupts
from adaptix.experiments.optimizers import optimizer_factory
from adaptix.experiments.options import RunOptions, check_options, remove_created, writable_directory
from adaptix.experiments.results import finite_or_inf, format_table, mean_score, mean_sd, save, seed_record
from adaptix.experiments.train import History, classification_cost, train


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
                grid: tuple[float, ...] | None = None, bar=None) -> tuple[float, dict[str, float]]:
    """The paper's protocol, one run after another: the step size with the lowest training cost after a short budget.

    The score of a step size is :func:`_tail_cost` of a run of ``epochs`` epochs from the model of
    ``seed``; ``bar`` (a tqdm bar) advances by one per grid point.
    """
    grid = experiment.grid if grid is None else grid
    scores = {}
    for lr in grid:
        tx = optimizer_factory(name)(experiment.schedule(lr))
        h = train(_fresh_model(experiment, data, seed), tx, data, name=name, learning_rate=lr, epochs=epochs,
                  batch_size=experiment.batch_size, l2=experiment.l2, seed=seed, evaluate_every_epoch=False,
                  progress=progress)
        scores[f"{lr:g}"] = finite_or_inf(_tail_cost(h))
        if bar is not None:
            bar.update()
    best = min(grid, key=lambda lr: scores[f"{lr:g}"])
    return best, scores


def _init_lanes(experiment, data, name: str, rates, seeds) -> tuple[sweep.Lanes, sweep.LaneState]:
    factory = optimizer_factory(name)
    return sweep.init_lanes(lambda seed: _fresh_model(experiment, data, seed),
                            lambda lr: factory(experiment.schedule(lr)), rates, seeds)


def _lane_loss(l2: float) -> sweep.Loss:
    return lambda model, batch: classification_cost(model, *batch, l2)


def _lane_history(run: sweep.LaneRun, g: int, s: int, name: str, lr: float) -> History:
    losses, metrics = run.lane_curves(g, s)
    return History(optimizer=name, learning_rate=lr, iteration_loss=losses,
                   epoch_train_loss=metrics.get("train_cost", []), epoch_test_accuracy=metrics.get("test_accuracy", []),
                   seconds=run.seconds, diverged=bool(run.diverged[g, s]))


def sweep_grid(experiment, data, name: str, *, epochs: int, seeds: tuple[int, ...], progress,
               grid: tuple[float, ...], checkpoints: EpochCheckpoints | None = None) -> dict[int, dict[str, float]]:
    """:func:`grid_search` for every step size of ``grid`` and every seed at once, as one vmapped training.

    Returns seed -> step size -> score (:func:`_tail_cost`, inf for a lane that diverged).
    """
    lanes, state = _init_lanes(experiment, data, name, grid, seeds)
    run = sweep.train_lanes(lanes, state, _lane_loss(experiment.l2), data.train, epochs=epochs,
                            batch_size=experiment.batch_size, progress=progress, checkpoints=checkpoints,
                            desc=f"{name} tuning, {len(grid)} rates x {len(seeds)} seeds")
    return {seed: {f"{lr:g}": finite_or_inf(_tail_cost(_lane_history(run, g, s, name, lr)))
                   for g, lr in enumerate(grid)} for s, seed in enumerate(seeds)}


def train_seeds(experiment, data, name: str, lr: float, *, epochs: int, seeds: tuple[int, ...],
                progress, checkpoints: EpochCheckpoints | None = None) -> tuple[list[History], float]:
    """Trains the model of every seed with step size ``lr`` at once (one vmapped training), evaluated every epoch.

    Returns the seeds' histories, which match those of :func:`~adaptix.experiments.train.train`
    to rounding, and the wall time.
    """
    lanes, state = _init_lanes(experiment, data, name, [lr], seeds)

    def evaluate(lanes, state):
        train_cost, _ = sweep.evaluate_classifier(lanes, state, data.train, l2=experiment.l2)
        _, test_accuracy = sweep.evaluate_classifier(lanes, state, data.test, l2=experiment.l2)
        return {"train_cost": train_cost, "test_accuracy": test_accuracy}

    run = sweep.train_lanes(lanes, state, _lane_loss(experiment.l2), data.train, epochs=epochs,
                            batch_size=experiment.batch_size, evaluate=evaluate, progress=progress,
                            checkpoints=checkpoints, desc=f"{name} lr={lr:g}, {len(seeds)} seeds")
    return [_lane_history(run, 0, s, name, lr) for s in range(len(seeds))], run.seconds


def _tune(experiment, data, name: str, options: RunOptions, epochs: int, seeds: tuple[int, ...],
          progress: RunProgress, key: str) -> tuple[float, dict[int, dict[str, float]]]:
    """The step size with the lowest mean score over ``seeds``, and every seed's scores.

    Resumable: the vmapped tuning from its last epoch checkpoint, the sequential one from the last
    seed whose grid search finished.
    """
    grid = tuning_grid(experiment, name, options.grid, options.grid_relative)
    if options.sequential:
        disable = None if options.progress is None else not options.progress
        scores = {}
        with tqdm(total=len(grid) * len(seeds), desc=f"{name} tuning, one run at a time", disable=disable,
                  leave=False) as bar:
            for seed in seeds:
                scores[seed] = progress.get(f"{key}/tune/seed{seed}")
                if scores[seed] is None:
                    scores[seed] = grid_search(experiment, data, name, epochs=epochs, seed=seed,
                                               progress=options.progress, grid=grid, bar=bar)[1]
                    progress.put(f"{key}/tune/seed{seed}", scores[seed])
                else:
                    bar.update(len(grid))
    else:
        scores = sweep_grid(experiment, data, name, epochs=epochs, seeds=seeds, progress=options.progress, grid=grid,
                            checkpoints=progress.epochs(f"{key}-tune"))
    mean = {k: mean_score([scores[seed][k] for seed in seeds])[0] for k in scores[seeds[0]]}
    return min(grid, key=lambda lr: mean[f"{lr:g}"]), scores


def _tuned(experiment, data, name: str, options: RunOptions, tune_epochs: int, seeds: tuple[int, ...],
           progress: RunProgress, key: str) -> tuple[float, dict[int, dict[str, float]], float]:
    """``_tune``'s step size and scores and its wall time, from ``progress`` when a run before this one finished it."""
    done = progress.get(f"{key}/tuned")
    if done is None:
        t_tune = time.perf_counter()
        lr, scores = _tune(experiment, data, name, options, tune_epochs, seeds, progress, key)
        done = {"learning_rate": lr, "scores": {str(s): v for s, v in scores.items()},
                "seconds": time.perf_counter() - t_tune}
        progress.put(f"{key}/tuned", done)
    return done["learning_rate"], {int(s): v for s, v in done["scores"].items()}, done["seconds"]


def _train_sequentially(experiment, data, name: str, lr: float, options: RunOptions, epochs: int,
                        seeds: tuple[int, ...], progress: RunProgress, key: str) -> list[History]:
    """Every seed's :func:`~adaptix.experiments.train.train`, one after another, each resumable."""
    histories = []
    for seed in seeds:
        done = progress.get(f"{key}/seed{seed}")
        if done is None:
            tx = optimizer_factory(name)(experiment.schedule(lr))
            history = train(_fresh_model(experiment, data, seed), tx, data, name=name, learning_rate=lr,
                            epochs=epochs, batch_size=experiment.batch_size, l2=experiment.l2, seed=seed,
                            progress=options.progress, checkpoints=progress.epochs(f"{key}-train-seed{seed}"))
            done = asdict(history)
            progress.put(f"{key}/seed{seed}", done)
        histories.append(History(**done))
    return histories


def _train_optimizer(experiment, data, name: str, lr: float | None, options: RunOptions, epochs: int,
                     tune_epochs: int, progress: RunProgress, key: str) -> dict:
    """One optimizer's run record (:func:`~adaptix.experiments.results.seed_record`): tuning, then every seed.

    ``key`` names the optimizer's entries in ``progress``: a record finished before is returned as
    it is, and an unfinished one continues from what ``progress`` holds.
    """
    record = progress.get(f"{key}/record")
    if record is not None:
        return record
    seeds = tuple(range(options.seed, options.seed + options.seeds))
    scores, tune_seconds = None, None
    if lr is None and options.tune:
        lr, scores, tune_seconds = _tuned(experiment, data, name, options, tune_epochs, seeds, progress, key)
    elif lr is None:
        lr = experiment.learning_rate(name)
    if options.sequential:
        histories = _train_sequentially(experiment, data, name, lr, options, epochs, seeds, progress, key)
        seconds = sum(h.seconds for h in histories)
    else:
        histories, seconds = train_seeds(experiment, data, name, lr, epochs=epochs, seeds=seeds,
                                         progress=options.progress, checkpoints=progress.epochs(f"{key}-train"))
    record = seed_record([asdict(h) for h in histories], seeds, scores, seconds, tune_seconds)
    progress.put(f"{key}/record", record)
    return record


def _write_run_json(experiment: registry.Experiment, options: RunOptions) -> None:
    """``out/run.json``: the experiment and the options it was started with, what ``--resume`` reads back."""
    stored = {k: v for k, v in asdict(options).items() if k not in ("out", "progress", "resume")}
    stored["data_dir"] = None if options.data_dir is None else str(options.data_dir)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "run.json").write_text(json.dumps({"experiment": experiment.name, "adaptix": adaptix_version,
                                                      "options": stored}, indent=1) + "\n")


def experiment_of(directory: Path) -> str:
    """The name of the experiment whose run ``directory`` holds (from its ``run.json``)."""
    return _started(directory)["experiment"]


def _started(directory: Path) -> dict:
    path = Path(directory) / "run.json"
    if not path.is_file():
        raise FileNotFoundError(f"--resume: {directory} holds no run.json (not a run of adaptix-experiments)")
    return json.loads(path.read_text())


def resumed_options(name: str, directory: Path, *, progress: bool | None = None,
                    checkpoint_every: int | None = None) -> RunOptions:
    """The options of the interrupted run of experiment ``name`` in ``directory`` (its ``run.json``)."""
    started = _started(directory)
    if started["experiment"] != registry.get(name).name:
        raise ValueError(f"--resume: {directory} holds a run of {started['experiment']}, not of {name}")
    results = Path(directory) / "results.json"
    if results.is_file() and json.loads(results.read_text()).get("complete", True):
        raise ValueError(f"--resume: the run in {directory} is complete; nothing to resume")
    stored = dict(started["options"])
    stored["optimizers"] = None if stored["optimizers"] is None else [tuple(o) for o in stored["optimizers"]]
    stored["grid"] = None if stored["grid"] is None else tuple(stored["grid"])
    stored["data_dir"] = None if stored["data_dir"] is None else Path(stored["data_dir"])
    if checkpoint_every is not None:
        stored["checkpoint_every"] = checkpoint_every
    return RunOptions(**stored, out=Path(directory), progress=progress, resume=Path(directory))


def run_experiment(
    name: str,
    *,
    optimizers: list[tuple[str, float | None]] | None = None,
    epochs: int | None = None,
    data_dir: Path | None = None,
    out: Path = Path("runs"),
    seed: int = 0,
    seeds: int = 1,
    quick: bool = False,
    tune: bool = False,
    tune_epochs: int | None = None,
    progress: bool | None = None,
    loss_every: int = 1,
    grid: tuple[float, ...] | None = None,
    grid_relative: bool = False,
    sequential: bool = False,
    checkpoint_every: int | None = None,
    resume: Path | None = None,
) -> dict:
    """Trains every optimizer on the experiment and writes ``results.json`` and ``<name>.png`` to ``out``.

    With ``tune``, each optimizer without an explicit rate is grid-searched over ``grid`` (default:
    the experiment's), or over ``grid`` times its default rate with ``grid_relative``.
    ``seeds=n`` trains every optimizer from the seeds ``seed, seed + 1, ..., seed + n - 1`` (the
    model's initialisation, its dropout keys and the order of the minibatches); the tuning picks
    the step size with the lowest mean score over the seeds, and the run records keep the mean
    curves, their s.d. and each seed's curves (:func:`~adaptix.experiments.results.seed_record`).
    By default all grid points and seeds of an optimizer train as one compiled program
    (:mod:`adaptix.experiments.sweep`: one ``jit`` of a ``vmap``-ped step); ``sequential`` trains
    them one after the other instead (for a model too large to hold every lane at once), with the
    same results to rounding.
    ``loss_every=k`` stores in ``results.json`` the mean minibatch cost of each block of ``k``
    iterations instead of every iteration (``iteration_loss_every`` records ``k``), which keeps the
    file of a long run small; the plot is drawn from the full curve. The returned dict always holds
    every iteration. An experiment with its own ``runner`` gets these options as a :class:`RunOptions`.

    Every option is checked and ``out`` created and proven writable before any work (a
    ``ValueError`` names the option). Nothing finished is lost: once the data is loaded
    ``out/run.json`` records the options, ``results.json`` and
    the figure are rewritten after each optimizer, and SIGINT or SIGTERM stops the run with
    :class:`RunInterrupted` once what finished is saved. ``checkpoint_every=k`` also saves every
    training's state every ``k`` epochs (Orbax, in ``out/checkpoints``, removed when the run is
    complete); ``resume=DIR`` continues the interrupted run in ``DIR`` with the options it was
    started with (the other arguments but ``progress`` and ``checkpoint_every`` are ignored):
    finished optimizers are kept, an unfinished training goes on from its last checkpoint, and the
    results equal those of a run that was never interrupted, bit for bit.
    """
    if resume is not None:
        options = resumed_options(name, resume, progress=progress, checkpoint_every=checkpoint_every)
    else:
        options = RunOptions(optimizers=optimizers, epochs=epochs, data_dir=data_dir, out=out, seed=seed,
                             seeds=seeds, quick=quick, tune=tune, tune_epochs=tune_epochs, progress=progress,
                             loss_every=loss_every, grid=grid, grid_relative=grid_relative, sequential=sequential,
                             checkpoint_every=checkpoint_every)
    experiment = registry.get(name)
    check_options(options)
    registry.check_accepts(experiment, options)
    created = writable_directory("--out", options.out)  # before any work: a run never finds out at its end
    runner = experiment.runner if experiment.runner is not None else _compare
    try:
        with sigterm_interrupts():
            return runner(experiment, options)
    except (ValueError, FileNotFoundError):  # missing data, say: leave no empty output directory behind
        remove_created(options.out, created)
        raise


def _compare(experiment: registry.Experiment, options: RunOptions) -> dict:
    """The runner of an experiment with a ``load`` and a ``model``: trains each optimizer on that model."""
    optimizers = options.optimizers
    if optimizers is None:
        optimizers = [(o, None) for o in experiment.optimizers]
    quick = options.quick
    epochs = options.epochs if options.epochs is not None else (experiment.quick_epochs if quick else experiment.epochs)
    tune_epochs = options.tune_epochs or epochs
    progress = RunProgress(options.out, options.checkpoint_every)
    t0 = time.perf_counter()
    data = experiment.load(options.data_dir, quick)
    load_seconds = time.perf_counter() - t0
    if options.resume is None:
        progress.clear()  # a fresh run never continues what an older run left in the same directory
        _write_run_json(experiment, options)
    runs = []

    def results(complete: bool) -> dict:
        return _results(experiment, options, data, runs, epochs=epochs, tune_epochs=tune_epochs,
                        load_seconds=load_seconds, wall_seconds=time.perf_counter() - t0, complete=complete)

    try:
        for i, (opt_name, lr) in enumerate(optimizers):
            runs.append(_train_optimizer(experiment, data, opt_name, lr, options, epochs, tune_epochs, progress,
                                         key=f"optimizer{i}"))
            if len(runs) < len(optimizers):
                save(results(complete=False), options.out, plot, loss_every=options.loss_every)
    except KeyboardInterrupt as stop:
        if runs:
            save(results(complete=False), options.out, plot, loss_every=options.loss_every)
        kept = f" (and every training's last checkpoint, every {options.checkpoint_every} epochs)" \
            if options.checkpoint_every else ""
        raise RunInterrupted(f"stopped after {len(runs)} of {len(optimizers)} optimizers; what finished is saved in "
                             f"{options.out}{kept}; continue with: adaptix-experiments run {experiment.name} "
                             f"--resume {options.out}", signal_of(stop)) from None
    saved = save(results(complete=True), options.out, plot, loss_every=options.loss_every)
    progress.clear()
    return saved


def _results(experiment, options: RunOptions, data, runs: list[dict], *, epochs: int, tune_epochs: int,
             load_seconds: float, wall_seconds: float, complete: bool) -> dict:
    """The ``results.json`` of a comparison: the setup, then one record per optimizer that finished."""
    return {
        "experiment": experiment.name,
        "description": experiment.description,
        "claim": experiment.claim,
        "seed": options.seed,
        "seeds": list(range(options.seed, options.seed + options.seeds)),
        "mode": "sequential" if options.sequential else "vmapped",  # how the grid points and seeds were trained
        "quick": options.quick,
        "epochs": epochs,
        "batch_size": experiment.batch_size,
        "l2": experiment.l2,
        "tune_epochs": tune_epochs if options.tune else None,
        "step_size_decay": "alpha/sqrt(t)" if experiment.decay_sqrt else "constant",
        "train_size": len(data.train),
        "test_size": len(data.test),
        "load_seconds": load_seconds,
        "wall_seconds": wall_seconds,  # loading, tuning, training and evaluation (of this process, when resumed)
        "complete": complete,  # false: interrupted, or written after some of the optimizers
        "runs": runs,
    }


def _mean_pm_sd(run: dict, key: str) -> str:
    """The last value of a curve, with `` ± `` its s.d. across seeds when several seeds ran."""
    last = run[key][-1]
    if last is None or not math.isfinite(last):
        return "-"
    value = f"{last:.4f}"
    sd = run.get(f"{key}_sd")
    if len(run.get("seeds") or ()) > 1 and sd and sd[-1] is not None and math.isfinite(sd[-1]):
        value += f" ± {sd[-1]:.4f}"
    return value


def summary_table(results: dict) -> str:
    """A plain-text table: final training cost, test accuracy and wall time per optimizer (mean ± s.d. over seeds)."""
    experiment = registry.EXPERIMENTS.get(results["experiment"])
    if experiment is not None and experiment.summarize is not None:
        return experiment.summarize(results)
    rows = [("optimizer", "lr", "train cost", "test acc", "seconds")]
    for r in results["runs"]:
        cost = "diverged" if r["diverged"] else _mean_pm_sd(r, "epoch_train_loss")
        acc = _mean_pm_sd(r, "epoch_test_accuracy") if r["epoch_test_accuracy"] else "-"
        rows.append((r["optimizer"], f"{r['learning_rate']:g}", cost, acc, f"{r['seconds']:.1f}"))
    seeds = results.get("seeds") or [results["seed"]]
    which = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]} (mean ± s.d.)"
    head = (f"{results['experiment']}: {results['train_size']} train / {results['test_size']} test examples, "
            f"{results['epochs']} epochs, batch {results['batch_size']}, {which}")
    return head + "\n" + format_table(rows)


def _smooth(values: list[float], window: int) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if window <= 1 or len(v) < window:
        return v
    kernel = np.ones(window) / window
    return np.convolve(v, kernel, mode="valid")


def _curves(run: dict, key: str, window: int | None = None) -> tuple[np.ndarray, tuple | None, int]:
    """A run's curve ``key`` smoothed over ``window`` (default a hundredth of it), its ±1 s.d. band, the window.

    With several seeds (``per_seed``) each seed's curve is smoothed first, then the mean and the
    s.d. are taken across seeds; the band is ``mean ± sd``, its lower edge no lower than the lowest
    seed (``mean - sd`` can be negative, which a log axis cannot show). With one seed the band is None.
    """
    as_float = lambda values: [v if v is not None else np.nan for v in values]
    curves = [as_float(p[key]) for p in run.get("per_seed") or []]
    if len(curves) < 2:
        curves = [as_float(run[key])]
    n = min(len(c) for c in curves)
    window = window or max(1, n // 100)
    smoothed = np.asarray([_smooth(c[:n], window if window <= n else 1) for c in curves])
    if len(curves) == 1:
        return smoothed[0], None, window
    mean, sd = (np.asarray(v) for v in mean_sd(smoothed))
    return mean, (np.maximum(mean - sd, smoothed.min(axis=0)), mean + sd), window


def _draw(ax, x: np.ndarray, mean: np.ndarray, band: tuple | None, **style) -> None:
    """A curve, with its band (``(low, high)``) in the same colour, translucent, when there is one."""
    (line,) = ax.plot(x, mean, **style)
    if band is not None:
        ax.fill_between(x, *band, color=line.get_color(), alpha=0.2, lw=0)


def plot(results: dict, path: Path) -> None:
    """Training cost against iterations, one curve per optimizer, as in the paper's figures.

    Left: the minibatch cost, smoothed over a hundredth of the run. Right (when the runs evaluated
    more than one epoch): the cost on the whole training set after each epoch, with test accuracy.
    With several seeds each curve is the mean over seeds, in a band of ±1 s.d. across seeds.
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
        every = r.get("iteration_loss_every", 1)  # a curve read back from a downsampled results.json
        y, band, window = _curves(r, "iteration_loss")
        _draw(ax, (np.arange(len(y)) + window) * every, y, band, label=f"{r['optimizer']} (lr {r['learning_rate']:g})",
              lw=1.4)
    ax.set_yscale("log")
    readable_log_axis(ax)
    ax.set_xlabel("iterations")
    ax.set_ylabel("training cost (minibatch, smoothed)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if per_epoch:
        ax2 = axes[0, 1]
        for r in results["runs"]:
            cost, band, _ = _curves(r, "epoch_train_loss", window=1)
            final = "diverged" if r["diverged"] else _mean_pm_sd(r, "epoch_train_loss")
            acc = _mean_pm_sd(r, "epoch_test_accuracy") if r["epoch_test_accuracy"] else "-"
            _draw(ax2, np.arange(1, len(cost) + 1), cost, band, marker="." if len(cost) < 60 else None, lw=1.4,
                  label=f"{r['optimizer']}: final {final}, test acc {acc}")
        ax2.set_yscale("log")
        readable_log_axis(ax2)
        whole_number_ticks(ax2)
        ax2.set_xlabel("iterations over the entire training set (epochs)")
        ax2.set_ylabel("training cost (whole training set)")
        ax2.grid(alpha=0.3, which="both")
        ax2.legend(fontsize=8)
    seeds = results.get("seeds") or []
    spread = f"\nmean over seeds {seeds[0]}-{seeds[-1]}, bands: ±1 s.d. across seeds" if len(seeds) > 1 else ""
    fitted_title(fig, f"{results['experiment']}: {results['description']}{spread}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
