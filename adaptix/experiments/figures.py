"""What every figure of the experiments shares: readable log-axis ticks, whole-number epochs, titles that fit.

Matplotlib's defaults label a log axis that spans less than a decade with ticks such as
``2.4×10⁰``, put ticks at epoch 2.5, and let a long title run off both edges of the figure;
these helpers fix each, for :func:`plot_comparison` (the figure of every comparison of
:mod:`~adaptix.experiments.run`), :mod:`~adaptix.experiments.toys` and
:mod:`~adaptix.experiments.vae_bias_correction`.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np

from adaptix.experiments.results import mean_pm_sd, mean_sd


def tick_label(value: float, _position=None) -> str:
    """A tick of a log axis as a plain number (``0.25``, ``300``), or as ``10^k`` (times a mantissa) far from 1.

    Example:
      >>> [tick_label(v) for v in (0.25, 1.0, 300.0, 10000.0, 0.001, 1e-4, 3e-5, 1e6)]
      ['0.25', '1', '300', '10000', '0.001', '$10^{-4}$', '$3{\\\\times}10^{-5}$', '$10^{6}$']
    """
    if not (value > 0 and math.isfinite(value)):
        return ""
    if 1e-3 <= value < 1e5:
        return f"{value:.6g}"
    mantissa, exponent = f"{value:.2e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    power = f"10^{{{int(exponent)}}}"
    return f"${power}$" if float(mantissa) == 1 else f"${mantissa}{{\\times}}{power}$"


def readable_log_axis(ax, which: str = "y") -> None:
    """Plain-number ticks on a log axis (call after drawing, the limits decide which minor ticks get labels).

    Over several decades only the powers of ten are labelled; within about one decade the minor
    ticks are labelled too (2 and 5 of each decade, or every one when the span is a few tenths).
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis = ax.yaxis if which == "y" else ax.xaxis
    low, high = ax.get_ylim() if which == "y" else ax.get_xlim()
    decades = math.log10(high / low) if low > 0 and high > low else math.inf
    axis.set_major_formatter(FuncFormatter(tick_label))
    if decades > 1.5:
        axis.set_minor_formatter(NullFormatter())
        return
    subs = (2.0, 5.0) if decades > 0.6 else tuple(float(s) for s in range(2, 10))
    axis.set_minor_locator(LogLocator(base=10.0, subs=subs))
    axis.set_minor_formatter(FuncFormatter(tick_label))


def whole_number_ticks(ax, which: str = "x") -> None:
    """Ticks only at whole numbers (epochs, steps), never at 2.5."""
    from matplotlib.ticker import MaxNLocator

    (ax.xaxis if which == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


def fitted_title(fig, text: str, fontsize: float = 9.0) -> None:
    """``fig.suptitle(text)`` wrapped to the figure's width (each paragraph of ``text`` on lines of its own)."""
    width_points = fig.get_figwidth() * 72.0
    chars = max(20, int(width_points / (0.55 * fontsize)))  # an average glyph is about 0.55 em wide
    lines = [textwrap.fill(paragraph, chars) for paragraph in text.split("\n")]
    fig.suptitle("\n".join(lines), fontsize=fontsize)


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


def plot_comparison(results: dict, path: Path) -> None:
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
            final = "diverged" if r["diverged"] else mean_pm_sd(r, "epoch_train_loss")
            acc = mean_pm_sd(r, "epoch_test_accuracy") if r["epoch_test_accuracy"] else "-"
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
