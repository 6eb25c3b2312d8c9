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
    r.add_argument("--epochs", type=int, help="epochs (default: the experiment's, or its quick budget)")
    r.add_argument("--data-dir", type=Path, help="dataset directory (else $ADAPTIX_DATA, else ~/.cache/adaptix)")
    r.add_argument("--out", type=Path, default=None, help="output directory (default: runs/EXPERIMENT)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--quick", action="store_true", help="a small budget, for a first look and for CI")
    r.add_argument("--tune", action="store_true", help="choose each learning rate by grid search first")
    r.add_argument("--tune-epochs", type=int, help="epochs per grid point (default: the run's epochs)")
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
        optimizers = registry.parse_optimizers(args.optimizers) if args.optimizers else None
        out = args.out or Path("runs") / args.experiment
        results = run_experiment(
            args.experiment, optimizers=optimizers, epochs=args.epochs, data_dir=args.data_dir, out=out,
            seed=args.seed, quick=args.quick, tune=args.tune, tune_epochs=args.tune_epochs,
            progress=False if args.no_progress else None,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"adaptix-experiments: error: {err}", file=sys.stderr)
        return 2
    print(summary_table(results))
    print(f"claim ({registry.get(args.experiment).name}): {results['claim']}")
    print(f"wrote {out / 'results.json'} and {out / (args.experiment + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
