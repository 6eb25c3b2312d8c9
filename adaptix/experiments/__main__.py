"""Command line: ``adaptix-experiments list`` / ``adaptix-experiments run EXPERIMENT [options]``.

Reproduces the optimizer comparisons of Kingma & Ba (2015), section 6, and
compares any adaptix optimizer, or your own (``module:function`` taking
``learning_rate``), against the classics. Without arguments it runs the
embedded default, ``digits``, which needs no download.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from adaptix.experiments import registry
from adaptix.experiments.optimizers import parse_optimizers
from adaptix.experiments.options import parse_grid
from adaptix.experiments.run import run_experiment, summary_table


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="adaptix-experiments", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command")
    sub.add_parser("list", help="list the experiments")
    r = sub.add_parser("run", help="run one experiment")
    r.add_argument("experiment", nargs="?", default="digits", help="experiment name (default: digits)")
    r.add_argument("--optimizers", help="comma-separated: adam,adagrad,sgd-nesterov,..., an optional @lr "
                   "(adam@1e-3), or module:function for your own factory(learning_rate)")
    r.add_argument("--epochs", type=int, help="epochs (default: the experiment's, or its quick budget); "
                   "bias-correction: the length of the run in epochs; toys: the number of steps")
    r.add_argument("--data-dir", type=Path, help="dataset directory (else $ADAPTIX_DATA, else ~/.cache/adaptix)")
    r.add_argument("--out", type=Path, default=None, help="output directory (default: runs/EXPERIMENT)")
    r.add_argument("--seed", type=int, default=0, help="the first seed (model initialisation, dropout, data order)")
    r.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="train every optimizer from N seeds, --seed, --seed+1, ...; curves and tuning scores are "
                   "averaged over them (default: 1)")
    r.add_argument("--quick", action="store_true", help="a small budget, for a first look and for CI")
    r.add_argument("--tune", action="store_true", help="choose each learning rate by grid search first")
    r.add_argument("--grid", help="step sizes for --tune (1e-3,1e-2,...), or factors of each optimizer's "
                   "default rate (x0.1,x0.3,x1,x3,x10); default: the experiment's grid")
    r.add_argument("--tune-epochs", type=int, help="epochs per grid point (default: the run's epochs)")
    r.add_argument("--sequential", action="store_true",
                   help="train the grid points and seeds one after the other instead of as one vmapped, jitted "
                   "program (for models too large to hold every lane at once)")
    r.add_argument("--loss-every", type=int, default=1, metavar="K",
                   help="store the mean cost of every K iterations in results.json (keeps long runs small)")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        args = _parser().parse_args(["run", "digits"])
    if args.command == "list":
        print(registry.describe())
        return 0
    try:
        if args.seeds < 1:
            raise ValueError(f"--seeds must be a positive integer, got {args.seeds}")
        optimizers = parse_optimizers(args.optimizers) if args.optimizers else None
        grid, grid_relative = parse_grid(args.grid) if args.grid else (None, False)
        out = args.out or Path("runs") / args.experiment
        results = run_experiment(
            args.experiment, optimizers=optimizers, epochs=args.epochs, data_dir=args.data_dir, out=out,
            seed=args.seed, seeds=args.seeds, sequential=args.sequential, quick=args.quick, tune=args.tune,
            tune_epochs=args.tune_epochs,
            progress=False if args.no_progress else None, loss_every=args.loss_every,
            grid=grid, grid_relative=grid_relative,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"adaptix-experiments: error: {err}", file=sys.stderr)
        return 2
    print(summary_table(results))
    print(f"claim ({registry.get(args.experiment).name}): {results['claim']}")
    files = results.get("files") or ["results.json", f"{results['experiment']}.png"]
    print(f"wall time {results['wall_seconds']:.1f} s; wrote " + ", ".join(str(out / f) for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
