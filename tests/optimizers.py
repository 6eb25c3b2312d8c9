"""The shared table of optimizers run through the contract, Flax and validation suites.

Each entry is an :class:`OptCase`: an id, a factory (an adaptix alias or a
hand-built chain with the same keyword interface) and the keyword arguments it
is built with, plus flags describing what the contract may expect of it. The
module also walks optimizer states (:func:`named_tuples`, :func:`map_named_tuples`)
for the suites that look inside them.

Import it from a test module as ``from optimizers import OPTIMIZERS``: the
``pythonpath`` setting of ``[tool.pytest.ini_options]`` in ``pyproject.toml`` puts
``tests/`` on ``sys.path`` however pytest is started (``python -m pytest
tests/test_packed.py`` from the root, ``python -m pytest test_packed.py`` from
``tests/``); a script run from ``tests/`` (``python -c "import test_validation"``)
finds it in its working directory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import optax
import pytest

import adaptix


@dataclasses.dataclass(frozen=True)
class OptCase:
    """One optimizer of the table.

    Attributes:
      id: the pytest id.
      fn: a factory returning a gradient transformation; it takes ``kwargs``
        as keywords (so ``optax.inject_hyperparams(fn, static_args)(**kwargs)``
        works: :meth:`make_injected`).
      kwargs: the hyperparameters the contract suites use.
      supports_complex: complex parameters are supported. Mirrors Optax's own
        alias tests (``optax/_src/alias_test.py``), which skip complex
        parameters for lion, rprop, adadelta, sign_sgd and signum: sign-based
        steps and Rprop's sign agreement are defined for real numbers only.
      lr_scales_updates: the update is proportional to ``learning_rate`` at
        every step, so changing the injected learning rate scales it (and a
        schedule is a per-step learning rate). False for Rprop, whose learning
        rate is only the *initial* step size, and AdaBayes, whose learning rate
        sets the filter's prior.
      needs_params: ``update`` needs ``params`` (weight decay).
      elementwise: each coordinate's update is computed from that coordinate's
        gradients alone, so the state is parameter-shaped and a step costs O(n)
        for a leaf of n entries. False for full-matrix AdaGrad, whose ``n x n``
        preconditioner couples the coordinates of a leaf: packing leaves into
        one vector changes its updates, its second moment ``sum g g^H`` is
        complex Hermitian (not a real ``|g|^2``), an ``eigh`` spreads float32
        rounding over the whole leaf (eager and jit agree to 1e-4 or so, not to
        a few ulps), and a leaf costs O(n^2) memory and O(n^3) time per step.
        The suites skip, or adapt, what cannot apply, and say why. (The
        ``diagnostics`` chain is elementwise in this sense: its summaries are
        global, but its updates are Adam's and its EMAs parameter-shaped.)
      static_args: arguments of ``fn`` that ``optax.inject_hyperparams`` must
        leave alone: integer sizes, which it would otherwise turn into arrays.
      flax_kwargs: overrides for the short Flax training runs.
      quantized: keeps moments in 8-bit codes (:func:`adaptix.quantized`): they read as float32, so
        the updates of bfloat16 parameters are float32 (Optax's dtype rule, as with a float32
        ``mu_dtype``), and its steps agree with another compilation of itself only up to a code
        where a new moment lands within rounding of the midpoint between two codes.
    """

    id: str
    fn: Callable[..., optax.GradientTransformation]
    kwargs: dict = dataclasses.field(default_factory=dict)
    supports_complex: bool = True
    lr_scales_updates: bool = True
    needs_params: bool = False
    elementwise: bool = True
    static_args: tuple[str, ...] = ()
    flax_kwargs: dict = dataclasses.field(default_factory=dict)
    quantized: bool = False

    def make(self, **overrides: Any) -> optax.GradientTransformation:
        return self.fn(**{**self.kwargs, **overrides})

    def make_flax(self) -> optax.GradientTransformation:
        return self.make(**self.flax_kwargs)

    def make_injected(self, **overrides: Any) -> optax.GradientTransformation:
        """The entry under ``optax.inject_hyperparams``: its numeric ``kwargs`` live in the state."""
        return optax.inject_hyperparams(self.fn, static_args=self.static_args)(**{**self.kwargs, **overrides})

    @property
    def param(self):
        return pytest.param(self, id=self.id)


# ----------------------------------------------------------------------------
# Walking a state: NamedTuples (one per stage, ``CountedState`` around a chain's
# stages), tuples, lists and dicts, down to arrays and ``None``.
# ----------------------------------------------------------------------------


def is_named_tuple(node: Any) -> bool:
    return isinstance(node, tuple) and hasattr(node, "_fields")


def named_tuples(state: Any) -> list:
    """Every NamedTuple of ``state``, each before those inside it, in field order."""
    found = []

    def visit(node):
        if is_named_tuple(node):
            found.append(node)
        if isinstance(node, (tuple, list)):
            for value in node:
                visit(value)
        elif isinstance(node, dict):
            for value in node.values():
                visit(value)

    visit(state)
    return found


def map_named_tuples(fn: Callable[[Any], Any], state: Any) -> Any:
    """``state`` rebuilt with every NamedTuple ``t`` replaced by ``fn(t)``, those inside it first."""

    def visit(node):
        if is_named_tuple(node):
            return fn(type(node)(*(visit(value) for value in node)))
        if isinstance(node, (tuple, list)):
            return type(node)(visit(value) for value in node)
        if isinstance(node, dict):
            return {key: visit(value) for key, value in node.items()}
        return node

    return visit(state)


# ----------------------------------------------------------------------------
# Hand-built chains from primitives (same keyword interface as the aliases).
# ----------------------------------------------------------------------------


def adam_from_primitives(learning_rate, b1=0.9, b2=0.999, eps=1e-8):
    """Adam spelled out: momentum of the raw gradient, then its RMS, then debiasing."""
    return adaptix.chain(
        adaptix.trace(b1, ema=True),
        adaptix.scale_by_rms(b2, eps, eps_in_sqrt=False, bias_correction=True),
        adaptix.bias_correction(b1),
        adaptix.scale_by_learning_rate(learning_rate),
    )


def rmsprop_momentum_from_primitives(learning_rate, decay=0.9, eps=1e-8, momentum=0.9):
    """Hinton's RMSProp with momentum: the momentum averages *rescaled* steps."""
    return adaptix.chain(
        adaptix.scale_by_rms(decay, eps),
        adaptix.trace(momentum),
        adaptix.scale_by_learning_rate(learning_rate),
    )


def adam_l2(learning_rate, weight_decay=1e-2):
    """Adam + L2 (``torch.optim.Adam(weight_decay=...)``): a nested chain."""
    return adaptix.chain(adaptix.add_decayed_weights(weight_decay), adaptix.adam(learning_rate))


def clipped_adam(learning_rate, max_norm=1.0):
    """A plain Optax stage in front of an adaptix alias."""
    return adaptix.chain(optax.clip_by_global_norm(max_norm), adaptix.adam(learning_rate))


def packed_adamw(learning_rate, weight_decay=1e-2):
    """AdamW on the leaves of at most 8 entries packed into flat vectors (larger leaves stay as they are)."""
    return adaptix.packed(adaptix.adamw(learning_rate, weight_decay=weight_decay), max_leaf_size=8)


#: Every leaf of the suites' small trees quantized, in blocks of 4 entries (several blocks per leaf).
QUANTIZED = adaptix.quantized(block_size=4, min_size=0)


def adagrad_momentum_8bit(learning_rate):
    """AdaGrad's sum of squares (started at 0.1: an unsigned map filled at init) and a heavy-ball
    trace (a signed map), both in 8-bit codes."""
    return adaptix.chain(
        adaptix.scale_by_rss(0.1, accumulator_dtype=QUANTIZED),
        adaptix.trace(0.9, accumulator_dtype=QUANTIZED),
        adaptix.scale_by_learning_rate(learning_rate),
    )


def adam_with_diagnostics(learning_rate):
    """Adam followed by the pass-through ``diagnostics`` stage, keeping its per-coordinate trees.

    The stage stands after the step, as in ``docs/theory.md``, so its summaries
    describe Adam's updates. The updates are Adam's; the state adds the stage's
    own EMAs, global summaries (norms, maxima, means over all leaves) and the full
    SNR and effective-step trees.
    """
    return adaptix.chain(adaptix.adam(learning_rate), adaptix.diagnostics(keep_full=True))


# ----------------------------------------------------------------------------
# The table.
# ----------------------------------------------------------------------------

_REAL_ONLY = dict(supports_complex=False)

ALIASES: tuple[OptCase, ...] = (
    OptCase("sgd", adaptix.sgd, dict(learning_rate=0.05)),
    OptCase("sgd_momentum", adaptix.sgd, dict(learning_rate=0.02, momentum=0.9)),
    OptCase("sgd_nesterov", adaptix.sgd, dict(learning_rate=0.02, momentum=0.9, nesterov=True)),
    OptCase("adagrad", adaptix.adagrad, dict(learning_rate=0.1)),
    OptCase("rmsprop", adaptix.rmsprop, dict(learning_rate=0.01)),
    OptCase(
        "rmsprop_centered_momentum",
        adaptix.rmsprop,
        dict(learning_rate=0.005, centered=True, momentum=0.9),
    ),
    OptCase("adadelta", adaptix.adadelta, dict(learning_rate=1.0, rho=0.9, eps=1e-6), **_REAL_ONLY,
            flax_kwargs=dict(eps=1e-4)),
    OptCase("adam", adaptix.adam, dict(learning_rate=0.01)),
    OptCase("adamw", adaptix.adamw, dict(learning_rate=0.01, weight_decay=1e-2), needs_params=True),
    OptCase("amsgrad_optax", adaptix.amsgrad, dict(learning_rate=0.01, debias_before_max=True)),
    OptCase("amsgrad_torch", adaptix.amsgrad, dict(learning_rate=0.01, debias_before_max=False)),
    OptCase("nadam", adaptix.nadam, dict(learning_rate=0.01)),
    OptCase("nadam_torch", adaptix.nadam, dict(learning_rate=0.01, momentum_decay=4e-3)),
    OptCase("nadamw", adaptix.nadamw, dict(learning_rate=0.01, weight_decay=1e-2), needs_params=True),
    OptCase("adamax", adaptix.adamax, dict(learning_rate=0.01)),
    OptCase("radam", adaptix.radam, dict(learning_rate=0.01)),
    OptCase("lion", adaptix.lion, dict(learning_rate=3e-3, weight_decay=1e-2), **_REAL_ONLY,
            needs_params=True),
    OptCase("sign_sgd", adaptix.sign_sgd, dict(learning_rate=3e-3), **_REAL_ONLY),
    OptCase("signum", adaptix.signum, dict(learning_rate=3e-3), **_REAL_ONLY),
    OptCase("rprop", adaptix.rprop, dict(learning_rate=1e-3), **_REAL_ONLY, lr_scales_updates=False),
    # AdaBayes's learning rate sets the filter's prior (its step is the posterior variance), not a
    # factor of the step: the update is not proportional to it, and a schedule is refused.
    OptCase("adabayes", adaptix.adabayes, dict(learning_rate=1e-2, sgd_learning_rate=0.1), lr_scales_updates=False),
    OptCase("adabayes_fp", adaptix.adabayes_fp, dict(learning_rate=1e-2, sgd_learning_rate=0.1, weight_decay=1e-3),
            lr_scales_updates=False, needs_params=True),
    # vSGD needs no rate: learning_rate is a multiplier (1 is the method), so the update is proportional to it at
    # every step; the secant curvature reads the parameters (their change since the previous update).
    OptCase("vsgd", adaptix.vsgd, dict(learning_rate=1.0), needs_params=True),
    # An n x n matrix per leaf: the suites' leaves have at most 120 entries (test_compiled_step's small leaf).
    OptCase("full_matrix_adagrad", adaptix.full_matrix_adagrad, dict(learning_rate=0.1, eps=1e-3), elementwise=False,
            static_args=("max_size",)),  # an int that inject_hyperparams would turn into an array
)

CHAINS: tuple[OptCase, ...] = (
    OptCase("chain_adam", adam_from_primitives, dict(learning_rate=0.01)),
    OptCase("chain_rmsprop_momentum", rmsprop_momentum_from_primitives, dict(learning_rate=0.005)),
    OptCase("chain_adam_l2", adam_l2, dict(learning_rate=0.01), needs_params=True),
    OptCase("chain_clipped_adam", clipped_adam, dict(learning_rate=0.01)),
    OptCase("packed_adamw", packed_adamw, dict(learning_rate=0.01), needs_params=True),
    OptCase("chain_adam_diagnostics", adam_with_diagnostics, dict(learning_rate=0.01)),
    OptCase("adam_8bit", adaptix.adam, dict(learning_rate=0.01, mu_dtype=QUANTIZED, nu_dtype=QUANTIZED),
            quantized=True),
    OptCase("chain_adagrad_momentum_8bit", adagrad_momentum_8bit, dict(learning_rate=0.05), quantized=True),
)

OPTIMIZERS: tuple[OptCase, ...] = ALIASES + CHAINS

OPTIMIZER_PARAMS = [c.param for c in OPTIMIZERS]
COMPLEX_PARAMS = [c.param for c in OPTIMIZERS if c.supports_complex]
LR_SCALING_PARAMS = [c.param for c in OPTIMIZERS if c.lr_scales_updates]

assert len({c.id for c in OPTIMIZERS}) == len(OPTIMIZERS), "duplicate ids in the table"
