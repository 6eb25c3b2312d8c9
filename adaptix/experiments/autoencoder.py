"""De, Mukherjee & Ullah (2018): Adam with beta1 = 0.99 against a tuned Nesterov method on an MNIST autoencoder.

The claim (arXiv:1807.06766, "Convergence guarantees for RMSProp and ADAM in non-convex
optimization and an empirical comparison to Nesterov acceleration", ICLR 2019): on fully
connected ReLU autoencoders trained on MNIST, Adam with a very high momentum parameter,
``beta1 = 0.99``, reaches a lower training loss than Nesterov's accelerated gradient (NAG) tuned
over its step size and momentum, while at the common ``beta1 = 0.9`` NAG sometimes does better;
the paper adds that with minibatches the advantage needs large enough nets.

Three arms, each trained from the same seeds (initialisation and minibatch order):

* ``adam-b1-0.99``: ``adaptix.adam(lr, b1=0.99, b2=0.999, eps=xi)``, the claim's;
* ``adam-b1-0.9``: the same with the default ``b1 = 0.9``, a reference arm;
* ``nag``: ``adaptix.sgd(lr, momentum=mu, nesterov=True)``.

Every arm is tuned as :mod:`~adaptix.experiments.tuning` prescribes: a log grid of at least 7
step sizes per variant (Adam's ``xi`` in {1e-8, 1e-4}, NAG's momentum in {0.9, 0.99}), each point
trained from every seed for ``tune_fraction`` of the run (20 % here, at least the project's 10 %)
and scored by the mean minibatch loss over the last tenth of that run (inf if a seed diverged),
averaged over the seeds; a variant whose best step size is an edge of its grid gets the next
point on that side (the grid's own ratio, at most :data:`MAX_EXTENSIONS` times); the best
(variant, step size) of the arm trains for the whole run. The verdict is the project's rule
(:mod:`~adaptix.experiments.verdicts`) on the loss over the whole training set after every epoch:
``adam-b1-0.99 < nag`` is judged; ``adam-b1-0.9`` against ``nag`` and against ``adam-b1-0.99``
is measured and reported (the same rule, no claim), and so is the test loss.

All lanes of a unit of work (an arm's grid x seeds, an arm's seeds) train as one compiled
program: one ``jit`` of a ``vmap``-ped ``lax.scan``, with the optimizer's kind and
hyperparameters traced per lane, so the tuning of the three arms compiles once.
``results.json`` and ``autoencoder-betas.png`` are rewritten after every unit, and an interrupt
(SIGINT/SIGTERM) keeps what finished and raises
:class:`~adaptix.experiments.interrupts.RunInterrupted`.

The paper's setup, as far as it was checked: the search tool returned the abstract and summaries
only (autoencoders on MNIST; NAG tuned over step size and momentum; Adam's sensitivity to
``beta1``; the shift ``xi`` called important; ADAM at ``beta1 = 0.99`` better in training and
test loss, "with large enough nets if using mini-batches"). The rest is recalled, not verified
against the text: fully connected ReLU autoencoders with hidden layers of 1000 units (3 and 5
hidden layers), squared reconstruction loss, full-batch runs and minibatches of 100, NAG's
momentum in {0.9, 0.99}, ``beta2 = 0.999``, ``xi`` tuned among small powers of ten, training
and test loss against iterations, one run per setting.

Deviations from the paper (the default, CPU-affordable budget :data:`DEFAULT`):

* the net is 784-256-128-256-784 (ReLU, linear output, He-normal weights, zero biases), not
  layers of 1000 units;
* 10,000 of the 60,000 training images (a fixed random subset), 2,000 of the 10,000 test images;
* 30 epochs of 100 minibatches of 100 (3,000 iterations), not the paper's longer runs, and no
  full-batch runs;
* the loss is the squared error summed over the 784 pixels, averaged over images;
* ``xi`` is searched over {1e-8, 1e-4} only, the step sizes over 7 points a half-decade apart per
  variant (Adam 10^-4.5 .. 10^-1.5, NAG 10^-5 .. 10^-2, extended at a winning edge), each point
  trained 6 epochs (a fifth of the run) from the 3 seeds, by the tuning protocol above (the
  paper's own grids are not known here);
* the verdict is the project's paired rule over 3 seeds on the per-epoch training loss, not a
  visual reading of one run.

The paper-size run, for a GPU (all 60,000 images, 1000-unit layers, three seeds)::

    python -c "from pathlib import Path; from adaptix.experiments import autoencoder as a; \\
        a.run(budget=a.PAPER, data_dir=Path('../shared/data'), out=Path('runs/autoencoder-betas-paper'))"

``--quick`` trains a 64-32-16-32-64 autoencoder on scikit-learn's bundled 8x8 digits (no data
needed) for 6 epochs with a 3-point grid.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adaptix
from adaptix.experiments.figures import fitted_title, readable_log_axis, whole_number_ticks
from adaptix.experiments.interrupts import RunInterrupted, signal_of
from adaptix.experiments.options import RunOptions
from adaptix.experiments.results import beyond_edge, format_table, mean_score, mean_sd, save
from adaptix.experiments.verdicts import MIN_SEEDS, VERDICT_RULE, Claim, describe_verdicts, measure, verdicts

NAME = "autoencoder-betas"
CLAIM = ("De, Mukherjee & Ullah (2018): on MNIST autoencoders, Adam with beta1 = 0.99 reaches a lower training loss "
         "than Nesterov's method tuned over step size and momentum (at beta1 = 0.9 NAG can do better)")
DESCRIPTION = ("Autoencoder 784-256-128-256-784 (ReLU) on 10,000 MNIST images, minibatch 100: Adam beta1 = 0.99 and "
               "0.9 vs NAG, every arm tuned (step size x xi or momentum); --quick: 8x8 digits")
#: The arms: the claim's Adam, the default Adam, and NAG.
ARMS = ("adam-b1-0.99", "adam-b1-0.9", "nag")
#: The claim, judged by the project's rule.
CLAIMS = (Claim("adam-b1-0.99", "<", "nag"),)
#: Measured and reported under the same rule, without a claim of the paper to judge.
REFERENCE = (("adam-b1-0.9", "nag"), ("adam-b1-0.99", "adam-b1-0.9"))
#: How often a variant's grid is extended past an edge that won (as :mod:`~adaptix.experiments.tuning`).
MAX_EXTENSIONS = 3
ADAM, NAG = 0, 1  # the optimizer kind of a lane


@dataclass(frozen=True)
class Variant:
    """One optimizer setting an arm's tuning searches: its kind, ``beta`` (Adam's beta1 or NAG's momentum), ``eps``."""

    kind: int
    beta: float
    eps: float
    label: str

    def transformation(self, learning_rate) -> adaptix.Transformation:
        if self.kind == ADAM:
            return adaptix.adam(learning_rate, b1=self.beta, b2=0.999, eps=self.eps)
        return adaptix.sgd(learning_rate, momentum=self.beta, nesterov=True)


def _adam(b1: float, eps: float) -> Variant:
    return Variant(ADAM, b1, eps, f"xi={eps:g}")


def _nag(momentum: float) -> Variant:
    return Variant(NAG, momentum, 0.0, f"momentum={momentum:g}")


#: arm -> the variants its tuning searches (the best (variant, step size) trains).
VARIANTS: dict[str, tuple[Variant, ...]] = {
    "adam-b1-0.99": (_adam(0.99, 1e-8), _adam(0.99, 1e-4)),
    "adam-b1-0.9": (_adam(0.9, 1e-8), _adam(0.9, 1e-4)),
    "nag": (_nag(0.9), _nag(0.99)),
}


def log_grid(lo: float, hi: float, n: int) -> tuple[float, ...]:
    """``n`` step sizes evenly spaced in ``log10`` from ``10**lo`` to ``10**hi``, to 3 significant digits."""
    return tuple(float(f"{v:.3g}") for v in np.logspace(lo, hi, n))


@dataclass(frozen=True)
class Budget:
    """The model, the data, the length of the runs and the step-size grids."""

    hidden: tuple[int, ...]
    epochs: int
    batch_size: int
    grids: dict[str, tuple[float, ...]]  # arm -> its step sizes (every variant of the arm searches them)
    tune_fraction: float = 0.2
    train_size: int | None = None  # None: every training image
    test_size: int | None = None
    dataset: str = "mnist"  # or "digits": scikit-learn's bundled 8x8 digits
    # grid points (each with every seed) per compiled program of the tuning; 1 keeps the tuning's programs the
    # shape of the training's (the seeds), so everything compiles once: as fast per lane on a CPU, where lanes
    # run one after the other anyway; a GPU wants more
    points_per_program: int = 1

    def tune_epochs(self, epochs: int | None = None) -> int:
        """Epochs per grid point: ``tune_fraction`` of the run's, at least one."""
        return max(1, math.ceil(self.tune_fraction * (epochs or self.epochs) - 1e-9))


#: The CPU-affordable default (see the module's list of deviations).
DEFAULT = Budget(hidden=(256, 128, 256), epochs=30, batch_size=100, train_size=10_000, test_size=2_000,
                 grids={"adam-b1-0.99": log_grid(-4.5, -1.5, 7), "adam-b1-0.9": log_grid(-4.5, -1.5, 7),
                        "nag": log_grid(-5.0, -2.0, 7)})
#: Closer to the paper, for a GPU: 1000-unit layers, every image, a longer run.
PAPER = replace(DEFAULT, hidden=(1000, 1000, 1000), epochs=100, train_size=None, test_size=None,
                tune_fraction=0.1, points_per_program=7)
#: ``--quick``: a small net on the bundled digits, a 3-point grid.
QUICK = Budget(hidden=(32, 16, 32), epochs=6, batch_size=32, dataset="digits", tune_fraction=1 / 3,
               grids={arm: (1e-3, 1e-2, 1e-1) for arm in ARMS})
#: Seeds when ``--seeds`` is not given (1 is read as not given: the rule needs two or more).
DEFAULT_SEEDS = 3


# ---------------------------------------------------------------------------------------------
# data and model
# ---------------------------------------------------------------------------------------------


def load(budget: Budget, data_dir: Path | None) -> tuple[np.ndarray, np.ndarray, str]:
    """Training and test images (float32 in [0, 1], one row each) and the dataset's name.

    The subsets are fixed (drawn with seed 0, whatever the run's seeds), so every seed sees the same images.
    """
    if budget.dataset == "digits":
        from sklearn.datasets import load_digits

        x = (load_digits().data / 16.0).astype(np.float32)
        x = x[np.random.default_rng(0).permutation(len(x))]
        cut = int(0.8 * len(x))
        return x[:cut], x[cut:], "digits"
    from adaptix.experiments import data as datasets

    mnist = datasets.load_mnist(data_dir)
    pick = lambda x, n: x if n is None or n >= len(x) else x[np.sort(np.random.default_rng(0).permutation(len(x))[:n])]
    return pick(mnist.train.x, budget.train_size), pick(mnist.test.x, budget.test_size), mnist.name


def init_params(key: jax.Array, sizes: tuple[int, ...]) -> list[tuple[jax.Array, jax.Array]]:
    """He-normal weights (s.d. ``sqrt(2 / fan_in)``) and zero biases for the layers ``sizes[0] -> ... -> sizes[-1]``."""
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        key, k = jax.random.split(key)
        params.append((jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a), jnp.zeros((b,))))
    return params


def reconstruct(params, x: jax.Array) -> jax.Array:
    """ReLU on every hidden layer, a linear output."""
    for i, (w, b) in enumerate(params):
        x = x @ w + b
        if i < len(params) - 1:
            x = jax.nn.relu(x)
    return x


def loss(params, x: jax.Array) -> jax.Array:
    """Squared reconstruction error summed over the pixels, averaged over the images."""
    return jnp.mean(jnp.sum((reconstruct(params, x) - x) ** 2, axis=-1))


def _whole_set_loss(params, x: jax.Array, chunk: int) -> jax.Array:
    """:func:`loss` over all of ``x`` (its length a multiple of ``chunk``), ``chunk`` images at a time."""
    per_chunk = jax.lax.map(lambda xs: loss(params, xs), x.reshape(-1, chunk, x.shape[-1]))
    return per_chunk.mean()


def _chunk(n: int, most: int = 1000) -> int:
    """The largest divisor of ``n`` not above ``most``."""
    return max(d for d in range(1, min(n, most) + 1) if n % d == 0)


def minibatches(seed: int, n: int, batch_size: int, epochs: int) -> np.ndarray:
    """``(epochs, steps, batch_size)`` image indices: a fresh permutation every epoch, the incomplete batch dropped."""
    rng = np.random.default_rng(seed)
    steps = n // batch_size
    return np.stack([rng.permutation(n)[: steps * batch_size].reshape(steps, batch_size) for _ in range(epochs)])


# ---------------------------------------------------------------------------------------------
# training: every lane of a unit of work in one compiled program
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lane:
    """One training run: a variant, a step size and a seed."""

    variant: Variant
    learning_rate: float
    seed: int


def _lane_update(kind, lr, beta, eps):
    """The transformation of a lane whose kind and hyperparameters are traced: Adam's and NAG's updates, one kept.

    Both run on every lane (under ``vmap`` a branch would compute both anyway); the optimizer's
    arithmetic is a small part of a step next to the matrix products.
    """
    adam = adaptix.adam(lr, b1=beta, b2=0.999, eps=eps)
    nag = adaptix.sgd(lr, momentum=beta, nesterov=True)

    def init(params):
        return adam.init(params), nag.init(params)

    def update(grads, state, params):
        ua, sa = adam.update(grads, state[0], params)
        un, sn = nag.update(grads, state[1], params)
        return jax.tree.map(lambda a, b: jnp.where(kind == ADAM, a, b), ua, un), (sa, sn)

    return init, update


@functools.partial(jax.jit, static_argnames=("sizes",))
def _init_lanes(hyper, keys, *, sizes: tuple[int, ...]):
    """Every lane's initial parameters (from its seed's key) and optimizer state."""

    def one(h, key):
        init, _ = _lane_update(*h)
        params = init_params(key, sizes)
        return params, init(params)

    return jax.vmap(one)(hyper, keys)


@jax.jit
def _epoch(hyper, carry, order, x_train, x_test, evaluate):
    """One epoch of every lane: ``(carry, minibatch losses (lanes, steps), (train loss, test loss) (lanes,) each)``.

    ``evaluate`` is one flag for all lanes (not mapped), so ``lax.cond`` skips the whole-set
    losses (NaN then) where it is false: the tuning's epochs and the training's share one program.
    """
    train_chunk, test_chunk = _chunk(x_train.shape[0]), _chunk(x_test.shape[0])

    def one(h, carry, order_e):
        _, update = _lane_update(*h)

        def step(carry, idx):
            params, state = carry
            value, grads = jax.value_and_grad(loss)(params, x_train[idx])
            updates, state = update(grads, state, params)
            return (optax.apply_updates(params, updates), state), value

        carry, values = jax.lax.scan(step, carry, order_e)
        evaluated = jax.lax.cond(
            evaluate,
            lambda p: (_whole_set_loss(p, x_train, train_chunk), _whole_set_loss(p, x_test, test_chunk)),
            lambda p: (jnp.float32(jnp.nan), jnp.float32(jnp.nan)),
            carry[0])
        return carry, values, evaluated

    return jax.vmap(one, in_axes=(0, 0, 0))(hyper, carry, order)


def train(lanes: list[Lane], x_train: np.ndarray, x_test: np.ndarray, hidden: tuple[int, ...], batch_size: int,
          epochs: int, evaluate: bool, group: int) -> dict:
    """Trains ``lanes``, ``group`` at a time as one program (the last group padded with copies of its first lane,
    so that every program has one shape and compiles once).

    Returns ``{"iteration_loss": (lanes, epochs * steps), "epoch_train_loss", "epoch_test_loss": (lanes, epochs)
    or None without evaluate, "seconds"}`` (NumPy arrays).
    """
    start = time.perf_counter()
    n, dim = x_train.shape
    sizes = (dim, *hidden, dim)
    x_train_d, x_test_d = jnp.asarray(x_train), jnp.asarray(x_test)
    orders = {s: minibatches(s, n, batch_size, epochs) for s in {lane.seed for lane in lanes}}
    values, train_loss, test_loss = [], [], []
    for first in range(0, len(lanes), group):
        chunk = lanes[first:first + group]
        chunk = chunk + [chunk[0]] * (group - len(chunk))
        hyper = (jnp.asarray([lane.variant.kind for lane in chunk], jnp.int32),
                 jnp.asarray([lane.learning_rate for lane in chunk], jnp.float32),
                 jnp.asarray([lane.variant.beta for lane in chunk], jnp.float32),
                 jnp.asarray([lane.variant.eps for lane in chunk], jnp.float32))
        keys = jax.vmap(jax.random.key)(jnp.asarray([lane.seed for lane in chunk], jnp.uint32))
        carry = _init_lanes(hyper, keys, sizes=sizes)
        per_epoch = []
        for e in range(epochs):
            order = jnp.asarray(np.stack([orders[lane.seed][e] for lane in chunk]), jnp.int32)
            carry, v, evaluated = _epoch(hyper, carry, order, x_train_d, x_test_d, evaluate)
            per_epoch.append((np.asarray(v, np.float64), *(np.asarray(x, np.float64) for x in evaluated)))
        kept = len(lanes[first:first + group])
        values.append(np.concatenate([p[0] for p in per_epoch], axis=1)[:kept])
        train_loss.append(np.stack([p[1] for p in per_epoch], axis=1)[:kept])
        test_loss.append(np.stack([p[2] for p in per_epoch], axis=1)[:kept])
    out = {"iteration_loss": np.concatenate(values), "epoch_train_loss": None, "epoch_test_loss": None}
    if evaluate:
        out["epoch_train_loss"], out["epoch_test_loss"] = np.concatenate(train_loss), np.concatenate(test_loss)
    out["seconds"] = time.perf_counter() - start
    return out


# ---------------------------------------------------------------------------------------------
# tuning
# ---------------------------------------------------------------------------------------------


def tail_score(iteration_loss: np.ndarray) -> float:
    """Mean minibatch loss over the last tenth of a run; inf if any loss of the run is not finite."""
    if not np.all(np.isfinite(iteration_loss)):
        return math.inf
    return float(np.mean(iteration_loss[-max(1, len(iteration_loss) // 10):]))


def _grid_key(variant: Variant, lr: float) -> str:
    return f"{variant.label}@{lr:g}"


def tune_arm(arm: str, budget: Budget, seeds: tuple[int, ...], x_train, x_test, tune_epochs: int) -> dict:
    """The arm's tuning record: every (variant, step size) searched with each seed's score and the mean, the
    winner, the extensions made and the seconds.

    Round 0 trains every variant over the arm's grid; each further round adds, for every variant
    whose best step size is an edge of its points, the next point on that side.
    """
    start = time.perf_counter()
    variants = VARIANTS[arm]
    scores: dict[Variant, dict[float, list[float]]] = {v: {} for v in variants}
    pending = {v: list(budget.grids[arm]) for v in variants}
    rounds = 0
    while pending:
        lanes = [Lane(v, lr, s) for v, lrs in pending.items() for lr in lrs for s in seeds]
        trained = train(lanes, x_train, x_test, budget.hidden, budget.batch_size, tune_epochs, evaluate=False,
                        group=budget.points_per_program * len(seeds))
        for lane, curve in zip(lanes, trained["iteration_loss"]):
            scores[lane.variant].setdefault(lane.learning_rate, []).append(tail_score(curve))
        rounds += 1
        pending = {}
        if rounds > MAX_EXTENSIONS:
            break
        for v in variants:
            new = beyond_edge({lr: mean_score(s)[0] for lr, s in scores[v].items()})
            if new is not None and new not in scores[v]:
                pending[v] = [new]
    table = {}
    for v in variants:
        for lr in sorted(scores[v]):
            mean, sd = mean_score(scores[v][lr])
            table[_grid_key(v, lr)] = {"variant": v.label, "learning_rate": lr, "mean": mean, "sd": sd,
                                       "per_seed": scores[v][lr]}
    best_key = min(table, key=lambda k: table[k]["mean"])
    best = next(v for v in variants if v.label == table[best_key]["variant"])
    return {
        "arm": arm,
        "variants": [asdict(v) for v in variants],
        "grid": list(budget.grids[arm]),
        "scores": table,
        "extensions": rounds - 1,
        "winner": {"variant": asdict(best), "learning_rate": table[best_key]["learning_rate"],
                   "score": table[best_key]["mean"]},
        "winner_at_edge": {v.label: beyond_edge({lr: mean_score(s)[0] for lr, s in scores[v].items()}) is not None
                           for v in variants},
        "seconds": time.perf_counter() - start,
    }


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------


def _arm_record(arm: str, variant: Variant, lr: float, seeds: tuple[int, ...], trained: dict) -> dict:
    """One arm's record: the mean curves and their s.d. over seeds, each seed's curves (what the rule reads)."""
    per_seed = []
    for i, seed in enumerate(seeds):
        curves = {k: trained[k][i].tolist() for k in ("epoch_train_loss", "epoch_test_loss")}
        per_seed.append({"seed": seed, **curves, "diverged": not np.all(np.isfinite(trained["iteration_loss"][i]))})
    record = {"arm": arm, "optimizer": arm, "variant": asdict(variant), "learning_rate": lr, "seeds": list(seeds)}
    for key in ("epoch_train_loss", "epoch_test_loss"):
        record[key], record[f"{key}_sd"] = mean_sd([p[key] for p in per_seed])
    steps = trained["iteration_loss"].shape[1] // len(record["epoch_train_loss"])
    epoch_means = trained["iteration_loss"].reshape(len(seeds), -1, steps).mean(axis=2)
    record["epoch_minibatch_loss"], record["epoch_minibatch_loss_sd"] = mean_sd(epoch_means.tolist())
    record["diverged"] = any(p["diverged"] for p in per_seed)
    record["seconds"] = trained["seconds"]
    record["per_seed"] = per_seed
    return record


def comparisons(runs: list[dict]) -> dict:
    """The claim's verdict and the reference measurements, on the training loss and (no claim) the test loss."""
    by_arm = {r["arm"]: r for r in runs}
    as_test = lambda r: {**r, "per_seed": [{**p, "epoch_train_loss": p["epoch_test_loss"]} for p in r["per_seed"]]}
    pairs = [(c.a, c.b) for c in CLAIMS] + list(REFERENCE)
    present = [(a, b) for a, b in pairs if a in by_arm and b in by_arm]
    return {
        "verdicts": verdicts(CLAIMS, runs),
        "reference": [{"comparison": f"{a} vs {b}", **measure(by_arm[a], by_arm[b])}
                      for a, b in REFERENCE if (a, b) in present],
        "test_loss": [{"comparison": f"{a} vs {b}", **measure(as_test(by_arm[a]), as_test(by_arm[b]))}
                      for a, b in present],
    }


def run(*, budget: Budget | None = None, data_dir: Path | None = None, out: Path = Path(f"runs/{NAME}"),
        seed: int = 0, seeds: int = DEFAULT_SEEDS, quick: bool = False, epochs: int | None = None,
        progress: bool | None = None) -> dict:
    """Tunes and trains the three arms; writes ``results.json`` and ``autoencoder-betas.png`` into ``out``.

    ``budget`` defaults to :data:`QUICK` with ``quick``, else :data:`DEFAULT`; ``epochs`` replaces its
    length (the tuning runs ``tune_fraction`` of it). Both files are rewritten after each arm's
    tuning and training (``complete`` false until the end).
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    budget = budget or (QUICK if quick else DEFAULT)
    if epochs is not None:
        budget = replace(budget, epochs=epochs)
    if seeds < MIN_SEEDS:
        raise ValueError(f"--seeds: {NAME} needs {MIN_SEEDS} or more seeds for its verdict, got {seeds}")
    seed_list = tuple(range(seed, seed + seeds))
    x_train, x_test, dataset = load(budget, data_dir)
    tune_epochs = budget.tune_epochs()
    steps = len(x_train) // budget.batch_size
    dim = x_train.shape[1]
    results = {
        "experiment": NAME, "description": DESCRIPTION, "claim": CLAIM, "quick": quick,
        "model": f"autoencoder {'-'.join(map(str, (dim, *budget.hidden, dim)))}, ReLU hidden layers, linear output, "
                 "He-normal weights, zero biases",
        "loss": "squared reconstruction error summed over the pixels, mean over images",
        "dataset": dataset, "train_size": len(x_train), "test_size": len(x_test),
        "batch_size": budget.batch_size, "steps_per_epoch": steps, "epochs": budget.epochs,
        "tune_epochs": tune_epochs, "tune_fraction": budget.tune_fraction,
        "tuning_rule": "each (variant, step size) trained tune_epochs from every seed, scored by the mean minibatch "
                       "loss over the last tenth (inf if a seed diverged), averaged over seeds; a variant's grid "
                       f"extended past a winning edge (at most {MAX_EXTENSIONS} times); the arm's best trains",
        "budget": {**asdict(budget), "grids": {k: list(v) for k, v in budget.grids.items()}},
        "variants": {arm: [asdict(v) for v in vs] for arm, vs in VARIANTS.items()},
        "seed": seed, "seeds": list(seed_list), "verdict_rule": VERDICT_RULE,
        "tuning": {}, "runs": [], "verdicts": None, "reference": None, "test_loss": None,
        "seconds": {"load": time.perf_counter() - t0}, "complete": False,
    }
    disable = None if progress is None else not progress
    units = [("tune", arm) for arm in ARMS] + [("train", arm) for arm in ARMS]
    try:
        with tqdm(total=len(units), desc=NAME, disable=disable, leave=False) as bar:
            for what, arm in units:
                bar.set_postfix(unit=f"{what} {arm}")
                if what == "tune":
                    results["tuning"][arm] = tune_arm(arm, budget, seed_list, x_train, x_test, tune_epochs)
                else:
                    won = results["tuning"][arm]["winner"]
                    variant, lr = Variant(**won["variant"]), won["learning_rate"]
                    trained = train([Lane(variant, lr, s) for s in seed_list], x_train, x_test, budget.hidden,
                                    budget.batch_size, budget.epochs, evaluate=True, group=len(seed_list))
                    results["runs"].append(_arm_record(arm, variant, lr, seed_list, trained))
                results["wall_seconds"] = time.perf_counter() - t0
                bar.update()
                if len(results["runs"]) < len(ARMS):
                    save(results, out, plot)
    except KeyboardInterrupt as stop:
        done = len(results["tuning"]) + len(results["runs"])
        if done:
            save(results, out, plot)
        raise RunInterrupted(f"{NAME} stopped after {done} of {len(units)} units (tuning or training an arm); those "
                             f"are saved in {out}; run it again to redo the whole", signal_of(stop)) from None
    results.update(comparisons(results["runs"]))
    results["seconds"].update({f"tune {arm}": t["seconds"] for arm, t in results["tuning"].items()})
    results["seconds"].update({f"train {r['arm']}": r["seconds"] for r in results["runs"]})
    results["complete"] = True
    results["wall_seconds"] = time.perf_counter() - t0
    return save(results, out, plot)


def run_experiment(experiment, options: RunOptions) -> dict:
    """The command line's entry point (see ``registry.Experiment.runner``); ``--seeds 1`` (the default) means 3."""
    del experiment
    return run(data_dir=options.data_dir, out=options.out, seed=options.seed,
               seeds=options.seeds if options.seeds > 1 else DEFAULT_SEEDS, quick=options.quick,
               epochs=options.epochs, progress=options.progress)


# ---------------------------------------------------------------------------------------------
# summary and figure
# ---------------------------------------------------------------------------------------------


def _pm(record: dict, key: str, i: int = -1) -> str:
    value, sd = record[key][i], record[f"{key}_sd"][i]
    if value is None or not math.isfinite(value):
        return "diverged"
    return f"{value:.3f} ± {sd:.3f}" if sd is not None and math.isfinite(sd) else f"{value:.3f}"


def _winner_text(tuning: dict) -> str:
    won = tuning["winner"]
    kind = "adam" if won["variant"]["kind"] == ADAM else "nag"
    setting = f"xi {won['variant']['eps']:g}" if kind == "adam" else f"momentum {won['variant']['beta']:g}"
    return f"lr {won['learning_rate']:g}, {setting}"


def summary(results: dict) -> str:
    """Per arm: the tuned setting, the final training and test loss (mean ± s.d. over seeds); then the verdicts."""
    seeds = results["seeds"]
    head = (f"{NAME}: {results['model']}; {results['train_size']} {results['dataset']} training images, batch "
            f"{results['batch_size']}, {results['epochs']} epochs, tuning {results['tune_epochs']} epochs per point, "
            f"seeds {seeds[0]}-{seeds[-1]}")
    rows = [("arm", "tuned", "train loss", "test loss", "mean train loss over epochs")]
    for r in results["runs"]:
        area = np.mean(r["epoch_train_loss"]) if not r["diverged"] else math.inf
        rows.append((r["arm"], _winner_text(results["tuning"][r["arm"]]), _pm(r, "epoch_train_loss"),
                     _pm(r, "epoch_test_loss"), f"{area:.3f}"))
    lines = [head, format_table(rows), *describe_verdicts(results.get("verdicts") or [])]
    for v in (results.get("reference") or []) + [dict(t, comparison=f"test loss: {t['comparison']}")
                                                   for t in results.get("test_loss") or []]:
        if v["measured"] is None:
            lines.append(f"{v['comparison']}: no measurement ({v.get('why', '')})")
        else:
            a, _, b = v["comparison"].rpartition(": ")[2].partition(" vs ")
            lines.append(f"{v['comparison']}: measured {a} {v['measured']} {b}, mean d = {v['mean_d']:+.4g} ± "
                         f"{v['sd_d']:.2g} (s.d., {v['seeds']} seeds, {v['epochs']} epochs), no claim")
    return "\n".join(lines)


COLORS = {"adam-b1-0.99": "tab:red", "adam-b1-0.9": "tab:orange", "nag": "tab:blue"}


def plot(results: dict, path: Path) -> None:
    """Left: the training loss (whole training set) after each epoch, mean over seeds in a ±1 s.d. band;
    middle: the same on the test images; right: the tuning scores against the step size, one curve per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), dpi=110)
    for ax, key, title in ((axes[0], "epoch_train_loss", "training loss (whole training set)"),
                           (axes[1], "epoch_test_loss", "test loss")):
        for r in results["runs"]:
            curves = np.asarray([[np.nan if v is None else v for v in p[key]] for p in r["per_seed"]], float)
            mean, sd = curves.mean(axis=0), curves.std(axis=0, ddof=1)
            x = np.arange(1, len(mean) + 1)
            label = f"{r['arm']} ({_winner_text(results['tuning'][r['arm']])}): {_pm(r, key)}"
            (line,) = ax.plot(x, mean, color=COLORS.get(r["arm"]), lw=1.5, label=label,
                              marker="." if len(x) < 60 else None)
            ax.fill_between(x, np.maximum(mean - sd, curves.min(axis=0)), mean + sd, color=line.get_color(),
                            alpha=0.2, lw=0)
        ax.set_yscale("log")
        readable_log_axis(ax)
        whole_number_ticks(ax)
        ax.set_xlabel("epoch")
        ax.set_ylabel("squared error per image")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, which="both")
        if results["runs"]:
            ax.legend(fontsize=7)
    ax = axes[2]
    styles = ["-", "--"]
    for arm, tuning in results["tuning"].items():
        by_variant: dict[str, list[tuple[float, float]]] = {}
        for point in tuning["scores"].values():
            by_variant.setdefault(point["variant"], []).append((point["learning_rate"], point["mean"]))
        for i, (label, points) in enumerate(by_variant.items()):
            lr, score = np.asarray(sorted(points), float).T
            finite = np.isfinite(score)
            ax.plot(lr[finite], score[finite], styles[i % 2], marker="o", ms=3, color=COLORS.get(arm),
                    label=f"{arm}, {label}")
        won = tuning["winner"]
        ax.plot([won["learning_rate"]], [won["score"]], "k*", ms=10)
    ax.set_xscale("log")
    ax.set_yscale("log")
    readable_log_axis(ax, "x")
    readable_log_axis(ax)
    ax.set_xlabel("step size")
    ax.set_ylabel(f"tuning score: tail minibatch loss after {results['tune_epochs']} epochs")
    ax.set_title("tuning (mean over seeds; * = winner; diverged points omitted)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    if results["tuning"]:
        ax.legend(fontsize=6.5)
    seeds = results["seeds"]
    fitted_title(fig, f"{NAME}: {results['model']}; {results['train_size']} {results['dataset']} images, batch "
                 f"{results['batch_size']}; mean over seeds {seeds[0]}-{seeds[-1]}, bands ±1 s.d.", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
