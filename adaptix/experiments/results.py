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


def write_results(results: dict, path: Path, *, loss_every: int = 1) -> None:
    """``results.json``, with per-iteration curves reduced to block means of ``loss_every`` iterations."""
    if loss_every > 1:
        runs = [{**r, "iteration_loss": downsample(r["iteration_loss"], loss_every), "iteration_loss_every": loss_every}
                for r in results["runs"]]
        results = {**results, "runs": runs}
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
