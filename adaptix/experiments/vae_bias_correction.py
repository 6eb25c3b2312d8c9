"""Section 6.4 of Kingma & Ba (2015): Adam with and without bias correction.

Trains a variational auto-encoder on MNIST with Adam over a grid of
``beta1 x beta2 x step size``, once with both moments debiased (``adaptix.adam``)
and once without any correction, built from the same primitives minus the
two corrections::

    chain(trace(b1, ema=True),
          scale_by_rms(b2, eps, eps_in_sqrt=False, bias_correction=False),
          scale_by_learning_rate(lr))

and reports the training loss (negative ELBO, nats per image) after a short
("early") and a longer ("late") budget, as the paper's Figure 4 does after 10
and 100 epochs. The paper's claim: without correction, ``beta2`` close to 1
(0.9999) is unstable in the first iterations, because ``v_t`` starts near zero
and the first steps are up to ``sqrt(1 / (1 - beta2))`` = 100 times too large.

Each grid point is one jitted ``lax.scan`` over the whole run, with
``(beta1, beta2, step size)`` passed as traced values into the optimizer, so
each variant compiles once. All grid points start from the same initial
parameters and see the same minibatches and the same reparametrisation noise,
so the two variants differ only in the correction. For that reason this
experiment applies the transformations with ``init``/``update`` and
``optax.apply_updates`` on the split ``nnx`` state (the model is an ``nnx``
module, merged inside the loss) instead of through ``nnx.Optimizer``.

The paper's VAE has 500 hidden units and 50 latent dimensions and reports the
loss after 10 and 100 epochs; to fit a 2-core CPU this one has 200 and 20 and
reports it after 1 and 3 epochs (``--quick``: 100 and 10, 30 and 150
iterations on 19,200 images, a 2 x 2 x 2 grid).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

import adaptix
from adaptix.experiments import data as datasets
from adaptix.experiments.figures import fitted_title, readable_log_axis
from adaptix.experiments.interrupts import RunInterrupted, signal_of
from adaptix.experiments.models import VAE
from adaptix.experiments.optimizers import adam_without_bias_correction
from adaptix.experiments.options import RunOptions
from adaptix.experiments.results import format_table, save

CLAIM = ("Without bias correction, beta2 close to 1 (0.9999) becomes unstable early; with it, Adam is stable for "
         "every beta2")
DESCRIPTION = "Adam with vs without bias correction, VAE on MNIST, grid beta1 x beta2 x step size (section 6.4)"


def make_optimizer(corrected: bool, learning_rate, b1, b2, eps: float = 1e-8) -> adaptix.Transformation:
    """``adaptix.adam`` (``corrected``) or :func:`~adaptix.experiments.optimizers.adam_without_bias_correction`."""
    if corrected:
        return adaptix.adam(learning_rate, b1=b1, b2=b2, eps=eps)
    return adam_without_bias_correction(learning_rate, b1=b1, b2=b2, eps=eps)


@dataclass(frozen=True)
class Budget:
    """The grid and the length of the runs."""

    beta1: tuple[float, ...]
    beta2: tuple[float, ...]
    step_sizes: tuple[float, ...]
    early: int  # iterations to the first checkpoint
    late: int  # iterations to the second (the end of the run)
    hidden: int
    latent: int
    batch_size: int = 128
    train_size: int | None = None  # None: the 60,000 MNIST training images

    @property
    def size(self) -> int:
        return len(self.beta1) * len(self.beta2) * len(self.step_sizes)

    @property
    def points(self) -> list[tuple[float, float, float]]:
        """The grid's ``(beta1, beta2, step size)`` points, beta2 slowest, the step size fastest."""
        return [(b1, b2, lr) for b2 in self.beta2 for b1 in self.beta1 for lr in self.step_sizes]


def _log_grid(lo: float, hi: float, n: int) -> tuple[float, ...]:
    return tuple(float(f"{v:.3g}") for v in np.logspace(lo, hi, n))


# One epoch of the 60,000 training images is 468 iterations of 128.
FULL = Budget(beta1=(0.0, 0.9), beta2=(0.99, 0.999, 0.9999), step_sizes=_log_grid(-4, -1.5, 6),
              early=468, late=3 * 468, hidden=200, latent=20)
QUICK = Budget(beta1=(0.0, 0.9), beta2=(0.99, 0.9999), step_sizes=(1e-3, 1e-2),
               early=30, late=150, hidden=100, latent=10, train_size=19200)


def _train_variant(corrected: bool, budget: Budget, x_train: np.ndarray, *, seed: int,
                   bar: tqdm | None = None) -> tuple[np.ndarray, float, float]:
    """Trains every grid point of one variant; returns losses ``(iterations, grid points)``, compile and total seconds.

    One jitted ``lax.scan`` runs a whole grid point; ``beta1``, ``beta2`` and the step size are
    traced arguments, so the variant compiles once. (Running the grid points one after the other
    was three times faster on a 2-core CPU than ``jax.vmap`` over them.)
    """
    grid = budget.points
    model = VAE(x_train.shape[1], hidden=budget.hidden, latent=budget.latent, rngs=nnx.Rngs(params=seed))
    graphdef, params0 = nnx.split(model)
    steps_per_epoch = len(x_train) // budget.batch_size
    rng = np.random.default_rng(seed)
    epochs = -(-budget.late // steps_per_epoch)
    used = steps_per_epoch * budget.batch_size  # whole batches of each epoch's permutation
    order = np.concatenate([rng.permutation(len(x_train))[:used] for _ in range(epochs)])
    batches = jnp.asarray(order[: budget.late * budget.batch_size].reshape(budget.late, budget.batch_size), jnp.int32)
    x_device = jnp.asarray(x_train)
    noise_key = jax.random.key(seed + 1)

    def loss_fn(params, x, noise):
        return nnx.merge(graphdef, params)(x, noise).mean()

    @jax.jit
    def train_one(params, x_train, batches, key, b1, b2, lr):
        tx = make_optimizer(corrected, lr, b1, b2)

        def body(carry, inputs):
            params, state = carry
            t, idx = inputs
            noise = jax.random.normal(jax.random.fold_in(key, t), (idx.shape[0], budget.latent))
            loss, grads = jax.value_and_grad(loss_fn)(params, x_train[idx], noise)
            updates, state = tx.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), loss

        steps = jnp.arange(batches.shape[0])
        _, losses = jax.lax.scan(body, (params, tx.init(params)), (steps, batches))
        return losses

    start = time.perf_counter()
    compile_seconds = 0.0
    losses = []
    for i, (b1, b2, lr) in enumerate(grid):
        args = (params0, x_device, batches, noise_key, *(jnp.float32(v) for v in (b1, b2, lr)))
        if i == 0:
            t0 = time.perf_counter()
            compiled = train_one.lower(*args).compile()
            compile_seconds = time.perf_counter() - t0
        losses.append(np.asarray(compiled(*args)))
        if bar is not None:
            bar.update()
    return np.stack(losses, axis=1), compile_seconds, time.perf_counter() - start


def checkpoint_loss(losses: np.ndarray, iteration: int) -> float:
    """Mean minibatch loss over the last tenth of the first ``iteration`` iterations; inf if any is not finite."""
    window = losses[iteration - max(1, iteration // 10) : iteration]
    return float(window.mean()) if np.all(np.isfinite(window)) else math.inf


def _first_nonfinite(losses: np.ndarray) -> int | None:
    bad = np.flatnonzero(~np.isfinite(losses))
    return int(bad[0]) + 1 if len(bad) else None


def _block_means(losses: np.ndarray, every: int) -> list[float]:
    out = []
    for i in range(0, len(losses), every):
        block = losses[i : i + every]
        out.append(float(f"{block.mean():.5g}") if np.all(np.isfinite(block)) else None)
    return out


def verdict(runs: list[dict], beta2: tuple[float, ...], checkpoint: str = "early", factor: float = 1.1) -> dict:
    """Does the claim hold at ``checkpoint``? Both halves are checked on the grid.

    *Unstable without correction*: the grid points (beta1, step size) where the loss without
    correction exceeds ``factor`` times the loss with it, or diverged, are more numerous at the
    largest beta2 than at the smallest. *Stable with correction*: at every (beta1, step size) the
    corrected loss at the largest beta2 is within ``factor`` of the one at the smallest (where that
    one diverged too, the step size is simply too large). ``best_*`` (the lowest loss over the
    grid) and ``max_ratio`` are reported too.
    """
    loss = {(r["beta1"], r["beta2"], r["learning_rate"], r["bias_correction"]): r["loss"][checkpoint] for r in runs}
    points = sorted({(b1, lr) for b1, _, lr, _ in loss})
    table = {}
    for b2 in beta2:
        pairs = [(loss[(b1, b2, lr, True)], loss[(b1, b2, lr, False)]) for b1, lr in points]
        table[f"{b2:g}"] = {
            "worse": sum(1 for w, wo in pairs if not wo <= factor * w),
            "points": len(pairs),
            "best_with_correction": min(w for w, _ in pairs),
            "best_without_correction": min(wo for _, wo in pairs),
            "max_ratio": max((wo / w for w, wo in pairs if math.isfinite(w)), default=math.nan),
        }
    lo, hi = min(beta2), max(beta2)
    unstable = table[f"{hi:g}"]["worse"] > table[f"{lo:g}"]["worse"]
    # a step size too large for every beta2 (diverged at the smallest too) says nothing about beta2
    stable = all(loss[(b1, hi, lr, True)] <= factor * loss[(b1, lo, lr, True)] for b1, lr in points)
    return {"checkpoint": checkpoint, "factor": factor, "per_beta2": table,
            "unstable_without_correction": bool(unstable), "stable_with_correction": bool(stable),
            "claim_holds": bool(unstable and stable)}


def run(*, data_dir: Path | None = None, out: Path = Path("runs/bias-correction"), seed: int = 0, quick: bool = False,
        epochs: int | None = None, progress: bool | None = None, loss_every: int | None = None) -> dict:
    """Runs both variants over the grid; writes ``results.json`` and ``bias-correction.png`` to ``out``.

    ``epochs`` replaces the late budget (``epochs`` passes over the training images); the early
    checkpoint stays at one epoch (or the quick budget's), capped at the late one.
    """
    budget = QUICK if quick else FULL
    t0 = time.perf_counter()
    mnist = datasets.load_mnist(data_dir)
    x_train = mnist.train.x
    if budget.train_size is not None:
        x_train = x_train[np.sort(np.random.default_rng(seed).permutation(len(x_train))[: budget.train_size])]
    load_seconds = time.perf_counter() - t0
    if epochs is not None:
        if epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {epochs}")
        late = epochs * (len(x_train) // budget.batch_size)
        budget = dataclasses.replace(budget, late=late, early=min(budget.early, late))
    every = loss_every if loss_every and loss_every > 1 else max(1, budget.late // 250)

    runs, timing = [], {"load": load_seconds}
    results = {
        "experiment": "bias-correction",
        "description": DESCRIPTION,
        "claim": CLAIM,
        "seed": seed,
        "quick": quick,
        "model": f"VAE 784-{budget.hidden}-{budget.latent}-{budget.hidden}-784, softplus, Bernoulli decoder",
        "loss": "negative ELBO (nats per image), mean minibatch training loss over the last tenth before a checkpoint",
        "batch_size": budget.batch_size,
        "train_size": len(x_train),
        "beta1": list(budget.beta1),
        "beta2": list(budget.beta2),
        "step_sizes": list(budget.step_sizes),
        "checkpoints": {"early": budget.early, "late": budget.late},
        "initial_loss": None,
        "curve_every": every,
        "seconds": timing,
        "complete": False,  # true once both variants ran; the verdict is given then
        "runs": runs,
    }
    disable = None if progress is None else not progress  # None: only on a terminal
    bar = tqdm(total=2 * len(budget.points), desc="bias-correction grid points", disable=disable, leave=False)
    try:
        for corrected in (True, False):
            bar.set_postfix(variant="with correction" if corrected else "without correction")
            runs += _variant_runs(corrected, budget, x_train, seed, bar, timing, every, results)
            results["complete"] = not corrected
            if corrected:
                results["wall_seconds"] = time.perf_counter() - t0
                save(results, out, plot)
    except KeyboardInterrupt as stop:
        raise RunInterrupted(f"bias-correction stopped with {len(runs)} of {2 * len(budget.points)} grid points "
                             f"done{', saved in ' + str(out) if runs else ''}; run it again to redo the rest",
                             signal_of(stop)) from None
    finally:
        bar.close()
    results["verdict"] = {c: verdict(runs, budget.beta2, c) for c in ("early", "late")}
    results["claim_holds"] = results["verdict"]["early"]["claim_holds"]
    results["wall_seconds"] = time.perf_counter() - t0
    return save(results, out, plot)


def _variant_runs(corrected: bool, budget: Budget, x_train: np.ndarray, seed: int, bar, timing: dict, every: int,
                  results: dict) -> list[dict]:
    """Every grid point of one variant as run records; its times go into ``timing``, the first loss into ``results``."""
    losses, compile_s, total_s = _train_variant(corrected, budget, x_train, seed=seed, bar=bar)
    timing["with correction" if corrected else "without correction"] = {"compile": compile_s, "total": total_s}
    results["initial_loss"] = float(np.median(losses[0]))
    return [{
        "beta1": b1, "beta2": b2, "learning_rate": lr, "bias_correction": corrected,
        "loss": {"early": checkpoint_loss(losses[:, j], budget.early),
                 "late": checkpoint_loss(losses[:, j], budget.late)},
        "diverged_at": _first_nonfinite(losses[:, j]),
        "curve": _block_means(losses[:, j], every),
    } for j, (b1, b2, lr) in enumerate(budget.points)]


def run_experiment(experiment, options: RunOptions) -> dict:
    """The command line's entry point (see ``registry.Experiment.runner``)."""
    del experiment
    return run(data_dir=options.data_dir, out=options.out, seed=options.seed, quick=options.quick,
               epochs=options.epochs, progress=options.progress, loss_every=options.loss_every)


def from_json(results: dict) -> dict:
    """A ``results.json`` read back, with its ``null`` losses (diverged) as ``inf`` again."""
    results = dict(results)
    results["runs"] = [{**r, "loss": {k: math.inf if v is None else v for k, v in r["loss"].items()}}
                       for r in results["runs"]]
    return results


def summary(results: dict) -> str:
    """Loss at both checkpoints per grid point, with and without correction."""
    lines = [f"bias-correction: {results['model']}, {results['train_size']} train images, batch "
             f"{results['batch_size']}, checkpoints at {results['checkpoints']['early']} and "
             f"{results['checkpoints']['late']} iterations, seed {results['seed']}"]
    by_key = {(r["beta1"], r["beta2"], r["learning_rate"], r["bias_correction"]): r for r in results["runs"]}

    def cell(v: float) -> str:
        return "diverged" if not math.isfinite(v) else f"{v:.1f}"

    rows = [["beta2", "beta1", "step size", "early: with", "without", "late: with", "without"]]
    for b2 in results["beta2"]:
        for b1 in results["beta1"]:
            for lr in results["step_sizes"]:
                w, wo = by_key[(b1, b2, lr, True)], by_key[(b1, b2, lr, False)]
                rows.append([f"{b2:g}", f"{b1:g}", f"{lr:.3g}", cell(w["loss"]["early"]), cell(wo["loss"]["early"]),
                             cell(w["loss"]["late"]), cell(wo["loss"]["late"])])
    lines.append(format_table(rows, left_columns=0))
    for c, v in results["verdict"].items():
        per = ", ".join(f"beta2={b2}: {d['worse']}/{d['points']} worse" for b2, d in v["per_beta2"].items())
        lines.append(f"{c}: grid points where no correction is > {v['factor']:g}x worse: {per}")
    lines.append("seconds: " + ", ".join(
        f"{k} {v:.1f}" if not isinstance(v, dict) else f"{k} {v['total']:.1f} (compile {v['compile']:.1f})"
        for k, v in results["seconds"].items()))
    v = results["verdict"]["early"]
    lines.append(f"early checkpoint: unstable without correction at beta2={max(results['beta2']):g}: "
                 f"{'yes' if v['unstable_without_correction'] else 'no'}; stable with correction for every beta2: "
                 f"{'yes' if v['stable_with_correction'] else 'no'}; claim reproduced: "
                 f"{'yes' if results['claim_holds'] else 'no'}")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    """Figure 4 of the paper: loss against the step size (log axis), one panel per beta2, a row per checkpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    beta2, checkpoints = results["beta2"], results["checkpoints"]
    fig, axes = plt.subplots(2, len(beta2), figsize=(max(7.2, 3.6 * len(beta2)), 6.6), dpi=110, squeeze=False)
    values = [r["loss"][c] for r in results["runs"] for c in checkpoints]
    finite = [v for v in values if math.isfinite(v)] or [results["initial_loss"]]
    low = min(finite)
    # the top of the chart: diverged runs are drawn there as x, finite losses above it as ^
    ceiling = min(results["initial_loss"], 2.5 * low, max(finite))
    styles = {(True, 0.0): ("tab:red", "-"), (False, 0.0): ("tab:green", "-"),
              (True, 0.9): ("tab:red", "--"), (False, 0.9): ("tab:green", "--")}
    for row, (name, iteration) in enumerate(checkpoints.items()):
        for col, b2 in enumerate(beta2):
            ax = axes[row, col]
            for b1 in results["beta1"]:
                for corrected in (True, False):
                    rs = sorted((r for r in results["runs"] if r["beta2"] == b2 and r["beta1"] == b1
                                 and r["bias_correction"] == corrected), key=lambda r: r["learning_rate"])
                    x = np.array([r["learning_rate"] for r in rs])
                    y = np.array([r["loss"][name] for r in rs])
                    diverged, above = ~np.isfinite(y), np.isfinite(y) & (y > ceiling)
                    y = np.where(diverged | above, ceiling, y)
                    color, ls = styles.get((corrected, b1), ("tab:gray", ":"))
                    label = f"{'with' if corrected else 'no'} correction, β1={b1:g}"
                    ax.plot(x, y, color=color, ls=ls, marker="o", ms=3, lw=1.3, label=label)
                    ax.plot(x[diverged], y[diverged], "x", color=color, ms=8, mew=2)
                    ax.plot(x[above], y[above], "^", color=color, ms=7)
            ax.set_title(f"β2={b2:g}, after {iteration} iterations ({name})", fontsize=8)
            ax.set_ylim(low * 0.95, ceiling * 1.04)
            ax.grid(alpha=0.3, which="both")
            ax.set_xscale("log")
            readable_log_axis(ax, "x")
            ax.set_xlabel("step size α")
            ax.set_ylabel("training loss (−ELBO, nats)")
    axes[0, 0].legend(fontsize=6.5)
    fitted_title(fig, f"Adam with (red) and without (green) bias correction; {results['model']}; "
                 f"× = diverged, ^ = off the chart", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
