"""The experiments of Kingma & Ba (2015), section 6: datasets, models, optimizers and step sizes."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from adaptix.experiments import autoencoder, betas, toys, vae_bias_correction
from adaptix.experiments import data as datasets
from adaptix.experiments.data import Data, Split
from adaptix.experiments.models import CNN, MLP, LogisticRegression
from adaptix.experiments.options import FLAGS, RunOptions, given
from adaptix.experiments.verdicts import Claim

SGD_NESTEROV_MOMENTA = ("sgd-nesterov", "sgd-nesterov-0.99")  # momentum 0.9, 0.99


@dataclass(frozen=True)
class Experiment:
    """One comparison: a dataset, a model, the optimizers and their step sizes.

    An experiment that is not "train each optimizer on one model" (the bias-correction grid, the
    toy landscapes) sets ``runner`` instead of ``load``/``model``: :func:`run.run_experiment`
    hands it the command line's options as a :class:`~adaptix.experiments.options.RunOptions`
    and prints its results with ``summarize``.
    """

    name: str
    description: str
    claim: str
    load: Callable[[Path | None, bool], Data] | None = None  # (data_dir, quick) -> Data
    model: Callable[[Data, nnx.Rngs], nnx.Module] | None = None
    optimizers: tuple[str, ...] = ()
    learning_rates: dict[str, float] = field(default_factory=dict)  # chosen by --tune; see docs/experiments.md
    epochs: int = 1
    quick_epochs: int = 1
    batch_size: int = 128
    l2: float = 0.0
    decay_sqrt: bool = False  # step size alpha / sqrt(t), as the paper's logistic regression
    # optimizers that anneal by themselves and keep a constant alpha under decay_sqrt (the paper's AdaGrad)
    constant_rate: tuple[str, ...] = ("adagrad-paper",)
    # arm -> the optimizers its tuning searches (the best one trains); SGD-Nesterov's momentum 0.9 and 0.99
    variants: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"sgd-nesterov": SGD_NESTEROV_MOMENTA})
    default_variants: dict[str, str] = field(default_factory=dict)  # arm -> what trains without --tune
    claims: tuple[Claim, ...] = ()  # the paper's claims, judged by verdicts.VERDICT_RULE
    tune_fraction: float = 0.1  # --tune's default budget per grid point: this fraction of the run's epochs
    grid: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0)
    default_learning_rate: float = 1e-3
    uses_data: tuple[str, ...] = field(default=())
    runner: Callable[[Experiment, RunOptions], dict] | None = None  # -> results; see run.run_experiment
    # the RunOptions fields a runner reads (None: all of them); giving any other is an error
    accepts: tuple[str, ...] | None = None
    summarize: Callable[[dict], str] | None = None  # results -> the table printed at the end

    def learning_rate(self, optimizer: str) -> float:
        return self.learning_rates.get(optimizer, self.default_learning_rate)

    def variant(self, arm: str) -> str:
        """The optimizer that trains for ``arm`` when it is not tuned."""
        return self.default_variants.get(arm, arm)

    def tuning_epochs(self, epochs: int) -> int:
        """Epochs per grid point: ``tune_fraction`` of the run's, at least one."""
        return max(1, math.ceil(self.tune_fraction * epochs - 1e-9))

    def schedule(self, learning_rate: float, optimizer: str) -> optax.ScalarOrSchedule:
        """``learning_rate``, or ``learning_rate / sqrt(t)`` under ``decay_sqrt`` unless ``optimizer`` anneals by
        itself (``constant_rate``)."""
        if not self.decay_sqrt or optimizer in self.constant_rate:
            return learning_rate
        return lambda count: learning_rate / jnp.sqrt(1.0 + count)


def _subset(split: Split, n: int | None, seed: int = 0) -> Split:
    if n is None or n >= len(split):
        return split
    idx = np.sort(np.random.default_rng(seed).permutation(len(split))[:n])
    return Split(split.x[idx], split.y[idx])


def _load_digits(data_dir: Path | None, quick: bool) -> Data:
    """scikit-learn's bundled 8x8 digits (1,797 images): needs no download."""
    from sklearn.datasets import load_digits

    del data_dir, quick
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order].astype(np.int32)
    cut = int(0.8 * len(y))
    return Data(Split(x[:cut], y[:cut]), Split(x[cut:], y[cut:]), 10, "digits")


def _load_mnist(data_dir: Path | None, quick: bool, train_size: int | None = None) -> Data:
    d = datasets.load_mnist(data_dir)
    return Data(_subset(d.train, train_size if quick else None), d.test, d.num_classes, d.name)


def _load_imdb(data_dir: Path | None, quick: bool) -> Data:
    """IMDB's 0/1 presence features of the 10,000 most frequent words, held dense as uint8 (250 MB a split).

    Slicing minibatches out of the sparse matrix row by row cost more than the training itself;
    a dense uint8 copy gathers a minibatch in microseconds and converts it to float32 exactly.
    """
    d = datasets.load_imdb_bow(data_dir, num_words=10000, binary=True)
    dense = lambda split: Split(split.x.astype(np.uint8).toarray(), split.y)
    return Data(dense(d.train), dense(d.test), d.num_classes, d.name)


def zca_whitening(x: np.ndarray, eps: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """The mean and the ZCA matrix ``W = U diag(1 / sqrt(lambda + eps)) U^T`` of the rows of ``x`` (flattened).

    ``(x - mean) @ W`` has (nearly) identity covariance and stays closest to the images (Bell &
    Sejnowski 1997; Krizhevsky 2009, appendix); ``eps`` (on pixels in [0, 1]) keeps the noise of the
    smallest eigen-directions from being amplified without bound.
    """
    flat = x.reshape(len(x), -1).astype(np.float64)
    mean = flat.mean(axis=0)
    centred = flat - mean
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / len(flat))
    w = (eigenvectors / np.sqrt(np.maximum(eigenvalues, 0.0) + eps)) @ eigenvectors.T
    return mean.astype(np.float32), w.astype(np.float32)


def _whitened(d: Data) -> Data:
    """Both splits ZCA-whitened with the statistics of the training images (section 6.3's pre-processing)."""
    mean, w = zca_whitening(d.train.x)
    apply = lambda s: Split(((s.x.reshape(len(s.x), -1) - mean) @ w).reshape(s.x.shape).astype(np.float32), s.y)
    return Data(apply(d.train), apply(d.test), d.num_classes, d.name)


def _load_cifar(data_dir: Path | None, quick: bool) -> Data:
    d = datasets.load_cifar10(data_dir, limit_per_class=200 if quick else None)
    if quick:  # the archive holds train before test, so a subset of both is read
        d = Data(d.train, _subset(d.test, 1000), d.num_classes, d.name)
    return _whitened(d)


def _in_features(d: Data) -> int:
    return int(np.prod(d.train.x.shape[1:]))


_MLP_MNIST = Experiment(
    name="mlp-mnist",
    description="MLP with two hidden layers of 1000 ReLU units on MNIST, minibatch 128, no dropout: not a panel "
    "of the paper (its five-way comparison is with dropout, mlp-mnist-dropout)",
    claim="No claim of the paper: the paper's deterministic panel compares Adam with SFO (not here); this runs "
    "the five optimizers of the dropout panel without dropout",
    load=lambda data_dir, quick: _load_mnist(data_dir, quick, train_size=12800),
    model=lambda d, rngs: MLP(_in_features(d), d.num_classes, rngs=rngs),
    optimizers=("adam", "adagrad-paper", "rmsprop", "sgd-nesterov", "adadelta"),
    # --tune --seeds 3 on all 60,000 images (docs/experiments/mlp-mnist/results.json; SGD-Nesterov's winner
    # at momentum 0.9); Optax-form adagrad: from the earlier single-seed tuning
    learning_rates={"adam": 1e-3, "adagrad-paper": 1e-2, "adagrad": 3e-1, "rmsprop": 1e-3, "sgd-nesterov": 1e-1,
                    "adadelta": 1.0},
    epochs=10,
    uses_data=("mnist",),
)

#: The experiments by name, in the order ``adaptix-experiments list`` prints them.
EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in [
        Experiment(
            name="digits",
            description="MLP (64-100-10) on scikit-learn's bundled 8x8 digits; the embedded default, no download",
            claim="Adam trains at least as fast as AdaGrad, RMSProp, SGD-Nesterov and AdaDelta",
            claims=tuple(Claim("adam", "≲", other) for other in ("adagrad", "rmsprop", "sgd-nesterov", "adadelta")),
            load=_load_digits,
            model=lambda d, rngs: MLP(_in_features(d), d.num_classes, hidden=(100,), rngs=rngs),
            optimizers=("adam", "adagrad", "rmsprop", "sgd-nesterov", "adadelta"),
            learning_rates={"adam": 1e-2, "adagrad": 3e-1, "rmsprop": 1e-2, "sgd-nesterov": 1e-1, "adadelta": 3.0},
            epochs=20,
            quick_epochs=10,
            batch_size=32,
        ),
        Experiment(
            name="logreg-mnist",
            description="L2-regularised multiclass logistic regression on MNIST, minibatch 128, alpha/sqrt(t) "
            "(the paper's AdaGrad: constant alpha); extra arm: Optax-form AdaGrad with alpha/sqrt(t)",
            claim="Adam converges as fast as SGD-Nesterov, both faster than AdaGrad",
            claims=(Claim("adam", "≈", "sgd-nesterov"), Claim("adam", "<", "adagrad-paper"),
                    Claim("sgd-nesterov", "<", "adagrad-paper")),
            load=_load_mnist,
            model=lambda d, rngs: LogisticRegression(_in_features(d), d.num_classes, rngs=rngs),
            optimizers=("adam", "adagrad-paper", "sgd-nesterov", "adagrad"),
            # --tune --tune-epochs 5 over the grid below (docs/experiments/logreg-mnist/results.json);
            # adagrad-paper at 0.1 as the review measured it
            learning_rates={"adam": 1e-1, "adagrad-paper": 1e-1, "adagrad": 3.0, "sgd-nesterov": 3.0},
            epochs=45,
            l2=1e-4,
            decay_sqrt=True,
            # alpha / sqrt(t) shrinks the step 150-fold over 45 epochs, so large alphas win: the grid reaches 30
            grid=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0, 30.0),
            uses_data=("mnist",),
        ),
        Experiment(
            name="logreg-imdb",
            description="Logistic regression on IMDB bag-of-words (10,000 words), 50% dropout on the features, "
            "alpha/sqrt(t) (the paper's AdaGrad: constant alpha); extra arm: Optax-form AdaGrad with alpha/sqrt(t)",
            claim="AdaGrad beats SGD-Nesterov by a wide margin on sparse features; Adam as fast as AdaGrad",
            claims=(Claim("adagrad-paper", "<", "sgd-nesterov"), Claim("adam", "≲", "adagrad-paper")),
            load=_load_imdb,
            model=lambda d, rngs: LogisticRegression(_in_features(d), d.num_classes, input_dropout=0.5, rngs=rngs),
            optimizers=("adam", "adagrad-paper", "rmsprop", "sgd-nesterov", "adagrad"),
            # re-tuned over x0.3, x1, x3 of the quick-budget rates at 3 epochs: only RMSProp moved (1e-2 -> 3e-2)
            learning_rates={"adam": 3e-2, "adagrad-paper": 1e-1, "adagrad": 1.0, "rmsprop": 3e-2,
                            "sgd-nesterov": 3e-1},
            epochs=50,
            l2=1e-4,
            decay_sqrt=True,
            uses_data=("imdb",),
        ),
        _MLP_MNIST,
        dataclasses.replace(
            _MLP_MNIST,
            name="mlp-mnist-dropout",
            description="MLP 1000-1000 ReLU on MNIST with 50% dropout on the hidden layers (Fig. 2a), minibatch 128",
            claim="With dropout noise Adam converges faster than AdaGrad, RMSProp, SGD-Nesterov and AdaDelta",
            claims=tuple(Claim("adam", "<", other) for other in ("adagrad-paper", "rmsprop", "sgd-nesterov",
                                                                 "adadelta")),
            epochs=50,
            model=lambda d, rngs: MLP(_in_features(d), d.num_classes, dropout=0.5, rngs=rngs),
            # --tune --seeds 3 with dropout (docs/experiments/mlp-mnist-dropout/results.json; SGD-Nesterov's winner
            # at momentum 0.9)
            learning_rates={"adam": 3e-4, "adagrad-paper": 1e-2, "adagrad": 3e-1, "rmsprop": 3e-4,
                            "sgd-nesterov": 3e-2, "adadelta": 1.0},
        ),
        Experiment(
            name="bias-correction",
            description="Adam with vs without bias correction, VAE 500-50 on MNIST, grid beta1 x beta2 x step size "
            "1e-5..1e-1, read after 10 and 100 epochs (section 6.4); --quick: a 2x2x2 grid, 150 iterations",
            claim=vae_bias_correction.CLAIM,
            optimizers=("adam", "adam-no-bias-correction"),
            epochs=100,  # the late checkpoint; the runner keeps its own budget (vae_bias_correction.FULL)
            uses_data=("mnist",),
            runner=vae_bias_correction.run_experiment,
            accepts=("data_dir", "seed", "seeds", "quick", "epochs", "loss_every", "resume"),
            summarize=vae_bias_correction.summary,
        ),
        Experiment(
            name="toys",
            description="Trajectories on toy landscapes: ill-conditioned quadratic, Rosenbrock, saddle, "
            "noisy quadratic (from each of --seeds noise seeds); no data needed",
            claim=toys.CLAIM,
            optimizers=toys.OPTIMIZERS,
            epochs=toys.STEPS,
            runner=toys.run_experiment,
            accepts=("optimizers", "seed", "seeds", "quick", "epochs", "tune"),
            summarize=toys.summary,
        ),
        Experiment(
            name="autoencoder-betas",
            description=autoencoder.DESCRIPTION,
            claim=autoencoder.CLAIM,
            claims=autoencoder.CLAIMS,
            optimizers=autoencoder.ARMS,
            epochs=autoencoder.DEFAULT.epochs,
            uses_data=("mnist",),
            runner=autoencoder.run_experiment,
            accepts=("data_dir", "seed", "seeds", "quick", "epochs"),
            summarize=autoencoder.summary,
        ),
        Experiment(
            name="cnn-cifar10",
            description="CNN c64-c64-c128-1000 (5x5 conv, 3x3/2 max-pool) on ZCA-whitened CIFAR-10, dropout 0.2 on "
            "the input and 0.5 on the 1000 units; --quick reads 200 images per class",
            claim="Adam and SGD-Nesterov converge much faster than AdaGrad",
            claims=(Claim("adam", "<", "adagrad-paper"), Claim("sgd-nesterov", "<", "adagrad-paper")),
            load=_load_cifar,
            model=lambda d, rngs: CNN(d.num_classes, input_dropout=0.2, rngs=rngs),
            optimizers=("adam", "adagrad-paper", "sgd-nesterov"),
            # --tune --tune-epochs 3 on the CPU subset (docs/experiments/cnn-cifar10/results.json; SGD-Nesterov
            # tuned 0.01 at momentum 0.99, which trains without --tune too); Optax-form adagrad: not tuned here
            learning_rates={"adam": 1e-3, "adagrad-paper": 1e-3, "adagrad": 1e-2, "sgd-nesterov": 1e-2},
            default_variants={"sgd-nesterov": "sgd-nesterov-0.99"},
            epochs=10,
            quick_epochs=3,
            uses_data=("cifar10",),
        ),
        Experiment(
            name="adam-betas",
            description=betas.DESCRIPTION + "; --epochs sets the steps (3,000)",
            claim=betas.CLAIM,
            optimizers=("adam",),
            epochs=betas.FULL.steps,
            runner=betas.run_experiment,
            accepts=("seed", "seeds", "quick", "epochs"),
            summarize=betas.summary,
        ),
    ]
}


def get(name: str) -> Experiment:
    """The experiment called ``name``; a ``ValueError`` that lists the known names otherwise."""
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise ValueError(f"unknown experiment {name!r}; one of: {', '.join(EXPERIMENTS)}") from None


def check_accepts(experiment: Experiment, options: RunOptions) -> None:
    """A ``ValueError`` naming the first option given that ``experiment``'s own runner does not read."""
    if experiment.accepts is None:
        return
    for name in given(options):
        if name not in experiment.accepts:
            takes = ", ".join(FLAGS[a] for a in experiment.accepts)
            raise ValueError(f"{FLAGS[name]} does not apply to {experiment.name} (it takes {takes}, --out)")


def describe() -> str:
    """One line per experiment, its name and description: what ``adaptix-experiments list`` prints."""
    width = max(map(len, EXPERIMENTS))
    return "\n".join(f"{e.name:<{width}}  {e.description}" for e in EXPERIMENTS.values())
