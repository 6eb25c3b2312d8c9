"""The command line's options for one run, as :func:`adaptix.experiments.run.run_experiment` hands them on."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunOptions:
    """What ``adaptix-experiments run`` was asked for; an experiment's runner reads the fields that apply to it.

    ``optimizers``: ``(name, learning rate or None)`` pairs (None: the experiment's own list);
    ``epochs``: None for the experiment's budget (or its quick one); ``progress``: None shows the
    bars only on a terminal; ``grid``/``grid_relative``: the step sizes for ``tune`` (see
    :func:`parse_grid`); ``loss_every``: the block length of the stored per-iteration curves;
    ``seeds``: how many seeds, from ``seed`` on; ``sequential``: train the grid points and seeds one
    after the other rather than as one vmapped program (see :mod:`adaptix.experiments.sweep`);
    ``checkpoint_every``: save every training's state every so many epochs (None: never);
    ``resume``: the directory of the interrupted run this one continues (None: a fresh run).
    """

    optimizers: list[tuple[str, float | None]] | None = None
    epochs: int | None = None
    data_dir: Path | None = None
    out: Path = Path("runs")
    seed: int = 0
    seeds: int = 1
    quick: bool = False
    tune: bool = False
    tune_epochs: int | None = None
    progress: bool | None = None
    loss_every: int = 1
    grid: tuple[float, ...] | None = None
    grid_relative: bool = False
    sequential: bool = False
    checkpoint_every: int | None = None
    resume: Path | None = None


def parse_grid(spec: str) -> tuple[tuple[float, ...], bool]:
    """``"1e-3,1e-2"`` -> absolute step sizes; ``"x0.3,x1,x3"`` -> factors of each optimizer's default rate."""
    items = [s.strip() for s in spec.split(",") if s.strip()]
    relative = [s.startswith("x") for s in items]
    if not items or (any(relative) and not all(relative)):
        raise ValueError(f"--grid takes step sizes (1e-3,1e-2) or factors of the default (x0.3,x1,x3), got {spec!r}")
    try:
        values = tuple(float(s[1:] if s.startswith("x") else s) for s in items)
    except ValueError:
        raise ValueError(f"--grid: cannot read {spec!r} as numbers") from None
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"--grid values must be positive, got {spec!r}")
    return values, all(relative)
