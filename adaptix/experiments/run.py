"""Runs an experiment: optional learning-rate grid search, training, summary, results.json, plot."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from adaptix import __version__ as adaptix_version
from adaptix.experiments import registry
from adaptix.experiments.checkpoints import RunProgress
from adaptix.experiments.figures import plot_comparison as plot
from adaptix.experiments.interrupts import RunInterrupted, signal_of, sigterm_interrupts
from adaptix.experiments.options import RunOptions, check_options, remove_created, writable_directory
from adaptix.experiments.results import format_table, mean_pm_sd, save, seed_record
from adaptix.experiments.sweep import LanesDoNotFit
from adaptix.experiments.trainers import note_sequential, train_seeds, train_sequentially
from adaptix.experiments.tuning import describe_tuning, tuned, winner_margins
from adaptix.experiments.verdicts import VERDICT_RULE, describe_verdicts, verdicts


def _train_optimizer(experiment, data, arm: str, lr: float | None, options: RunOptions, epochs: int,
                     tune_epochs: int, progress: RunProgress, key: str) -> dict:
    """One optimizer's run record (:func:`~adaptix.experiments.results.seed_record`): tuning, then every seed.

    ``arm`` is the optimizer as the experiment names it; what trains is its tuned variant (or its
    default one, :meth:`~adaptix.experiments.registry.Experiment.variant`), whose name the record's
    ``optimizer`` holds, next to ``arm``. ``key`` names the optimizer's entries in ``progress``: a
    record finished before is returned as it is, and an unfinished one continues from what
    ``progress`` holds.
    """
    record = progress.get(f"{key}/record")
    if record is not None:
        return record
    seeds = tuple(range(options.seed, options.seed + options.seeds))
    name, scores, tune_seconds = experiment.variant(arm), None, None
    if lr is None and options.tune:
        name, lr, scores, tune_seconds = tuned(experiment, data, arm, options, tune_epochs, seeds, progress, key)
    elif lr is None:
        lr = experiment.learning_rate(arm)
    sequential = options.sequential
    if not sequential:
        try:
            histories, seconds = train_seeds(experiment, data, name, lr, epochs=epochs, seeds=seeds,
                                             progress=options.progress, checkpoints=progress.epochs(f"{key}-train"))
        except LanesDoNotFit as too_large:
            note_sequential(f"{name} training", too_large)
            sequential = True
    if sequential:
        histories = train_sequentially(experiment, data, name, lr, epochs=epochs, seeds=seeds,
                                       show_progress=options.progress, progress=progress, key=key)
        seconds = sum(h.seconds for h in histories)
    record = {"arm": arm, **seed_record([asdict(h) for h in histories], seeds, scores, seconds, tune_seconds),
              "mode": "sequential" if sequential else "vmapped",
              "tuning": None if scores is None else winner_margins(scores, name, lr, arm)}
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
    ``ValueError`` names the option). Nothing finished is lost: ``out/run.json`` records the
    options first (removed again if the run fails before training, on missing data), ``results.json`` and
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
    if options.resume is None:
        _write_run_json(experiment, options)  # what --resume reads back
    runner = experiment.runner if experiment.runner is not None else _compare
    try:
        with sigterm_interrupts():
            return runner(experiment, options)
    except (ValueError, FileNotFoundError):  # missing data, say: leave no empty output directory behind
        if options.resume is None:
            (options.out / "run.json").unlink(missing_ok=True)
        remove_created(options.out, created)
        raise


def _compare(experiment: registry.Experiment, options: RunOptions) -> dict:
    """The runner of an experiment with a ``load`` and a ``model``: trains each optimizer on that model."""
    optimizers = options.optimizers
    if optimizers is None:
        optimizers = [(o, None) for o in experiment.optimizers]
    quick = options.quick
    epochs = options.epochs if options.epochs is not None else (experiment.quick_epochs if quick else experiment.epochs)
    tune_epochs = options.tune_epochs or experiment.tuning_epochs(epochs)
    progress = RunProgress(options.out, options.checkpoint_every)
    t0 = time.perf_counter()
    data = experiment.load(options.data_dir, quick)
    load_seconds = time.perf_counter() - t0
    if options.resume is None:
        progress.clear()  # a fresh run never continues what an older run left in the same directory
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
    """The ``results.json`` of a comparison: the setup, one record per optimizer that finished, and (once
    complete) the verdict on each of the experiment's claims (:mod:`~adaptix.experiments.verdicts`)."""
    constant = [r["optimizer"] for r in runs if r["optimizer"] in experiment.constant_rate]
    decay = "alpha/sqrt(t)" + (f" (constant alpha for {', '.join(constant)})" if constant else "")
    return {
        "experiment": experiment.name,
        "description": experiment.description,
        "claim": experiment.claim,
        "seed": options.seed,
        "seeds": list(range(options.seed, options.seed + options.seeds)),
        # how the grid points and seeds were asked to train; a record's "mode" says how its training did (a vmapped
        # tuning or training that would not fit in memory runs one run after another instead)
        "mode": "sequential" if options.sequential else "vmapped",
        "quick": options.quick,
        "epochs": epochs,
        "batch_size": experiment.batch_size,
        "l2": experiment.l2,
        "tune_epochs": tune_epochs if options.tune else None,
        "step_size_decay": decay if experiment.decay_sqrt else "constant",
        "train_size": len(data.train),
        "test_size": len(data.test),
        "load_seconds": load_seconds,
        "wall_seconds": wall_seconds,  # loading, tuning, training and evaluation (of this process, when resumed)
        "complete": complete,  # false: interrupted, or written after some of the optimizers
        "verdict_rule": VERDICT_RULE,
        "verdicts": verdicts(experiment.claims, runs) if complete else None,
        "runs": runs,
    }


def summary_table(results: dict) -> str:
    """A plain-text table: final training cost, test accuracy and wall time per optimizer (mean ± s.d. over seeds)."""
    experiment = registry.EXPERIMENTS.get(results["experiment"])
    if experiment is not None and experiment.summarize is not None:
        return experiment.summarize(results)
    rows = [("optimizer", "lr", "train cost", "test acc", "seconds")]
    for r in results["runs"]:
        cost = "diverged" if r["diverged"] else mean_pm_sd(r, "epoch_train_loss")
        acc = mean_pm_sd(r, "epoch_test_accuracy") if r["epoch_test_accuracy"] else "-"
        rows.append((r["optimizer"], f"{r['learning_rate']:g}", cost, acc, f"{r['seconds']:.1f}"))
    seeds = results.get("seeds") or [results["seed"]]
    which = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]} (mean ± s.d.)"
    head = (f"{results['experiment']}: {results['train_size']} train / {results['test_size']} test examples, "
            f"{results['epochs']} epochs, batch {results['batch_size']}, {which}")
    return "\n".join([head, format_table(rows), *describe_verdicts(results.get("verdicts") or []),
                      *describe_tuning(results["runs"])])

