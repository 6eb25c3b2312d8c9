"""Construction-time validation: bad hyperparameters fail at once, with name, value and range.

``BAD_INPUTS`` (one bad hyperparameter each) and ``BAD_COMBINATIONS`` list every
bad input tried, built at import time; ``N_BAD`` is their number:
``cd tests && python -c "import test_validation as t; print(t.N_BAD)"``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptix

from optimizers import ALIASES, OPTIMIZER_PARAMS

NAN, INF = math.nan, math.inf

# Bad values per kind of hyperparameter, with the exception each must raise.
RATE_BAD = [(-0.1, ValueError), (NAN, ValueError), (INF, ValueError), (-INF, ValueError),
            (jnp.asarray(-0.1), ValueError), ("0.1", TypeError), (True, TypeError)]
# A decay rate may be 1 (a running sum, a constant average: defined), except where it is
# bias-corrected, where 1 - beta^t = 0 divides by zero (docs/reliability.md, "what is refused").
DECAY_BAD = [(1.0000001, ValueError), (1.5, ValueError), (-0.1, ValueError), (NAN, ValueError),
             (INF, ValueError), ("0.9", TypeError)]
DEBIASED_BAD = [(1.0, ValueError), *DECAY_BAD]
NONNEG_BAD = [(-1e-3, ValueError), (NAN, ValueError), (INF, ValueError), ("1e-8", TypeError)]
REAL_BAD = [(NAN, ValueError), (INF, ValueError), ("5", TypeError)]
ETA_MINUS_BAD = [(0.0, ValueError), (1.0, ValueError), (1.5, ValueError), (-0.5, ValueError), (NAN, ValueError)]
ETA_PLUS_BAD = [(1.0, ValueError), (0.5, ValueError), (-2.0, ValueError), (NAN, ValueError)]
STEP_SIZE_BAD = [(0.0, ValueError), (-1.0, ValueError), (NAN, ValueError)]
# A rate that enters a model (AdaBayes's prior): a number > 0, not a schedule.
POSITIVE_BAD = [(0.0, ValueError), (-1.0, ValueError), (NAN, ValueError), (INF, ValueError), ("0.1", TypeError),
                (optax.constant_schedule(0.1), TypeError)]
BATCH_SIZE_BAD = [(0.5, ValueError), (0.0, ValueError), (NAN, ValueError), ("32", TypeError)]
# Sizes, counts and periods: Python integers.
SIZE_BAD = [(0, ValueError), (-1, ValueError), (2.5, ValueError), (True, ValueError), ("8", ValueError)]
COUNT_BAD = [(-1, ValueError), (2.5, ValueError), (True, ValueError)]
BOOL_BAD = [("yes", TypeError), (1, TypeError)]

KINDS = {
    "rate": RATE_BAD,
    "decay": DECAY_BAD,
    "debiased": DEBIASED_BAD,
    "nonneg": NONNEG_BAD,
    "real": REAL_BAD,
    "eta_minus": ETA_MINUS_BAD,
    "eta_plus": ETA_PLUS_BAD,
    "step_size": STEP_SIZE_BAD,
    "positive": POSITIVE_BAD,
    "batch_size": BATCH_SIZE_BAD,
    "size": SIZE_BAD,
    "count": COUNT_BAD,
    "bool": BOOL_BAD,
}


@dataclasses.dataclass(frozen=True)
class Bad:
    owner: str
    factory: Callable[..., Any]
    base: dict
    name: str
    value: Any
    error: type

    @property
    def id(self):
        return f"{self.owner}-{self.name}={self.value!r}"


def _spec(owner, factory, base, **kinds):
    """All bad inputs for one factory: ``name=kind`` for each validated hyperparameter."""
    return [
        Bad(owner, factory, base, name, value, error)
        for name, kind in kinds.items()
        for value, error in KINDS[kind]
    ]


LR = dict(learning_rate=0.1)

BAD_INPUTS: list[Bad] = [
    # --- aliases ---
    *_spec("sgd", adaptix.sgd, dict(LR, momentum=0.9), learning_rate="rate", momentum="decay"),
    *_spec("adagrad", adaptix.adagrad, LR, learning_rate="rate", initial_accumulator_value="nonneg", eps="nonneg"),
    *_spec("rmsprop", adaptix.rmsprop, dict(LR, momentum=0.9), learning_rate="rate", decay="decay",
           eps="nonneg", initial_scale="nonneg", momentum="decay"),
    *_spec("adadelta", adaptix.adadelta, {}, learning_rate="rate", rho="decay", eps="nonneg", weight_decay="rate"),
    *_spec("adam", adaptix.adam, LR, learning_rate="rate", b1="debiased", b2="debiased", eps="nonneg",
           eps_root="nonneg"),
    *_spec("adamw", adaptix.adamw, LR, learning_rate="rate", b1="debiased", b2="debiased", eps="nonneg",
           eps_root="nonneg", weight_decay="rate"),
    *_spec("amsgrad", adaptix.amsgrad, LR, learning_rate="rate", b1="debiased", b2="debiased", eps="nonneg",
           eps_root="nonneg"),
    *_spec("nadam", adaptix.nadam, LR, learning_rate="rate", b1="debiased", b2="debiased", eps="nonneg",
           eps_root="nonneg", momentum_decay="nonneg"),
    *_spec("nadamw", adaptix.nadamw, LR, learning_rate="rate", b1="debiased", b2="debiased", eps="nonneg",
           eps_root="nonneg", weight_decay="rate", momentum_decay="nonneg"),
    *_spec("adamax", adaptix.adamax, LR, learning_rate="rate", b1="debiased", b2="decay", eps="nonneg"),
    *_spec("radam", adaptix.radam, LR, learning_rate="rate", b1="debiased", b2="debiased", eps="nonneg",
           eps_root="nonneg", threshold="real"),
    *_spec("lion", adaptix.lion, LR, learning_rate="rate", b1="decay", b2="decay", weight_decay="rate"),
    *_spec("sign_sgd", adaptix.sign_sgd, LR, learning_rate="rate"),
    *_spec("signum", adaptix.signum, LR, learning_rate="rate", beta="decay"),
    *_spec("rprop", adaptix.rprop, LR, learning_rate="rate", eta_minus="eta_minus", eta_plus="eta_plus",
           min_step_size="step_size", max_step_size="step_size"),
    # --- primitives ---
    *_spec("trace", adaptix.trace, dict(decay=0.9), decay="decay"),
    *_spec("ema", adaptix.ema, dict(decay=0.9), decay="debiased"),
    *_spec("ema", adaptix.ema, dict(decay=0.9, debias=False), decay="decay"),
    *_spec("nesterov_ema", adaptix.nesterov_ema, {}, decay="debiased", momentum_decay="nonneg"),
    *_spec("lion_momentum", adaptix.lion_momentum, {}, b1="decay", b2="decay"),
    *_spec("scale_by_rms", adaptix.scale_by_rms, {}, decay="decay", eps="nonneg", initial_scale="nonneg",
           eps_root="nonneg"),
    *_spec("scale_by_stddev", adaptix.scale_by_stddev, {}, decay="decay", eps="nonneg", initial_scale="nonneg"),
    *_spec("scale_by_rss", adaptix.scale_by_rss, {}, initial_accumulator_value="nonneg", eps="nonneg"),
    *_spec("scale_by_max_rms", adaptix.scale_by_max_rms, {}, decay="debiased", eps="nonneg", eps_root="nonneg"),
    *_spec("scale_by_inf_norm", adaptix.scale_by_inf_norm, {}, decay="decay", eps="nonneg"),
    *_spec("scale_by_rectified_rms", adaptix.scale_by_rectified_rms, {}, decay="debiased", eps="nonneg",
           eps_root="nonneg", threshold="real"),
    *_spec("scale_by_update_rms", adaptix.scale_by_update_rms, {}, rho="decay", eps="nonneg"),
    *_spec("scale_by_rprop", adaptix.scale_by_rprop, LR, learning_rate="rate", eta_minus="eta_minus",
           eta_plus="eta_plus", min_step_size="step_size", max_step_size="step_size"),
    *_spec("bias_correction", adaptix.bias_correction, dict(decay=0.9), decay="debiased"),
    *_spec("scale_by_rms", adaptix.scale_by_rms, dict(bias_correction=True), decay="debiased"),
    *_spec("scale_by_stddev", adaptix.scale_by_stddev, dict(bias_correction=True), decay="debiased"),
    *_spec("rmsprop", adaptix.rmsprop, dict(LR, bias_correction=True), decay="debiased"),
    *_spec("scale_by_max_rms", adaptix.scale_by_max_rms, dict(bias_correction=False), decay="decay"),
    *_spec("amsgrad", adaptix.amsgrad, dict(LR, bias_correction_mu=False, bias_correction_nu=False),
           b1="decay", b2="decay"),
    *_spec("parameter_difference_momentum", adaptix.parameter_difference_momentum, dict(beta=0.9), beta="decay"),
    *_spec("scale_by_learning_rate", adaptix.scale_by_learning_rate, LR, learning_rate="rate"),
    *_spec("add_decayed_weights", adaptix.add_decayed_weights, {}, weight_decay="rate"),
    *_spec("scale", adaptix.scale, dict(step_size=1.0), step_size="real"),
    # --- the research tools ---
    *_spec("adabayes", adaptix.adabayes, {}, learning_rate="positive", sgd_learning_rate="positive",
           batch_size="batch_size", b1="debiased", weight_decay="rate"),
    *_spec("adabayes_fp", adaptix.adabayes_fp, {}, learning_rate="positive", sgd_learning_rate="positive",
           b1="debiased", b2="debiased", eps="nonneg", batch_size="batch_size", weight_decay="rate"),
    *_spec("scale_by_posterior_variance", adaptix.scale_by_posterior_variance, {}, learning_rate="positive",
           sgd_learning_rate="positive", batch_size="batch_size"),
    *_spec("scale_by_posterior_variance_fp", adaptix.scale_by_posterior_variance_fp, {},
           learning_rate="positive", sgd_learning_rate="positive", decay="debiased", eps="nonneg"),
    *_spec("full_matrix_adagrad", adaptix.full_matrix_adagrad, LR, learning_rate="rate", eps="nonneg",
           eps_in_sqrt="bool", max_size="size"),
    *_spec("scale_by_full_matrix_rss", adaptix.scale_by_full_matrix_rss, {}, eps="nonneg", eps_in_sqrt="bool",
           max_size="size"),
    *_spec("diagnostics", adaptix.diagnostics, {}, b1="debiased", b2="debiased", eps="nonneg", snr="bool",
           snr_threshold="nonneg", keep_full="bool", history="count", every="size", sample="size"),
    *_spec("packed", lambda **kw: adaptix.packed(adaptix.adam(0.1), **kw), {}, max_leaf_size="count"),
    # --- one-off cases ---
    Bad("scale_by_learning_rate", adaptix.scale_by_learning_rate, {}, "learning_rate", None, TypeError),
    Bad("rprop", adaptix.rprop, {}, "learning_rate", optax.constant_schedule(0.1), TypeError),
    Bad("scale_by_rprop", adaptix.scale_by_rprop, {}, "learning_rate", optax.constant_schedule(0.1), TypeError),
    Bad("sgd", adaptix.sgd, dict(LR, momentum=0.9), "nesterov", "yes", TypeError),
    Bad("trace", adaptix.trace, dict(decay=0.9), "accumulator_dtype", jnp.int32, TypeError),
    Bad("adam", adaptix.adam, LR, "mu_dtype", "not-a-dtype", TypeError),
    Bad("adam", adaptix.adam, LR, "nu_dtype", jnp.int8, TypeError),
    Bad("nadamw", adaptix.nadamw, LR, "nu_dtype", "not-a-dtype", TypeError),
    Bad("scale_by_rms", adaptix.scale_by_rms, {}, "accumulator_dtype", jnp.int32, TypeError),
]

_INTERVAL = re.compile(r"[\[(]\s*-?(?:[\d.e+-]+|inf)\s*,\s*-?(?:[\d.e+-]+|inf)\s*[\])]")


def _value_shown(value, message):
    if callable(value) and not isinstance(value, (jax.Array, np.ndarray)):
        return True  # a schedule has no useful repr
    return any(s in message for s in (repr(value), str(value)))


@pytest.mark.parametrize("bad", [pytest.param(b, id=b.id) for b in BAD_INPUTS])
def test_bad_hyperparameter_rejected(bad):
    with pytest.raises(bad.error) as info:
        bad.factory(**{**bad.base, bad.name: bad.value})
    message = str(info.value)
    assert message.startswith(f"{bad.owner}: "), message  # the error names what the user called
    assert bad.name in message, message
    assert _value_shown(bad.value, message), message
    if bad.error is ValueError:
        assert _INTERVAL.search(message), f"no valid range in: {message}"


def test_every_alias_and_primitive_covered():
    owners = {b.owner for b in BAD_INPUTS}
    aliases = {"sgd", "adagrad", "rmsprop", "adadelta", "adam", "adamw", "amsgrad", "nadam", "nadamw",
               "adamax", "radam", "lion", "sign_sgd", "signum", "rprop"}
    primitives = {"trace", "ema", "nesterov_ema", "lion_momentum", "scale_by_rms", "scale_by_stddev",
                  "scale_by_rss", "scale_by_max_rms", "scale_by_inf_norm", "scale_by_rectified_rms",
                  "scale_by_update_rms", "scale_by_rprop", "bias_correction", "scale_by_learning_rate",
                  "add_decayed_weights", "scale"}
    research = {"adabayes", "adabayes_fp", "scale_by_posterior_variance", "scale_by_posterior_variance_fp",
                "full_matrix_adagrad", "scale_by_full_matrix_rss", "diagnostics", "packed"}
    assert aliases | primitives | research <= owners
    assert all(hasattr(adaptix, name) for name in aliases | primitives)


def test_a_decay_of_one_with_a_meaning_is_accepted():
    """What is defined is accepted: a trace at decay 1 is a running sum (Optax's own tests use it)."""
    g = [jnp.asarray([1.0, -2.0]), jnp.asarray([0.5, 0.5]), jnp.asarray([-1.0, 3.0])]

    def run(opt):
        state, out = opt.init(jnp.zeros(2)), None
        for x in g:
            out, state = opt.update(x, state)
        return np.asarray(out)

    np.testing.assert_allclose(run(adaptix.trace(1.0)), sum(g), rtol=1e-6)
    np.testing.assert_allclose(run(adaptix.trace(1.0)), run(optax.trace(1.0)), rtol=1e-6)
    np.testing.assert_allclose(run(adaptix.sgd(0.1, momentum=1.0)), -0.1 * sum(g), rtol=1e-6)
    running_max = np.max(np.abs(np.stack(g)), axis=0)
    np.testing.assert_allclose(run(adaptix.scale_by_inf_norm(1.0, eps=0.0)), g[-1] / running_max, rtol=1e-6)
    np.testing.assert_allclose(run(adaptix.rmsprop(1.0, decay=1.0, initial_scale=4.0, eps=0.0)), -g[-1] / 2.0,
                               rtol=1e-6)  # v stays at its initial value
    for factory, kwargs in [(adaptix.lion, dict(b1=1.0, b2=1.0, weight_decay=0.0)), (adaptix.signum, dict(beta=1.0)),
                            (adaptix.adamax, dict(b2=1.0)), (adaptix.adadelta, dict(rho=1.0)),
                            (adaptix.scale_by_update_rms, dict(rho=1.0)), (adaptix.ema, dict(decay=1.0, debias=False))]:
        assert np.all(np.isfinite(run(factory(**({"learning_rate": 0.1} if factory in (adaptix.lion, adaptix.signum,
                                                                                       adaptix.adamax, adaptix.adadelta)
                                                 else {}), **kwargs))))


def test_a_bias_corrected_decay_of_one_says_why():
    with pytest.raises(ValueError, match=r"adam: b1 must be finite and in \[0, 1\), got 1.0 \(b1 = 1 makes the bias "
                                         r"correction 1 - b1\^t zero\)"):
        adaptix.adam(0.1, b1=1.0)


# Bad *combinations* of valid values: (factory, kwargs, names and values the message must show).
BAD_COMBINATIONS: list[tuple[Callable[..., Any], dict, tuple[str, ...]]] = [
    (adaptix.rprop, dict(learning_rate=0.1, min_step_size=1.0, max_step_size=0.5),
     ("min_step_size", "max_step_size", "1.0", "0.5")),
    (adaptix.scale_by_rprop, dict(learning_rate=0.1, min_step_size=1.0, max_step_size=0.5),
     ("min_step_size", "max_step_size", "1.0", "0.5")),
    (adaptix.sgd, dict(learning_rate=0.1, nesterov=True), ("nesterov", "momentum", "None")),
    (adaptix.rmsprop, dict(learning_rate=0.1, nesterov=True), ("nesterov", "momentum", "None")),
]

N_BAD = len(BAD_INPUTS) + len(BAD_COMBINATIONS)
"""The number of bad hyperparameter inputs tried at construction."""


@pytest.mark.parametrize(
    "factory, kwargs, shown",
    [pytest.param(*c, id=f"{c[0].__name__}-{'-'.join(c[2][:2])}") for c in BAD_COMBINATIONS],
)
def test_bad_combination_rejected(factory, kwargs, shown):
    with pytest.raises(ValueError) as info:
        factory(**kwargs)
    for part in shown:
        assert part in str(info.value), str(info.value)


# ----------------------------------------------------------------------------
# What must *not* be rejected.
# ----------------------------------------------------------------------------


def _params():
    return {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}


def _grads(t=0):
    return jax.tree.map(lambda x: jnp.full_like(x, 0.5 - 0.3 * t), _params())


@pytest.mark.parametrize("case", OPTIMIZER_PARAMS)
def test_traced_hyperparameters_accepted(case):
    """Under inject_hyperparams inside jit the hyperparameters are tracers: not rejected."""
    opt = case.make_injected()
    params = _params()
    state = jax.jit(opt.init)(params)
    update = jax.jit(opt.update)
    for t in range(2):
        updates, state = update(_grads(t), state, params)
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))


def test_traced_hyperparameters_at_construction():
    """Building an alias inside jit from traced numbers is fine (nothing concrete to check)."""
    params, g = _params(), _grads()

    @jax.jit
    def run(lr, b1, b2, eta_minus, min_step, max_step):
        out = []
        for opt in (adaptix.adam(lr, b1, b2), adaptix.rprop(lr, eta_minus, 1.2, min_step, max_step)):
            out.append(opt.update(g, opt.init(params), params)[0])
        return out

    adam_u, rprop_u = run(0.1, 0.9, 0.999, 0.5, 1e-6, 50.0)
    np.testing.assert_allclose(np.asarray(adam_u["w"]), -0.1, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(rprop_u["w"]), -0.1, rtol=1e-6)


# A schedule is a per-step learning rate: where the learning rate is not a factor of every step (Rprop's
# initial step size, AdaBayes's prior), a schedule is refused (BAD_INPUTS above; test_bayes.py).
@pytest.mark.parametrize("case", [c.param for c in ALIASES if c.lr_scales_updates])
def test_learning_rate_schedule_accepted(case):
    lr = case.kwargs["learning_rate"]
    constant = case.make()
    scheduled = case.make(learning_rate=optax.constant_schedule(lr))
    decaying = case.make(learning_rate=optax.linear_schedule(lr, 0.0, 4))
    params = _params()
    s_c, s_s, s_d = constant.init(params), scheduled.init(params), decaying.init(params)
    for t in range(3):
        g = _grads(t)
        u_c, s_c = constant.update(g, s_c, params)
        u_s, s_s = scheduled.update(g, s_s, params)
        u_d, s_d = decaying.update(g, s_d, params)
        for a, b, d in zip(jax.tree.leaves(u_c), jax.tree.leaves(u_s), jax.tree.leaves(u_d)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-9)
            assert bool(jnp.all(jnp.isfinite(d)))
    # The linear schedule reaches 0 at step 4: the fifth update is zero, except where
    # a momentum stage stands *after* the learning rate (RMSProp with momentum keeps
    # its velocity of earlier, already-scaled steps).
    u_d, s_d = decaying.update(_grads(3), s_d, params)
    u_d, s_d = decaying.update(_grads(4), s_d, params)
    if case.id != "rmsprop_centered_momentum":
        for d in jax.tree.leaves(u_d):
            np.testing.assert_allclose(np.asarray(d), 0.0, atol=1e-7)


@pytest.mark.parametrize("alias", [adaptix.adamw, adaptix.nadamw, adaptix.lion, adaptix.adadelta])
def test_weight_decay_schedule_accepted(alias):
    params = _params()
    constant = alias(learning_rate=0.1, weight_decay=0.01)
    scheduled = alias(learning_rate=0.1, weight_decay=optax.constant_schedule(0.01))
    s_c, s_s = constant.init(params), scheduled.init(params)
    for t in range(3):
        u_c, s_c = constant.update(_grads(t), s_c, params)
        u_s, s_s = scheduled.update(_grads(t), s_s, params)
        for a, b in zip(jax.tree.leaves(u_c), jax.tree.leaves(u_s)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-9)


def test_concrete_array_hyperparameter_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        adaptix.adam(jnp.asarray(0.1))


# ----------------------------------------------------------------------------
# Gradient trees that do not match the state.
# ----------------------------------------------------------------------------

def _mismatch_cases():
    for p in OPTIMIZER_PARAMS:
        yield pytest.param(p.values[0], id=p.values[0].id)


MISMATCHED = {
    "renamed_key": {"w": jnp.ones((2, 3)), "c": jnp.zeros(3)},
    "list": [jnp.ones((2, 3)), jnp.zeros(3)],
    "extra_leaf": {"w": jnp.ones((2, 3)), "b": jnp.zeros(3), "x": jnp.zeros(1)},
}


@pytest.mark.parametrize("bad_name", list(MISMATCHED))
@pytest.mark.parametrize("case", list(_mismatch_cases()))
def test_mismatched_gradient_tree(case, bad_name):
    opt = case.make()
    params = _params()
    state = opt.init(params)
    bad = MISMATCHED[bad_name]
    with pytest.raises(ValueError) as info:
        opt.update(bad, state, params)
    message = str(info.value)
    assert str(jax.tree.structure(bad)) in message, message
    assert str(jax.tree.structure(params)) in message, message


def test_mismatched_gradient_tree_under_jit():
    opt = adaptix.adam(0.1)
    params = _params()
    bad = MISMATCHED["renamed_key"]
    with pytest.raises(ValueError, match=re.escape(str(jax.tree.structure(bad)))):
        jax.jit(opt.update)(bad, opt.init(params), params)


@pytest.mark.parametrize("stage", [adaptix.sgd, adaptix.sign_sgd, adaptix.add_decayed_weights],
                         ids=lambda f: f.__name__)
def test_stateless_stage_checks_params_tree(stage):
    """Stateless aliases check the tree against ``params``; ``add_decayed_weights`` alone is the
    minimal repro of the chain_adam_l2 mismatch cases."""
    opt = stage(0.1)
    params = _params()
    bad = MISMATCHED["renamed_key"]
    with pytest.raises(ValueError) as info:
        opt.update(bad, opt.init(params), params)
    assert str(jax.tree.structure(bad)) in str(info.value)
    assert str(jax.tree.structure(params)) in str(info.value)
