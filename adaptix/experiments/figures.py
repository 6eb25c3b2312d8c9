"""What every figure of the experiments shares: readable log-axis ticks, whole-number epochs, titles that fit.

Matplotlib's defaults label a log axis that spans less than a decade with ticks such as
``2.4×10⁰``, put ticks at epoch 2.5, and let a long title run off both edges of the figure;
these helpers fix each, for the plots of :mod:`~adaptix.experiments.run`,
:mod:`~adaptix.experiments.toys` and :mod:`~adaptix.experiments.vae_bias_correction`.
"""

from __future__ import annotations

import math
import textwrap


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
