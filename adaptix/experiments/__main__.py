"""Command line: ``adaptix-experiments list`` / ``adaptix-experiments run EXPERIMENT [options]``.

Reproduces the optimizer comparisons of Kingma & Ba (2015), section 6, and
compares any adaptix optimizer, or your own (``module:function`` taking
``learning_rate``), against the classics. Without arguments it runs the
embedded default, ``digits``, which needs no download.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from adaptix import __version__

#: The modules of the ``[experiments]`` extra; without one of them the command says what to install.
EXTRA_MODULES = ("flax", "matplotlib", "tqdm", "sklearn", "PIL", "orbax")
EXIT_USAGE = 2  # a user error: a bad option, missing data, a run that cannot be resumed
EXIT_MISSING_EXTRA = 1


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr (no usage block) and exit status 2."""

    def error(self, message: str):
        message = message.removeprefix("argument ")  # "argument --epochs: ..." -> "--epochs: ..."
        self.exit(EXIT_USAGE, f"adaptix-experiments: error: {message} (see {self.prog} --help)\n")


def _as_type(parse, name: str):
    """``parse`` as an argparse ``type``: its ``ValueError`` message becomes the option's error message."""
    def typed(text: str):
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    typed.__name__ = name
    return typed


def _integer(low: int, high: float, what: str):
    """A parser of integers in ``[low, high]`` whose error says ``must be {what}``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise ValueError(f"must be {what}, got {text!r}")
        return value
    return parse


def _parser() -> argparse.ArgumentParser:
    from adaptix.experiments import registry
    from adaptix.experiments.optimizers import optimizer_names, parse_optimizers
    from adaptix.experiments.options import MAX_SEED, parse_grid

    count = _as_type(_integer(1, math.inf, "a positive integer (1, 2, ...)"), "count")
    seed = _as_type(_integer(0, MAX_SEED, f"an integer in [0, {MAX_SEED}]"), "seed")
    p = _Parser(prog="adaptix-experiments", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"adaptix {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    sub.add_parser("list", help="list the experiments and the optimizer names")
    epilog = (f"experiments: {', '.join(registry.EXPERIMENTS)} (see `adaptix-experiments list`)\n"
              f"optimizers: {', '.join(optimizer_names())}, or module:function")
    r = sub.add_parser("run", help="run one experiment", epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("experiment", nargs="?", type=_as_type(lambda s: registry.get(s).name, "experiment"),
                   help="experiment name (default: digits; with --resume: the resumed run's)")
    r.add_argument("--optimizers", type=_as_type(parse_optimizers, "optimizers"),
                   help="comma-separated: adam,adagrad,sgd-nesterov,..., an optional @lr "
                   "(adam@1e-3), or module:function for your own factory(learning_rate)")
    r.add_argument("--epochs", type=count, help="epochs (default: the experiment's, or its quick budget); "
                   "bias-correction: the length of the run in epochs; toys: the number of steps")
    r.add_argument("--data-dir", type=Path, help="dataset directory (else $ADAPTIX_DATA, else ~/.cache/adaptix)")
    r.add_argument("--out", type=Path, default=None, help="output directory (default: runs/EXPERIMENT)")
    r.add_argument("--seed", type=seed, default=0, help="the first seed (model initialisation, dropout, data order)")
    r.add_argument("--seeds", type=count, default=1, metavar="N",
                   help="train every optimizer from N seeds, --seed, --seed+1, ...; curves and tuning scores are "
                   "averaged over them (default: 1)")
    r.add_argument("--quick", action="store_true", help="a small budget, for a first look and for CI")
    r.add_argument("--tune", action="store_true", help="choose each learning rate by grid search first")
    r.add_argument("--grid", type=_as_type(parse_grid, "grid"),
                   help="step sizes for --tune (1e-3,1e-2,...), or factors of each optimizer's "
                   "default rate (x0.1,x0.3,x1,x3,x10); default: the experiment's grid")
    r.add_argument("--tune-epochs", type=count, help="epochs per grid point (default: the run's epochs)")
    r.add_argument("--sequential", action="store_true",
                   help="train the grid points and seeds one after the other instead of as one vmapped, jitted "
                   "program (for models too large to hold every lane at once)")
    r.add_argument("--loss-every", type=count, default=1, metavar="K",
                   help="store the mean cost of every K iterations in results.json (keeps long runs small)")
    r.add_argument("--checkpoint-every", type=count, metavar="N",
                   help="save every training's state (model, optimizer, data order) every N epochs, so that "
                   "--resume continues from there rather than from the last finished optimizer")
    r.add_argument("--resume", type=Path, metavar="DIR",
                   help="continue the interrupted run in DIR (its --out) with the options it was started with; "
                   "the result equals an uninterrupted run bit for bit")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


#: What may accompany --resume: the rest comes from the interrupted run's run.json.
_RESUME_KEEPS = {"command", "experiment", "resume", "checkpoint_every", "no_progress"}


def _check_resume(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The experiment to run; with ``--resume``, refuses every option that would change the resumed run."""
    from adaptix.experiments.run import experiment_of

    if args.resume is None:
        return args.experiment or "digits"
    defaults = vars(parser.parse_args(["run"]))
    for name, value in vars(args).items():
        if name not in _RESUME_KEEPS and value != defaults[name]:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"--resume continues a run with the options it was started with; {flag} does not "
                             "apply (only --checkpoint-every and --no-progress may be given)")
    return args.experiment or experiment_of(args.resume)


def _claim_line(name: str, results: dict, optimizers) -> str:
    """The experiment's claim, or, when the run left out optimizers the claim is about, which ones it trained."""
    from adaptix.experiments import registry

    experiment = registry.get(name)
    about = list(dict.fromkeys(o for c in experiment.claims for o in (c.a, c.b))) or list(experiment.optimizers)
    ran = [o for o, _ in optimizers] if optimizers else list(experiment.optimizers)
    if any(o not in ran for o in about):
        return f"claim ({name}) not checked: it is about {', '.join(about)}; this run trained {', '.join(ran)}"
    return f"claim ({name}): {results['claim']}"


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from adaptix.experiments.run import run_experiment, summary_table

    name = _check_resume(parser, args)
    grid, grid_relative = args.grid if args.grid else (None, False)
    out = args.resume or args.out or Path("runs") / name
    results = run_experiment(
        name, optimizers=args.optimizers, epochs=args.epochs, data_dir=args.data_dir, out=out,
        seed=args.seed, seeds=args.seeds, sequential=args.sequential, quick=args.quick, tune=args.tune,
        tune_epochs=args.tune_epochs, progress=False if args.no_progress else None, loss_every=args.loss_every,
        grid=grid, grid_relative=grid_relative, checkpoint_every=args.checkpoint_every, resume=args.resume,
    )
    print(summary_table(results))
    print(_claim_line(name, results, args.optimizers))
    files = results.get("files") or ["results.json", f"{results['experiment']}.png"]
    print(f"wall time {results['wall_seconds']:.1f} s; wrote " + ", ".join(str(out / f) for f in files))
    return 0


def _missing_extra(err: ModuleNotFoundError) -> bool:
    return (err.name or "").split(".")[0] in EXTRA_MODULES


def main(argv: list[str] | None = None) -> int:
    # as `python -m adaptix.experiments` does, so a module:function factory in the current directory imports
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        from adaptix.experiments import registry
        from adaptix.experiments.interrupts import RunInterrupted, signal_of

        parser = _parser()
    except ModuleNotFoundError as err:
        if not _missing_extra(err):
            raise
        print(f"adaptix-experiments: error: {err.name} is not installed; the experiments need the [experiments] "
              "extra: pip install 'adaptix[experiments]' (or, in a checkout: pip install -e '.[experiments]')",
              file=sys.stderr)
        return EXIT_MISSING_EXTRA
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as done:  # --help, --version, or a bad option (one line already printed)
        return done.code
    if args.command is None:
        args = parser.parse_args(["run", "digits"])
    if args.command == "list":
        from adaptix.experiments.optimizers import optimizer_names

        print(registry.describe())
        print(f"\noptimizers (--optimizers): {', '.join(optimizer_names())}, or module:function")
        return 0
    try:
        return _run(parser, args)
    except (ValueError, FileNotFoundError) as err:
        print(f"adaptix-experiments: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except RunInterrupted as stop:
        print(f"adaptix-experiments: {stop}", file=sys.stderr)
        return 128 + stop.signal
    except KeyboardInterrupt as stop:  # before any training finished: loading data, compiling
        print("adaptix-experiments: interrupted before any training finished; nothing to keep", file=sys.stderr)
        return 128 + signal_of(stop)


if __name__ == "__main__":
    sys.exit(main())
