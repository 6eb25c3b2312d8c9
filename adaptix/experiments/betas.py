"""Ma, Wu & E (2020): Adam converges faster and more smoothly when its two betas are close.

"A Qualitative Study of the Dynamic Behavior for Adaptive Gradient Algorithms" (arXiv 2009.06125)
observes three late-phase patterns of Adam's training loss (oscillations, spikes, divergence),
depending on ``beta1`` and ``beta2``, and that Adam "converges much smoother and even faster when
the values of the two momentum factors are close to each other", which matters when training
goes on into the high-precision regime. Their setting is deterministic (full-batch) training.

Here: full-batch training of an MLP (64-64-10, ReLU, softmax cross-entropy) on all 1,797 of
scikit-learn's 8x8 handwritten digits (bundled: no download), with ``adaptix.adam(1e-3, b1, b2)``
over the grid ``b1, b2`` in {0.5, 0.9, 0.99, 0.999} for 3,000 steps, from 3 seeds (the
initialisation; the data and the order are the same). All 16 grid points of a seed are vmapped
into one compiled program. Measured on each loss curve ``L_k`` (with ``log10`` clipped below at
``FLOOR`` = 1e-6, where float32's cross-entropy bottoms out, and above at 1e10, where a run has
diverged):

- **speed**: the mean of ``log10 L`` over all steps (lower: faster; the floor makes runs that reach
  float32's resolution sooner score lower, as the verdict rule's mean over the run does);
- **final**: the mean of ``log10 L`` over the last tenth of the steps;
- **roughness**: the mean upward move of ``log10 L`` per step after the first tenth,
  ``mean(max(0, log10 L_{k+1} - log10 L_k))``: 0 for a monotone curve, large for oscillations and
  spikes;
- **spikes**: how many times the loss jumps above 10x the best loss so far (counted on entering).

The claim is judged pair by pair with the project's rule (:mod:`~adaptix.experiments.verdicts`:
on the per-seed differences ``d = close - far``, "<" when the mean is below ``-2 sd``): every
diagonal point ``b1 = b2`` against each point of the same ``b2`` whose ``b1`` is a decade or more
away in ``1 - b1``. It is *reproduced* when the close point is faster ("<" in speed) in at least
three quarters of the pairs and never slower or rougher (">"), *partly* when faster in at least
half, otherwise *not reproduced*.

Deviations: the paper's networks and data differ (it trains fully connected networks on small
function-fitting and image tasks; our digits MLP is a stand-in that reaches the high-precision
regime in a few thousand steps on a CPU); one learning rate, 1e-3, as Adam's default; the
smoothness statistics are ours (the paper describes the patterns qualitatively). ``--quick``: a
2 x 2 grid, a 16-unit MLP, 150 steps.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adaptix
from adaptix.experiments.figures import fitted_title, readable_log_axis
from adaptix.experiments.interrupts import RunInterrupted, signal_of
from adaptix.experiments.options import RunOptions, given
from adaptix.experiments.results import format_table, save

CLAIM = "Adam converges faster and more smoothly when beta1 and beta2 are close (Ma, Wu & E, 2020)"
DESCRIPTION = ("Adam over a beta1 x beta2 grid, full-batch MLP on the bundled digits: final loss and smoothness "
               "(Ma, Wu & E, 2020)")
FLOOR, CEILING = 1e-6, 1e10
CURVE_POINTS = 300  # the mean curves in results.json are block means down to this many points


@dataclass(frozen=True)
class Budget:
    """The grid (the same values for both betas), the run length and the model."""

    betas: tuple[float, ...]
    steps: int
    hidden: int
    learning_rate: float = 1e-3


FULL = Budget(betas=(0.5, 0.9, 0.99, 0.999), steps=3000, hidden=64)
QUICK = Budget(betas=(0.9, 0.999), steps=150, hidden=16)


def load_digits() -> tuple[jax.Array, jax.Array]:
    """All of scikit-learn's 8x8 digits as one full batch: pixels in [0, 1], integer labels."""
    from sklearn.datasets import load_digits as sklearn_digits

    x, y = sklearn_digits(return_X_y=True)
    return jnp.asarray(x / 16.0, jnp.float32), jnp.asarray(y, jnp.int32)


def init_mlp(key: jax.Array, d_in: int, hidden: int, classes: int) -> dict:
    """He-initialised weights of a one-hidden-layer ReLU network, zero biases."""
    k1, k2 = jax.random.split(key)
    return {"w1": jax.random.normal(k1, (d_in, hidden)) * math.sqrt(2.0 / d_in), "b1": jnp.zeros(hidden),
            "w2": jax.random.normal(k2, (hidden, classes)) * math.sqrt(1.0 / hidden), "b2": jnp.zeros(classes)}


def mlp_loss(params: dict, x: jax.Array, y: jax.Array) -> jax.Array:
    hidden = jax.nn.relu(x @ params["w1"] + params["b1"])
    return optax.softmax_cross_entropy_with_integer_labels(hidden @ params["w2"] + params["b2"], y).mean()


def loss_curves(budget: Budget, x: jax.Array, y: jax.Array, seed: int) -> np.ndarray:
    """Full-batch losses ``[b1, b2, step]`` of Adam from one seed's initialisation, every grid point at once."""
    params = init_mlp(jax.random.key(seed), x.shape[1], budget.hidden, 10)
    betas = jnp.asarray(budget.betas, jnp.float32)
    b1, b2 = jnp.meshgrid(betas, betas, indexing="ij")
    return np.asarray(_grid_program(budget)(params, x, y, b1, b2), np.float64)


@functools.cache
def _grid_program(budget: Budget):
    """One compiled program per budget (the seeds only change the initial parameters it is given)."""

    def curve(params, x, y, b1, b2):
        opt = adaptix.adam(budget.learning_rate, b1=b1, b2=b2)

        def step(carry, _):
            p, s = carry
            loss, grads = jax.value_and_grad(mlp_loss)(p, x, y)
            updates, s = opt.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), loss

        return jax.lax.scan(step, (params, opt.init(params)), None, length=budget.steps)[1]

    over_b2 = jax.vmap(curve, in_axes=(None, None, None, 0, 0))
    return jax.jit(jax.vmap(over_b2, in_axes=(None, None, None, 0, 0)))


def _log_loss(curve: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.nan_to_num(curve, nan=CEILING, posinf=CEILING), FLOOR, CEILING)
    return np.log10(clipped)


def speed(curve: np.ndarray) -> float:
    """Mean ``log10`` loss over the whole run (clipped to [FLOOR, CEILING]): lower is faster."""
    return float(_log_loss(curve).mean())


def final_log_loss(curve: np.ndarray) -> float:
    """Mean ``log10`` loss over the last tenth of the steps (clipped to [FLOOR, CEILING])."""
    return float(_log_loss(curve)[-max(1, len(curve) // 10):].mean())


def roughness(curve: np.ndarray) -> float:
    """Mean upward move of ``log10`` loss per step after the first tenth: 0 for a monotone curve."""
    late = _log_loss(curve)[len(curve) // 10:]
    return float(np.maximum(np.diff(late), 0.0).mean()) if len(late) > 1 else 0.0


def spikes(curve: np.ndarray) -> int:
    """How many times the loss jumps above 10x the best loss so far (each excursion counted once)."""
    log = _log_loss(curve)
    above = log[1:] > np.minimum.accumulate(log)[:-1] + 1.0
    return int(np.sum(above[1:] & ~above[:-1]) + (above[0] if len(above) else 0))


def relation(close: list[float], far: list[float]) -> dict:
    """The verdict rule on paired per-seed values (lower is better): "<", ">" or "≈", with mean and sd of d."""
    d = np.asarray(close, np.float64) - np.asarray(far, np.float64)
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if len(d) > 1 else math.nan
    if len(d) < 2:
        rel = "?"
    elif mean < -2 * sd and mean < 0:
        rel = "<"
    elif mean > 2 * sd and mean > 0:
        rel = ">"
    else:
        rel = "≈"
    return {"relation": rel, "mean": mean, "sd": sd}


def _decades_apart(b1: float, b2: float) -> bool:
    return abs(math.log10(1 - b1) - math.log10(1 - b2)) >= 0.9


def judge(cells: list[dict], betas: tuple[float, ...]) -> dict:
    """Every close point (b1 = b2) against the far points of its b2; the claim's verdict from the pairs."""
    by = {(c["b1"], c["b2"]): c for c in cells}
    pairs = []
    for b in betas:
        close = by.get((b, b))
        if close is None:
            continue
        for b1 in betas:
            if (b1, b) in by and _decades_apart(b1, b):
                far = by[(b1, b)]
                pairs.append({"b2": b, "far_b1": b1,
                              "speed": relation(close["speed"], far["speed"]),
                              "roughness": relation(close["roughness"], far["roughness"])})
    n = len(pairs)
    faster = sum(p["speed"]["relation"] == "<" for p in pairs)
    worse = sum(p["speed"]["relation"] == ">" or p["roughness"]["relation"] == ">" for p in pairs)
    smoother = sum(p["roughness"]["relation"] == "<" for p in pairs)
    # the pairs whose far point has the smaller beta1 (Adam's default side, b1 < b2) and the others (b1 > b2,
    # where beta1^2 > beta2 is outside the region of Adam's known stability conditions)
    below = [p for p in pairs if p["far_b1"] < p["b2"]]
    faster_below = sum(p["speed"]["relation"] == "<" for p in below)
    if n and faster >= 0.75 * n and worse == 0:
        verdict = "reproduced"
    elif n and faster >= 0.5 * n:
        verdict = "partly"
    else:
        verdict = "not reproduced" if n and all(p["speed"]["relation"] != "?" for p in pairs) else "no verdict"
    return {"pairs": pairs, "faster": faster, "smoother": smoother, "slower_or_rougher": worse, "of": n,
            "faster_where_far_b1_is_smaller": faster_below, "of_far_b1_smaller": len(below),
            "verdict": verdict,
            "rule": "close (b1 = b2) vs far (b1 a decade or more away, same b2), paired over seeds: '<' when mean "
                    "d < -2 sd; reproduced when faster in >= 3/4 of the pairs and never slower or rougher"}


def _cell_records(curves_by_seed: list[np.ndarray], betas: tuple[float, ...]) -> list[dict]:
    stacked = np.stack(curves_by_seed)  # [seed, b1, b2, step]
    every = max(1, stacked.shape[-1] // CURVE_POINTS)
    cells = []
    for i, b1 in enumerate(betas):
        for j, b2 in enumerate(betas):
            per_seed = stacked[:, i, j]
            log = np.stack([_log_loss(c) for c in per_seed])
            blocks = log[:, : log.shape[1] // every * every].reshape(len(per_seed), -1, every).mean(-1)
            cells.append({"b1": b1, "b2": b2, "speed": [speed(c) for c in per_seed],
                          "final": [final_log_loss(c) for c in per_seed],
                          "roughness": [roughness(c) for c in per_seed], "spikes": [spikes(c) for c in per_seed],
                          "log10_loss_mean": blocks.mean(0).tolist(), "log10_loss_sd": blocks.std(0).tolist(),
                          "curve_every": every})
    return cells


def run(*, out: Path = Path("runs/adam-betas"), seed: int = 0, seeds: int = 3, quick: bool = False,
        steps: int | None = None, progress: bool | None = None) -> dict:
    """Runs the grid from ``seeds`` seeds; writes ``results.json`` and ``adam-betas.png`` after each seed."""
    from tqdm.auto import tqdm

    budget = QUICK if quick else FULL
    if steps is not None:
        budget = Budget(budget.betas, steps, budget.hidden, budget.learning_rate)
    t0 = time.perf_counter()
    x, y = load_digits()
    results = {"experiment": "adam-betas", "description": DESCRIPTION, "claim": CLAIM, "quick": quick,
               "model": f"MLP 64-{budget.hidden}-10 ReLU, full batch of {len(y)} digits",
               "learning_rate": budget.learning_rate, "steps": budget.steps, "betas": list(budget.betas),
               "floor": FLOOR, "seeds": [], "complete": False}
    curves: list[np.ndarray] = []
    bar = tqdm(range(seed, seed + seeds), desc="adam-betas seeds", leave=False,
               disable=None if progress is None else not progress)
    try:
        for s in bar:
            curves.append(loss_curves(budget, x, y, s))
            results["seeds"].append(s)
            results["cells"] = _cell_records(curves, budget.betas)
            results["judgement"] = judge(results["cells"], budget.betas)
            results["complete"] = len(curves) == seeds
            results["wall_seconds"] = time.perf_counter() - t0
            save(results, out, plot)
    except KeyboardInterrupt as stop:
        raise RunInterrupted(f"adam-betas stopped after {len(curves)} of {seeds} seeds; those are saved in {out}; "
                             "run it again to redo the rest", signal_of(stop)) from None
    finally:
        bar.close()
    return results


def run_experiment(experiment, options: RunOptions) -> dict:
    """The command line's entry point (see ``registry.Experiment.runner``); ``--epochs`` sets the steps.

    Three seeds unless ``--seeds`` says otherwise (one with ``--quick``).
    """
    del experiment
    seeds = options.seeds if "seeds" in given(options) else (1 if options.quick else 3)
    return run(out=options.out, seed=options.seed, seeds=seeds, quick=options.quick, steps=options.epochs,
               progress=options.progress)


def summary(results: dict) -> str:
    """The grid's final loss and roughness (means over seeds), then the pairs' verdicts."""
    betas = results["betas"]
    by = {(c["b1"], c["b2"]): c for c in results["cells"]}
    lines = [f"adam-betas: {results['model']}, Adam lr {results['learning_rate']:g}, {results['steps']} steps, "
             f"seeds {results['seeds']}"]
    rows = [["b1 \\ b2", *(f"{b:g}" for b in betas)]]
    for b1 in betas:
        rows.append([f"{b1:g}", *(f"{np.mean(by[(b1, b2)]['speed']):.2f} / {np.mean(by[(b1, b2)]['final']):.2f} / "
                                  f"{np.mean(by[(b1, b2)]['roughness']):.4f}" for b2 in betas)])
    lines.append("log10 loss: mean over the run / over the last tenth; roughness (means over seeds):")
    lines.append(format_table(rows))
    j = results["judgement"]
    for p in j["pairs"]:
        f, r = p["speed"], p["roughness"]
        lines.append(f"b1=b2={p['b2']:g} vs b1={p['far_b1']:g}: speed {f['relation']} ({f['mean']:+.2f} ± "
                     f"{f['sd']:.2f}), roughness {r['relation']} ({r['mean']:+.4f} ± {r['sd']:.4f})")
    lines.append(f"close betas faster in {j['faster']} of {j['of']} pairs, smoother in {j['smoother']}, slower or "
                 f"rougher in {j['slower_or_rougher']}: {j['verdict']}; of the pairs whose far beta1 is the smaller "
                 f"(b1 < b2, Adam's default side): faster in {j['faster_where_far_b1_is_smaller']} of "
                 f"{j['of_far_b1_smaller']}")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    """Heat maps of the final loss and the roughness over the grid, and the curves of two columns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    betas = results["betas"]
    by = {(c["b1"], c["b2"]): c for c in results["cells"]}
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.0), dpi=100)
    for ax, key, label in ((axes[0], "speed", "mean log10 loss over the run"), (axes[1], "roughness", "roughness")):
        grid = np.array([[np.mean(by[(b1, b2)][key]) for b2 in betas] for b1 in betas])
        image = ax.imshow(grid, cmap="viridis", origin="lower")
        for i in range(len(betas)):
            for j in range(len(betas)):
                ax.text(j, i, f"{grid[i, j]:.2f}" if key == "speed" else f"{grid[i, j]:.3f}", ha="center",
                        va="center", color="w", fontsize=8)
        ax.set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
        ax.set_yticks(range(len(betas)), [f"{b:g}" for b in betas])
        ax.set(xlabel="β2", ylabel="β1", title=f"{label} (mean of {len(results['seeds'])} seeds)")
        fig.colorbar(image, ax=ax, shrink=0.8)
    for ax, b2 in zip(axes[2:], (betas[-1], betas[len(betas) // 2 - 1])):
        for b1 in betas:
            cell = by[(b1, b2)]
            mean, sd = np.asarray(cell["log10_loss_mean"]), np.asarray(cell["log10_loss_sd"])
            steps = (np.arange(len(mean)) + 1) * cell["curve_every"]
            line = ax.plot(steps, 10**mean, lw=1.6 if b1 == b2 else 1.0, label=f"β1 = {b1:g}" +
                           (" (= β2)" if b1 == b2 else ""))[0]
            ax.fill_between(steps, 10 ** (mean - sd), 10 ** (mean + sd), color=line.get_color(), alpha=0.15)
        ax.set_yscale("log")
        readable_log_axis(ax)
        ax.set(xlabel="step", ylabel="full-batch loss", title=f"β2 = {b2:g}")
        ax.legend(fontsize=7)
    j = results["judgement"]
    fitted_title(fig, f"Adam's betas, {results['model']}, lr {results['learning_rate']:g}: close betas faster in "
                 f"{j['faster']} of {j['of']} pairs, smoother in {j['smoother']} ({j['verdict']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
