"""The shared table of optimizers run through the contract, Flax and validation suites.

Each entry is an :class:`OptCase`: an id, a factory (an adaptix alias or a
hand-built chain with the same keyword interface) and the keyword arguments it
is built with, plus flags describing what the contract may expect of it.

Import it from a test module as ``from optimizers import OPTIMIZERS`` (pytest
puts ``tests/`` on ``sys.path``), or ``from tests.optimizers import ...``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import optax
import pytest

import adaptix


@dataclasses.dataclass(frozen=True)
class OptCase:
    """One optimizer of the table.

    Attributes:
      id: the pytest id.
      fn: a factory returning a gradient transformation; it takes ``kwargs``
        as keywords (so ``optax.inject_hyperparams(fn)(**kwargs)`` works).
      kwargs: the hyperparameters the contract suites use.
      supports_complex: complex parameters are supported. Mirrors Optax's own
        alias tests (``optax/_src/alias_test.py``), which skip complex
        parameters for lion, rprop, adadelta, sign_sgd and signum: sign-based
        steps and Rprop's sign agreement are defined for real numbers only.
      lr_scales_updates: the update is proportional to ``learning_rate`` at
        every step, so changing the injected learning rate scales it. False for
        Rprop, whose learning rate is only the *initial* step size.
      needs_params: ``update`` needs ``params`` (weight decay).
      flax_kwargs: overrides for the short Flax training runs.
    """

    id: str
    fn: Callable[..., optax.GradientTransformation]
    kwargs: dict = dataclasses.field(default_factory=dict)
    supports_complex: bool = True
    lr_scales_updates: bool = True
    needs_params: bool = False
    flax_kwargs: dict = dataclasses.field(default_factory=dict)

    def make(self, **overrides: Any) -> optax.GradientTransformation:
        return self.fn(**{**self.kwargs, **overrides})

    def make_flax(self) -> optax.GradientTransformation:
        return self.make(**self.flax_kwargs)

    @property
    def param(self):
        return pytest.param(self, id=self.id)


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
)

CHAINS: tuple[OptCase, ...] = (
    OptCase("chain_adam", adam_from_primitives, dict(learning_rate=0.01)),
    OptCase("chain_rmsprop_momentum", rmsprop_momentum_from_primitives, dict(learning_rate=0.005)),
    OptCase("chain_adam_l2", adam_l2, dict(learning_rate=0.01), needs_params=True),
    OptCase("chain_clipped_adam", clipped_adam, dict(learning_rate=0.01)),
    OptCase("packed_adamw", packed_adamw, dict(learning_rate=0.01), needs_params=True),
)

OPTIMIZERS: tuple[OptCase, ...] = ALIASES + CHAINS

ALIAS_PARAMS = [c.param for c in ALIASES]
OPTIMIZER_PARAMS = [c.param for c in OPTIMIZERS]
COMPLEX_PARAMS = [c.param for c in OPTIMIZERS if c.supports_complex]
LR_SCALING_PARAMS = [c.param for c in OPTIMIZERS if c.lr_scales_updates]

assert len({c.id for c in OPTIMIZERS}) == len(OPTIMIZERS), "duplicate ids in the table"
