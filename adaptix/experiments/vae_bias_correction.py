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
(0.9999) is unstable in the first iterations, because ``v_t`` starts near zero:
the first uncorrected step is ``(1 - beta1) / sqrt(1 - beta2)`` times the
corrected one, 100 times at ``beta1 = 0`` and 10 times at ``beta1 = 0.9``
(``beta2 = 0.9999``).

Each grid point is one jitted ``lax.scan`` over the whole run, with
``(beta1, beta2, step size)`` passed as traced values into the optimizer, so
each variant compiles once. All grid points start from the same initial
parameters and see the same minibatches and the same reparametrisation noise,
so the two variants differ only in the correction. For that reason this
experiment applies the transformations with ``init``/``update`` and
``optax.apply_updates`` on the split ``nnx`` state (the model is an ``nnx``
module, merged inside the loss) instead of through ``nnx.Optimizer``.

The default budget is the paper's: 500 hidden units, 50 latent dimensions,
``beta1`` in {0, 0.9}, ``beta2`` in {0.99, 0.999, 0.9999}, ``log10(step size)``
from -5 to -1 in steps of 0.5, the loss read after 10 and 100 epochs. That is
54 grid points x 2 variants x 100 epochs per seed, far beyond a 2-core CPU:
``--epochs 10`` stops at the first checkpoint, 10 epochs (about 40 minutes per
seed there, both variants: 2.1 h for the committed three seeds). ``--seeds N``
repeats the grid from N seeds (initialisation, minibatch order, noise) and the
verdict uses the project's rule (:mod:`~adaptix.experiments.verdicts`) per grid
point; ``--quick``: 100 and 10 units, 30 and 150 iterations on 19,200 images, a
2 x 2 x 2 grid.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable
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
from adaptix.experiments.results import format_table, save, write_results

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
FULL = Budget(beta1=(0.0, 0.9), beta2=(0.99, 0.999, 0.9999), step_sizes=_log_grid(-5, -1, 9),
              early=10 * 468, late=100 * 468, hidden=500, latent=50)
QUICK = Budget(beta1=(0.0, 0.9), beta2=(0.99, 0.9999), step_sizes=(1e-3, 1e-2),
               early=30, late=150, hidden=100, latent=10, train_size=19200)


def train_grid(make_tx: Callable[..., adaptix.Transformation], budget: Budget, x_train: np.ndarray, *, seed: int,
               bar: tqdm | None = None, skip: frozenset[int] = frozenset(),
               on_point: Callable[[int, np.ndarray], None] | None = None) -> tuple[float, float]:
    """Trains ``make_tx(step size, beta1, beta2)`` at every grid point but those in ``skip``.

    ``on_point(j, losses)`` gets each grid point's minibatch losses as it ends. Returns the compile
    and the total seconds.

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
        tx = make_tx(lr, b1, b2)

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
    compile_seconds, compiled = 0.0, None
    for j, (b1, b2, lr) in enumerate(grid):
        if j in skip:
            continue
        args = (params0, x_device, batches, noise_key, *(jnp.float32(v) for v in (b1, b2, lr)))
        if compiled is None:
            t0 = time.perf_counter()
            compiled = train_one.lower(*args).compile()
            compile_seconds = time.perf_counter() - t0
        losses = np.asarray(compiled(*args))
        if on_point is not None:
            on_point(j, losses)
        if bar is not None:
            bar.update()
    return compile_seconds, time.perf_counter() - start


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


Point = tuple[float, float, float, bool]  # (beta1, beta2, step size, bias_correction)


def losses_by_point(runs: list[dict], checkpoint: str) -> dict[Point, list[float]]:
    """Each grid point's loss at ``checkpoint``, one per seed in seed order (``inf`` where a seed diverged)."""
    out: dict[Point, list[float]] = {}
    for r in sorted(runs, key=lambda r: r.get("seed", 0)):
        key = (r["beta1"], r["beta2"], r["learning_rate"], r["bias_correction"])
        out.setdefault(key, []).append(r["loss"][checkpoint])
    return out


def mean_loss(values: list[float]) -> float:
    """The mean over seeds; inf when a seed diverged."""
    return float(np.mean(values)) if all(math.isfinite(v) for v in values) else math.inf


def worse(a: list[float], b: list[float], factor: float) -> bool:
    """Whether the losses ``a`` are worse than ``b`` (paired by seed).

    With several seeds, the project's rule (:mod:`~adaptix.experiments.verdicts`): the mean of
    ``a - b`` exceeds twice its s.d. across seeds. With one seed, ``a > factor * b``. A diverged
    ``a`` is worse unless ``b`` diverged too; a diverged ``b`` is never beaten by a finite ``a``.
    """
    a_ok, b_ok = all(math.isfinite(v) for v in a), all(math.isfinite(v) for v in b)
    if not a_ok or not b_ok:
        return not a_ok and b_ok
    if len(a) == 1:
        return a[0] > factor * b[0]
    d = np.subtract(a, b)
    return bool(d.mean() > 2 * d.std(ddof=1))


def verdict(runs: list[dict], beta2: tuple[float, ...], checkpoint: str = "early", factor: float = 1.1) -> dict:
    """Does the claim hold at ``checkpoint``? Both halves are checked on the grid, by :func:`worse`.

    *Unstable without correction*: the grid points (beta1, step size) where the loss without
    correction is worse than with it are more numerous at the largest beta2 than at the smallest.
    *Stable with correction*: at no (beta1, step size) is the corrected loss at the largest beta2
    worse than at the smallest (where that one diverged too, the step size is simply too large).
    ``best_*`` (the lowest mean loss over the grid) and ``max_ratio`` (of the means) are reported too,
    and the points behind each half: per beta2 ``worse_at``, and ``corrected_worse_at`` (the points
    that break the second half), each as ``{"beta1", "step_size", "ratio"}`` (of the mean losses,
    ``inf`` where the worse one diverged).
    """
    loss = losses_by_point(runs, checkpoint)
    points = sorted({(b1, lr) for b1, _, lr, _ in loss})

    def where(pairs) -> list[dict]:
        return [{"beta1": b1, "step_size": lr, "ratio": _ratio(mean_loss(a), mean_loss(b))}
                for (b1, lr), (a, b) in zip(points, pairs, strict=True) if worse(a, b, factor)]

    table = {}
    for b2 in beta2:
        pairs = [(loss[(b1, b2, lr, False)], loss[(b1, b2, lr, True)]) for b1, lr in points]
        means = [(mean_loss(w), mean_loss(wo)) for wo, w in pairs]
        worse_at = where(pairs)
        table[f"{b2:g}"] = {
            "worse": len(worse_at),
            "points": len(pairs),
            "best_with_correction": min(w for w, _ in means),
            "best_without_correction": min(wo for _, wo in means),
            "max_ratio": max((wo / w for w, wo in means if math.isfinite(w)), default=math.nan),
            "worse_at": worse_at,
        }
    lo, hi = min(beta2), max(beta2)
    unstable = table[f"{hi:g}"]["worse"] > table[f"{lo:g}"]["worse"]
    corrected_worse_at = where([(loss[(b1, hi, lr, True)], loss[(b1, lo, lr, True)]) for b1, lr in points])
    seeds = len(next(iter(loss.values()))) if loss else 0
    rule = f"paired over {seeds} seeds, mean difference > 2 s.d." if seeds > 1 else f"one seed, > {factor:g}x"
    return {"checkpoint": checkpoint, "factor": factor, "rule": rule, "per_beta2": table,
            "unstable_without_correction": bool(unstable), "stable_with_correction": not corrected_worse_at,
            "corrected_worse_at": corrected_worse_at, "claim_holds": bool(unstable and not corrected_worse_at)}


def _ratio(a: float, b: float) -> float:
    """``a / b`` of two mean losses; inf when only ``a`` diverged."""
    return a / b if math.isfinite(a) else math.inf


def distinct_checkpoints(checkpoints: dict[str, int]) -> dict[str, int]:
    """The checkpoints at distinct iterations: ``late`` is dropped where it equals ``early`` (``--epochs 10``)."""
    seen, out = set(), {}
    for name, iteration in checkpoints.items():
        if iteration not in seen:
            seen.add(iteration)
            out[name] = iteration
    return out


def run(*, data_dir: Path | None = None, out: Path = Path("runs/bias-correction"), seed: int = 0, seeds: int = 1,
        quick: bool = False, epochs: int | None = None, progress: bool | None = None,
        loss_every: int | None = None, resume: bool = False) -> dict:
    """Runs both variants over the grid from ``seeds`` seeds; writes ``results.json`` and ``bias-correction.png``.

    ``epochs`` replaces the late budget (``epochs`` passes over the training images); the early
    checkpoint stays at the budget's (10 epochs, or the quick budget's), capped at the late one;
    where the two coincide, the verdict, the summary and the figure have the one checkpoint.
    ``results.json`` is rewritten after every grid point and the figure after each (seed, variant),
    so an interrupt keeps every point that finished; ``resume`` continues the run in ``out`` (same
    options) from its ``results.json``, training only the points it lacks (its ``wall_seconds``
    add up every part; resuming a complete run only judges and draws it again).
    """
    budget = QUICK if quick else FULL
    t0 = time.perf_counter()
    mnist = datasets.load_mnist(data_dir)
    x_train = mnist.train.x
    if budget.train_size is not None:
        x_train = x_train[np.sort(np.random.default_rng(seed).permutation(len(x_train))[: budget.train_size])]
    if epochs is not None:
        if epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {epochs}")
        late = epochs * (len(x_train) // budget.batch_size)
        budget = dataclasses.replace(budget, late=late, early=min(budget.early, late))
    every = loss_every if loss_every and loss_every > 1 else max(1, budget.late // 250)
    results = _setup(budget, x_train, seed, seeds, quick, every)
    if resume:
        results = _resumed(results, out)
    results["seconds"]["load"] = time.perf_counter() - t0
    t0 -= results.pop("wall_seconds", 0.0)  # a resumed run's wall time goes on from the interrupted one's
    runs, total = results["runs"], 2 * len(budget.points) * seeds
    disable = None if progress is None else not progress  # None: only on a terminal
    bar = tqdm(total=total, initial=len(runs), desc="bias-correction grid points", disable=disable, leave=False)
    try:
        for s in range(seed, seed + seeds):
            for corrected in (True, False):
                bar.set_postfix(seed=s, variant="with correction" if corrected else "without correction")
                _variant_runs(corrected, budget, x_train, s, bar, results, every, out, t0)
                results["complete"] = len(runs) == total
                if not results["complete"]:
                    save(results, out, plot)
    except KeyboardInterrupt as stop:
        raise RunInterrupted(f"bias-correction stopped with {len(runs)} of {total} grid points done, saved in {out}; "
                             f"continue with: adaptix-experiments run bias-correction --resume {out}",
                             signal_of(stop)) from None
    finally:
        bar.close()
    results["verdict"] = {c: verdict(runs, budget.beta2, c) for c in distinct_checkpoints(results["checkpoints"])}
    results["claim_holds"] = results["verdict"]["early"]["claim_holds"]
    results["wall_seconds"] = time.perf_counter() - t0
    return save(results, out, plot)


def _setup(budget: Budget, x_train: np.ndarray, seed: int, seeds: int, quick: bool, every: int) -> dict:
    """The ``results.json`` of a run before any grid point: the model, the grid, the budget; no runs yet."""
    return {
        "experiment": "bias-correction",
        "description": DESCRIPTION,
        "claim": CLAIM,
        "seed": seed,
        "seeds": list(range(seed, seed + seeds)),
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
        "seconds": {},
        "complete": False,  # true once every seed and variant ran; the verdict is given then
        "runs": [],
    }


def _variant_runs(corrected: bool, budget: Budget, x_train: np.ndarray, seed: int, bar, results: dict,
                  every: int, out: Path, t0: float) -> None:
    """Every grid point of one variant from ``seed`` that ``results`` lacks, appended to it as it ends.

    ``results.json`` is rewritten after each point; the seconds are added to ``results``.
    """
    done = {r["grid_point"] for r in results["runs"] if r["seed"] == seed and r["bias_correction"] == corrected}

    def keep(j: int, losses: np.ndarray) -> None:
        b1, b2, lr = budget.points[j]
        if results["initial_loss"] is None:
            results["initial_loss"] = float(losses[0])
        results["runs"].append({
            "beta1": b1, "beta2": b2, "learning_rate": lr, "bias_correction": corrected, "seed": seed,
            "grid_point": j,
            "loss": {"early": checkpoint_loss(losses, budget.early), "late": checkpoint_loss(losses, budget.late)},
            "diverged_at": _first_nonfinite(losses),
            "curve": _block_means(losses, every),
        })
        results["wall_seconds"] = time.perf_counter() - t0
        write_results(results, out / "results.json")

    compile_s, total_s = train_grid(functools.partial(make_optimizer, corrected), budget, x_train, seed=seed, bar=bar,
                                    skip=frozenset(done), on_point=keep)
    timing = results["seconds"].setdefault("with correction" if corrected else "without correction",
                                           {"compile": 0.0, "total": 0.0})
    timing["compile"] += compile_s
    timing["total"] += total_s


def _resumed(fresh: dict, out: Path) -> dict:
    """``fresh`` (the setup of this run) with the grid points and seconds of the interrupted run in ``out``."""
    path = Path(out) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"--resume: {out} holds no results.json of bias-correction to continue")
    before = from_json(json.loads(path.read_text()))
    setup = ("model", "beta1", "beta2", "step_sizes", "checkpoints", "seeds", "train_size")
    if any(before.get(k) != fresh[k] for k in setup):
        raise ValueError(f"--resume: the run in {out} has another grid or budget than this one")
    return {**fresh, "runs": before["runs"], "seconds": before["seconds"], "initial_loss": before["initial_loss"],
            "wall_seconds": before.get("wall_seconds", 0.0)}


def run_experiment(experiment, options: RunOptions) -> dict:
    """The command line's entry point (see ``registry.Experiment.runner``)."""
    del experiment
    return run(data_dir=options.data_dir, out=options.out, seed=options.seed, seeds=options.seeds,
               quick=options.quick, epochs=options.epochs, progress=options.progress, loss_every=options.loss_every,
               resume=options.resume is not None)


def from_json(results: dict) -> dict:
    """A ``results.json`` read back, with its ``null`` losses (diverged) as ``inf`` again."""
    results = dict(results)
    results["runs"] = [{**r, "loss": {k: math.inf if v is None else v for k, v in r["loss"].items()}}
                       for r in results["runs"]]
    return results


def summary(results: dict) -> str:
    """Loss at both checkpoints per grid point, with and without correction."""
    checkpoints = distinct_checkpoints(results["checkpoints"])
    at = " and ".join(str(i) for i in checkpoints.values())
    lines = [f"bias-correction: {results['model']}, {results['train_size']} train images, batch "
             f"{results['batch_size']}, checkpoint{'s' if len(checkpoints) > 1 else ''} at {at} iterations, "
             f"{_seeds_text(results)}"]
    loss = {c: {k: mean_loss(v) for k, v in losses_by_point(results["runs"], c).items()} for c in checkpoints}

    def cell(v: float) -> str:
        return "diverged" if not math.isfinite(v) else f"{v:.1f}"

    rows = [["beta2", "beta1", "step size", *(h for c in checkpoints for h in (f"{c}: with", "without"))]]
    for b2 in results["beta2"]:
        for b1 in results["beta1"]:
            for lr in results["step_sizes"]:
                cells = [cell(loss[c][(b1, b2, lr, corrected)]) for c in checkpoints for corrected in (True, False)]
                rows.append([f"{b2:g}", f"{b1:g}", f"{lr:.3g}", *cells])
    lines.append(format_table(rows, left_columns=0))
    for c, v in results["verdict"].items():
        per = ", ".join(f"beta2={b2}: {d['worse']}/{d['points']} worse" for b2, d in v["per_beta2"].items())
        rule = v.get("rule", f"one seed, > {v['factor']:g}x")
        lines.append(f"{c}: grid points where no correction is worse ({rule}): {per}")
    lines.append("seconds: " + ", ".join(
        f"{k} {v:.1f}" if not isinstance(v, dict) else f"{k} {v['total']:.1f} (compile {v['compile']:.1f})"
        for k, v in results["seconds"].items()))
    v = results["verdict"]["early"]
    lines.append(f"early checkpoint: unstable without correction at beta2={max(results['beta2']):g}: "
                 f"{'yes' if v['unstable_without_correction'] else 'no'}; stable with correction for every beta2: "
                 f"{'yes' if v['stable_with_correction'] else 'no'}; claim reproduced: "
                 f"{'yes' if results['claim_holds'] else 'no'}")
    if v.get("corrected_worse_at"):
        lines.append(f"  with correction, beta2={max(results['beta2']):g} is worse than {min(results['beta2']):g} at: "
                     + ", ".join(f"beta1={p['beta1']:g} step {p['step_size']:.3g} ({p['ratio']:.3g}x)"
                                 for p in v["corrected_worse_at"]))
    return "\n".join(lines)


def _seeds_text(results: dict) -> str:
    seeds = results.get("seeds") or [results["seed"]]
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]} (means)"


def plot(results: dict, path: Path) -> None:
    """Figure 4 of the paper: loss against the step size (log axis), one panel per beta2, a row per checkpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    beta2, checkpoints = results["beta2"], distinct_checkpoints(results["checkpoints"])
    rows = len(checkpoints)
    fig, axes = plt.subplots(rows, len(beta2), figsize=(max(7.2, 3.6 * len(beta2)), 0.4 + 3.1 * rows), dpi=110,
                             squeeze=False)
    by_seed = {c: losses_by_point(results["runs"], c) for c in checkpoints}
    loss = {c: {k: mean_loss(v) for k, v in by_point.items()} for c, by_point in by_seed.items()}
    values = [v for by_point in loss.values() for v in by_point.values()]
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
                    x = np.array(sorted(lr for b1_, b2_, lr, c in loss[name] if (b1_, b2_, c) == (b1, b2, corrected)))
                    y = np.array([loss[name][(b1, b2, lr, corrected)] for lr in x])
                    diverged, above = ~np.isfinite(y), np.isfinite(y) & (y > ceiling)
                    y = np.where(diverged | above, ceiling, y)
                    color, ls = styles.get((corrected, b1), ("tab:gray", ":"))
                    label = f"{'with' if corrected else 'no'} correction, β1={b1:g}"
                    ax.plot(x, y, color=color, ls=ls, marker="o", ms=3, lw=1.3, label=label)
                    seeds = [by_seed[name][(b1, b2, lr, corrected)] for lr in x]
                    if any(len(v) > 1 for v in seeds):  # mean ± s.d. where the seeds trained, on the chart
                        sd = np.array([np.std(v, ddof=1) if len(v) > 1 and np.all(np.isfinite(v)) else np.nan
                                       for v in seeds])
                        shown = np.isfinite(sd) & ~above
                        ax.fill_between(x, np.where(shown, y - sd, np.nan), np.where(shown, y + sd, np.nan),
                                        color=color, alpha=0.2, lw=0)
                    ax.plot(x[diverged], y[diverged], "x", color=color, ms=8, mew=2)
                    ax.plot(x[above], y[above], "^", color=color, ms=7)
            epochs = iteration / (results["train_size"] // results["batch_size"])
            ax.set_title(f"β2={b2:g}, after {iteration} iterations ({epochs:.3g} epochs, {name})", fontsize=8)
            ax.set_ylim(low * 0.95, ceiling * 1.04)
            ax.grid(alpha=0.3, which="both")
            ax.set_xscale("log")
            readable_log_axis(ax, "x")
            ax.set_xlabel("step size α")
            ax.set_ylabel("training loss (−ELBO, nats)")
    axes[0, 0].legend(fontsize=6.5)
    fitted_title(fig, f"Adam with (red) and without (green) bias correction; {results['model']}; "
                 f"{_seeds_text(results)}; × = diverged, ^ = off the chart", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
