"""Writing results: strict ``results.json`` files, downsampled curves and plain-text tables."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


def finite_or_inf(x: float) -> float:
    return x if math.isfinite(x) else math.inf


def downsample(losses: list[float], every: int) -> list[float]:
    """Mean of each block of ``every`` consecutive values (the last block may be shorter)."""
    if every <= 1:
        return list(losses)
    v = np.asarray(losses, dtype=float)
    return [float(v[i : i + every].mean()) for i in range(0, len(v), every)]


#: The curves of a run record that :func:`seed_record` averages over seeds (each also gets a ``*_sd``).
CURVES = ("iteration_loss", "epoch_train_loss", "epoch_test_accuracy")


def mean_sd(curves: Sequence[Sequence[float]]) -> tuple[list[float], list[float]]:
    """Pointwise mean and sample standard deviation (``ddof=1``; 0 for one curve) of several curves.

    Curves of different lengths (a seed that diverged stopped early) are cut to the shortest; a
    non-finite value makes the mean and s.d. at its position non-finite.

    Example:
      >>> mean_sd([[1.0, 2.0, 3.0], [3.0, 4.0]])
      ([2.0, 3.0], [1.4142135623730951, 1.4142135623730951])
    """
    n = min((len(c) for c in curves), default=0)
    if n == 0:
        return [], []
    v = np.asarray([list(c)[:n] for c in curves], dtype=float)
    with np.errstate(invalid="ignore"):
        sd = v.std(axis=0, ddof=1) if len(v) > 1 else np.zeros(n)
        return [float(x) for x in v.mean(axis=0)], [float(x) for x in sd]


def mean_score(values: Sequence[float]) -> tuple[float, float]:
    """Mean and s.d. of a grid point's scores over seeds; inf (and s.d. inf) if any seed diverged."""
    if not all(math.isfinite(v) for v in values):
        return math.inf, math.inf
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), sd


def beyond_edge(scores: dict[float, float]) -> float | None:
    """The next step size past the winning edge of a grid (step size -> mean score), or None when the winner is
    inside it (or every point diverged).

    The new point continues the grid's own ratio at that edge, to 3 significant digits.

    Example:
      >>> beyond_edge({1e-3: 2.0, 1e-2: 1.0, 1e-1: 3.0}) is None
      True
      >>> beyond_edge({1e-3: 1.0, 1e-2: 2.0, 1e-1: 3.0})
      0.0001
    """
    grid = sorted(scores)
    if len(grid) < 2 or not any(math.isfinite(v) for v in scores.values()):
        return None
    best = min(grid, key=lambda lr: scores[lr])
    if best == grid[0]:
        return float(f"{grid[0] * grid[0] / grid[1]:.3g}")
    if best == grid[-1]:
        return float(f"{grid[-1] * grid[-1] / grid[-2]:.3g}")
    return None


def mean_pm_sd(run: dict, key: str) -> str:
    """The last value of a run's curve ``key``, with `` ± `` its s.d. across seeds when several seeds ran."""
    last = run[key][-1]
    if last is None or not math.isfinite(last):
        return "-"
    value = f"{last:.4f}"
    sd = run.get(f"{key}_sd")
    if len(run.get("seeds") or ()) > 1 and sd and sd[-1] is not None and math.isfinite(sd[-1]):
        value += f" ± {sd[-1]:.4f}"
    return value


def seed_record(histories: Sequence[dict], seeds: Sequence[int], scores: dict[int, dict[str, float]] | None,
                seconds: float, tune_seconds: float | None = None) -> dict:
    """One optimizer's run record from its seeds' histories (``asdict`` of ``History``).

    The curves (:data:`CURVES`) are the pointwise mean over seeds, each with its ``*_sd``;
    ``diverged`` is true if any seed diverged; ``grid`` maps each step size to the mean over seeds
    of its tuning score (``grid_sd`` the s.d.; None when not tuned); ``seconds`` is the time of the
    training of all seeds, ``tune_seconds`` that of the tuning (None when not tuned). ``per_seed``
    holds each seed's own curves, ``diverged`` and ``grid``.
    """
    first = histories[0]
    record = {"optimizer": first["optimizer"], "learning_rate": first["learning_rate"]}
    spread = {}
    for key in CURVES:
        record[key], spread[f"{key}_sd"] = mean_sd([h[key] for h in histories])
    record["seconds"] = seconds
    record["diverged"] = any(h["diverged"] for h in histories)
    grid, grid_sd = None, None
    if scores is not None:
        points = {k: mean_score([scores[s][k] for s in seeds]) for k in scores[seeds[0]]}
        grid, grid_sd = {k: m for k, (m, _) in points.items()}, {k: sd for k, (_, sd) in points.items()}
    record["grid"] = grid  # step size -> mean tail training cost after tune_epochs (None: not tuned)
    record["tune_seconds"] = tune_seconds
    record["seeds"] = list(seeds)
    record.update(spread)
    record["grid_sd"] = grid_sd
    record["per_seed"] = [{"seed": seed, **{k: h[k] for k in CURVES}, "diverged": h["diverged"],
                           "grid": scores[seed] if scores is not None else None}
                          for seed, h in zip(seeds, histories)]
    return record


def _downsample_run(run: dict, every: int) -> dict:
    """A run record with its per-iteration curves (the mean, each seed's, the s.d.) as block means."""
    out = {**run, "iteration_loss": downsample(run["iteration_loss"], every), "iteration_loss_every": every}
    if run.get("per_seed"):
        out["per_seed"] = [{**p, "iteration_loss": downsample(p["iteration_loss"], every)} for p in run["per_seed"]]
        if "iteration_loss_sd" in run:  # the s.d. across seeds of the stored (block-mean) curves
            out["iteration_loss_sd"] = mean_sd([p["iteration_loss"] for p in out["per_seed"]])[1]
    return out


def write_results(results: dict, path: Path, *, loss_every: int = 1) -> None:
    """``results.json``, with per-iteration curves reduced to block means of ``loss_every`` iterations.

    The block means apply to a run's mean curve, to each seed's curve (``per_seed``) and to the
    s.d. across seeds, which is recomputed from the seeds' block means.
    """
    if loss_every > 1:
        results = {**results, "runs": [_downsample_run(r, loss_every) for r in results["runs"]]}
    write_json(results, path)


def save(results: dict, out: Path, plot: Callable[[dict, Path], None], *, loss_every: int = 1) -> dict:
    """Writes ``results.json`` (see :func:`write_results`) and the figure ``<experiment>.png`` into ``out``.

    ``plot(results, path)`` draws the figure; returns ``results``.
    """
    out.mkdir(parents=True, exist_ok=True)
    write_results(results, out / "results.json", loss_every=loss_every)
    plot(results, out / f"{results['experiment']}.png")
    return results


def _clean(obj):
    """Non-finite floats (diverged runs) -> None; floats rounded to 7 significant digits (float32 precision)."""
    if isinstance(obj, (float, np.floating)):
        return float(f"{obj:.7g}") if math.isfinite(obj) else None
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_clean(v) for v in obj]
    return obj


def _dumps(obj, level: int = 0) -> str:
    """JSON with one key per line, but lists of numbers (and of lists of numbers) on one line."""
    pad, inner = " " * level, " " * (level + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {_dumps(v, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and any(isinstance(v, dict) for v in obj):
        return "[\n" + ",\n".join(inner + _dumps(v, level + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj, allow_nan=False, separators=(",", ":") if isinstance(obj, list) else None)


def write_json(results: dict, path: Path) -> None:
    """Strict JSON: a non-finite number (a diverged run) is written as ``null``; curves on one line each."""
    path.write_text(_dumps(_clean(results)) + "\n")


def format_table(rows: Sequence[Sequence[str]], *, left_columns: int = 1) -> str:
    """A plain-text table: the header ``rows[0]``, a dashed rule under it, then the other rows.

    Columns are two spaces apart; the first ``left_columns`` are left-justified, the rest right-justified.

    Example:
      >>> print(format_table([("name", "value"), ("a", "1.5"), ("bb", "10")]))
      name  value
      ----  -----
      a       1.5
      bb       10
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i < left_columns else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
