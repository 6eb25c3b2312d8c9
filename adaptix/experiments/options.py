"""The command line's options for one run, as :func:`adaptix.experiments.run.run_experiment` hands them on."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
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
        raise ValueError(f"takes step sizes (1e-3,1e-2) or factors of the default rate (x0.3,x1,x3), got {spec!r}")
    try:
        values = tuple(float(s[1:] if s.startswith("x") else s) for s in items)
    except ValueError:
        raise ValueError(f"cannot read {spec!r} as numbers") from None
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"the step sizes must be positive and finite, got {spec!r}")
    return values, all(relative)


#: The largest seed: NumPy's generators and JAX's keys both take any integer in [0, 2**32).
MAX_SEED = 2**32 - 1


def check_count(option: str, value, *, allow_none: bool = True) -> None:
    """``value`` is a positive integer (or None when ``allow_none``); a ``ValueError`` naming ``option`` otherwise."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{option} must be a positive integer (1, 2, ...), got {value!r}")


def check_seeds(seed, seeds) -> None:
    """``--seed`` in [0, 2**32) and ``--seeds`` a positive count whose last seed is still in range."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"--seed must be an integer in [0, {MAX_SEED}], got {seed!r}")
    check_count("--seeds", seeds, allow_none=False)
    if seed + seeds - 1 > MAX_SEED:
        raise ValueError(f"--seed {seed} with --seeds {seeds} runs past the largest seed, {MAX_SEED}")


#: The command line's flag for each :class:`RunOptions` field.
FLAGS = {
    "optimizers": "--optimizers", "epochs": "--epochs", "data_dir": "--data-dir", "out": "--out", "seed": "--seed",
    "seeds": "--seeds", "quick": "--quick", "tune": "--tune", "tune_epochs": "--tune-epochs",
    "progress": "--no-progress", "loss_every": "--loss-every", "grid": "--grid", "grid_relative": "--grid",
    "sequential": "--sequential",
    "checkpoint_every": "--checkpoint-every", "resume": "--resume",
}


def given(options: RunOptions) -> list[str]:
    """The fields of ``options`` that differ from their defaults (``out`` and ``progress`` aside), in field order."""
    defaults = RunOptions()
    return [f.name for f in fields(RunOptions) if f.name not in ("out", "progress")
            and getattr(options, f.name) != getattr(defaults, f.name)]


def check_options(options: RunOptions) -> None:
    """Every value of ``options`` in its range, and the flags that only make sense together, before any work."""
    check_count("--epochs", options.epochs)
    check_count("--tune-epochs", options.tune_epochs)
    check_count("--loss-every", options.loss_every, allow_none=False)
    check_count("--checkpoint-every", options.checkpoint_every)
    check_seeds(options.seed, options.seeds)
    if options.optimizers is not None and not options.optimizers:
        raise ValueError("--optimizers names no optimizer")
    if not options.tune and options.tune_epochs is not None:
        raise ValueError("--tune-epochs applies with --tune (the epochs of each grid point)")
    if not options.tune and options.grid is not None:
        raise ValueError("--grid applies with --tune (the step sizes to search)")
    if options.data_dir is not None and Path(options.data_dir).exists() and not Path(options.data_dir).is_dir():
        raise ValueError(f"--data-dir {options.data_dir} is a file, not a directory")


def writable_directory(option: str, path: Path) -> Path | None:
    """Creates ``path`` (with its parents) and proves it writable, so a run never finds out at its end.

    Returns the topmost directory it created (None if ``path`` existed), for
    :func:`remove_created` to take away again when the run fails before writing anything. A
    ``ValueError`` that names ``option`` when ``path`` is a file, lies under one, or cannot be
    created or written (``/proc``, ``/sys``, no permission, a full disk).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} is a file, not a directory")
    created = next((p for p in reversed([path, *path.parents]) if not p.exists()), None)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".adaptix-write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"{option} {path}: cannot write there ({err.strerror or err})") from None
    return created


def remove_created(path: Path, created: Path | None) -> None:
    """Removes ``path`` and its parents up to ``created`` (see :func:`writable_directory`) while they are empty."""
    if created is None:
        return
    for directory in [Path(path), *Path(path).parents]:
        try:
            directory.rmdir()  # only an empty directory
        except OSError:
            return
        if directory == created:
            return
