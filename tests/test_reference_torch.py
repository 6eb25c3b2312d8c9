"""adaptix aliases equal ``torch.optim`` step by step, in float64, on a fixed gradient sequence.

The sequence is that of ``reference_data.gradient_sequence`` (120 steps, magnitudes 1e-6..10, exact
zeros, sign changes). PyTorch gets float64 tensors, ``p.grad`` is set at every step and
``opt.step()`` called; the parameters are compared at every step to a relative error of 1e-9, and
so is the update PyTorch implies (``p_after - p_before``) against adaptix's update, up to the
rounding of the parameters themselves (``ulp_slack``). Rprop is compared exactly.
"""

from __future__ import annotations

import functools

import numpy as np
import optax
import pytest

import adaptix

from reference_data import (
    ALTERNATING,
    EPS64,
    assert_close,
    enable_x64,
    gradient_sequence,
    initial_params,
    max_relative_difference,
    report_worst,
    run_jax,
    run_jax_many,
    run_torch,
    torch_float64_default,
)

torch = pytest.importorskip("torch")

RTOL = 1e-9


@pytest.fixture(scope="module", autouse=True)
def _float64():
    """float64 in JAX (x64) and as PyTorch's default dtype, for this module only; both restored after."""
    with enable_x64(), torch_float64_default():
        yield
    report_worst("torch:")


@pytest.fixture(scope="module")
def grads():
    return gradient_sequence()


@pytest.fixture(scope="module")
def params0():
    return initial_params()


def ulp_slack(params_before, params_after):
    """What ``p_after - p_before`` may differ from the update that produced it.

    PyTorch's update is never returned, only applied: ``p_after = fl(p_before + u)`` is rounded to
    half an ulp of ``p_after`` (per addition; NAdam adds twice), so the implied update carries an
    absolute error of up to ~``eps64 * |p|``, which for a 1e-9 update on a unit parameter is a
    relative error of 1e-7. The slack is 4 ulps of the larger parameter, elementwise; the
    parameters themselves are compared with no absolute slack.
    """
    return {
        k: 4 * EPS64 * np.maximum(np.abs(params_before[k]), np.abs(params_after[k])) for k in params_before
    }


def _compare(label, ours, theirs):
    (u_a, p_a), (p_t, implied_t, before_t) = ours, theirs
    assert_close(p_a, p_t, f"torch:{label}:params", rtol=RTOL)
    assert_close(u_a, implied_t, f"torch:{label}:updates", rtol=RTOL, atol_tree=ulp_slack(before_t, p_t))


def _cosine():
    return optax.cosine_decay_schedule(0.05, decay_steps=100, alpha=0.1)


@functools.cache
def _cosine_at(t):
    """The schedule's value at step ``t`` (adaptix's ``scale_by_learning_rate`` uses it at step ``t``).

    Cached: evaluating a schedule eagerly costs a few ms; only called inside tests (float64).
    """
    return float(_cosine()(t))


optim = torch.optim

# (id, adaptix factory, torch factory taking the parameter list, lr_at or None).
CASES = [
    ("sgd", lambda: adaptix.sgd(0.1), lambda p: optim.SGD(p, lr=0.1), None),
    ("sgd-momentum", lambda: adaptix.sgd(0.1, momentum=0.9), lambda p: optim.SGD(p, lr=0.1, momentum=0.9), None),
    (
        "sgd-nesterov",
        lambda: adaptix.sgd(0.1, momentum=0.9, nesterov=True),
        lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
        None,
    ),
    (
        "adagrad",
        lambda: adaptix.adagrad(0.5, initial_accumulator_value=0.0, eps=1e-10, eps_in_sqrt=False),
        lambda p: optim.Adagrad(p, lr=0.5),
        None,
    ),
    (
        "adagrad-initial-accumulator",
        lambda: adaptix.adagrad(0.5, initial_accumulator_value=0.1, eps=1e-10, eps_in_sqrt=False),
        lambda p: optim.Adagrad(p, lr=0.5, initial_accumulator_value=0.1),
        None,
    ),
    (
        "rmsprop",
        lambda: adaptix.rmsprop(0.01, decay=0.99, eps=1e-8, eps_in_sqrt=False),
        lambda p: optim.RMSprop(p, lr=0.01),
        None,
    ),
    (
        "rmsprop-centered",
        lambda: adaptix.rmsprop(0.01, decay=0.99, eps=1e-8, eps_in_sqrt=False, centered=True),
        lambda p: optim.RMSprop(p, lr=0.01, centered=True),
        None,
    ),
    (
        "rmsprop-momentum",
        lambda: adaptix.rmsprop(0.01, decay=0.9, eps=1e-8, eps_in_sqrt=False, momentum=0.9),
        lambda p: optim.RMSprop(p, lr=0.01, alpha=0.9, momentum=0.9),
        None,
    ),
    (
        "rmsprop-centered-momentum",
        lambda: adaptix.rmsprop(0.01, decay=0.9, eps=1e-6, eps_in_sqrt=False, centered=True, momentum=0.5),
        lambda p: optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-6, centered=True, momentum=0.5),
        None,
    ),
    ("adadelta-lr1", lambda: adaptix.adadelta(1.0), lambda p: optim.Adadelta(p, lr=1.0), None),
    ("adadelta-None-is-lr1", lambda: adaptix.adadelta(), lambda p: optim.Adadelta(p), None),
    (
        "adadelta-lr-weight-decay",
        lambda: adaptix.adadelta(0.5, rho=0.95, eps=1e-5, weight_decay=0.1),
        lambda p: optim.Adadelta(p, lr=0.5, rho=0.95, eps=1e-5, weight_decay=0.1),
        None,
    ),
    ("adam", lambda: adaptix.adam(0.05), lambda p: optim.Adam(p, lr=0.05), None),
    (
        "adam-betas-eps",
        lambda: adaptix.adam(0.01, b1=0.8, b2=0.99, eps=1e-6),
        lambda p: optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6),
        None,
    ),
    (
        "adam-l2",
        lambda: adaptix.chain(adaptix.add_decayed_weights(0.1), adaptix.adam(0.05)),
        lambda p: optim.Adam(p, lr=0.05, weight_decay=0.1),
        None,
    ),
    (
        "adamw",
        lambda: adaptix.adamw(0.05, weight_decay=0.1),
        lambda p: optim.AdamW(p, lr=0.05, weight_decay=0.1),
        None,
    ),
    # torch.optim.AdamW's default decay is 1e-2 (Optax's and adaptix's 1e-4): pass it explicitly.
    (
        "adamw-torch-default-decay",
        lambda: adaptix.adamw(0.05, weight_decay=1e-2),
        lambda p: optim.AdamW(p, lr=0.05),
        None,
    ),
    (
        "amsgrad",
        lambda: adaptix.amsgrad(0.05, debias_before_max=False),
        lambda p: optim.Adam(p, lr=0.05, amsgrad=True),
        None,
    ),
    (
        "nadam",
        lambda: adaptix.nadam(0.05, momentum_decay=4e-3),
        lambda p: optim.NAdam(p, lr=0.05, momentum_decay=4e-3),
        None,
    ),
    (
        "nadam-l2",
        lambda: adaptix.chain(adaptix.add_decayed_weights(0.1), adaptix.nadam(0.05, momentum_decay=4e-3)),
        lambda p: optim.NAdam(p, lr=0.05, weight_decay=0.1),
        None,
    ),
    (
        "nadamw",
        lambda: adaptix.nadamw(0.05, momentum_decay=4e-3, weight_decay=0.1),
        lambda p: optim.NAdam(p, lr=0.05, weight_decay=0.1, decoupled_weight_decay=True),
        None,
    ),
    ("adamax", lambda: adaptix.adamax(0.05), lambda p: optim.Adamax(p, lr=0.05), None),
    (
        "adamax-betas-eps",
        lambda: adaptix.adamax(0.01, b1=0.8, b2=0.99, eps=1e-6),
        lambda p: optim.Adamax(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6),
        None,
    ),
    # An Optax schedule against PyTorch with group["lr"] set to the schedule's value before each step.
    ("cosine-adam", lambda: adaptix.adam(_cosine()), lambda p: optim.Adam(p, lr=_cosine_at(0)), _cosine_at),
    (
        "cosine-adamw",
        lambda: adaptix.adamw(_cosine(), weight_decay=0.1),
        lambda p: optim.AdamW(p, lr=_cosine_at(0), weight_decay=0.1),
        _cosine_at,
    ),
    (
        "cosine-sgd-momentum",
        lambda: adaptix.sgd(_cosine(), momentum=0.9),
        lambda p: optim.SGD(p, lr=_cosine_at(0), momentum=0.9),
        _cosine_at,
    ),
    # The design's Adam, built by hand from primitives.
    (
        "hand-built-adam",
        lambda: adaptix.chain(
            adaptix.trace(0.9, ema=True),
            adaptix.scale_by_rms(0.999, 1e-8, eps_in_sqrt=False, bias_correction=True),
            adaptix.bias_correction(0.9),
            adaptix.scale_by_learning_rate(0.05),
        ),
        lambda p: optim.Adam(p, lr=0.05),
        None,
    ),
]


@pytest.mark.parametrize("make_ours, make_torch, lr_at", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_matches_torch(make_ours, make_torch, lr_at, grads, params0, request):
    label = request.node.callspec.id
    ours = run_jax(make_ours(), grads, params0)
    theirs = run_torch(make_torch, grads, params0, lr_at)
    assert max(np.abs(ours[1][k][-1] - params0[k]).max() for k in params0) > 1e-3  # it moves
    _compare(label, ours, theirs)


def _rprop_state(opt, tensors):
    return {
        k: (opt.state[p]["step_size"].numpy().copy(), opt.state[p]["prev"].numpy().copy())
        for k, p in tensors.items()
    }


@pytest.mark.parametrize(
    "lr, kwargs, torch_kwargs",
    [
        (0.01, {}, {}),
        (
            0.05,
            {"eta_minus": 0.3, "eta_plus": 1.5, "min_step_size": 1e-4, "max_step_size": 0.2},
            {"etas": (0.3, 1.5), "step_sizes": (1e-4, 0.2)},
        ),
    ],
    ids=["defaults", "custom-etas-bounds"],
)
def test_rprop_equals_torch_exactly(lr, kwargs, torch_kwargs, grads, params0):
    """Parameters, step sizes and stored previous gradients bit for bit, at every step."""
    u_a, p_a, states = run_jax(adaptix.rprop(lr, **kwargs), grads, params0, states=True)
    p_t, implied_t, before_t, torch_states = run_torch(
        lambda p: torch.optim.Rprop(p, lr=lr, **torch_kwargs), grads, params0, with_state=_rprop_state
    )
    rprop_state = states[0]
    for k in grads:
        np.testing.assert_array_equal(p_a[k], p_t[k], err_msg=f"params[{k}]")
        torch_step_sizes = np.stack([s[k][0] for s in torch_states])
        torch_prev = np.stack([s[k][1] for s in torch_states])
        np.testing.assert_array_equal(rprop_state.step_sizes[k], torch_step_sizes, err_msg=f"step sizes[{k}]")
        np.testing.assert_array_equal(rprop_state.prev_grad[k], torch_prev, err_msg=f"prev grad[{k}]")
    assert_close(u_a, implied_t, f"torch:rprop-{lr}:updates", rtol=RTOL, atol_tree=ulp_slack(before_t, p_t))
    # The sequence drives the alternating coordinate to the minimum step size.
    k, idx = ALTERNATING
    min_step = kwargs.get("min_step_size", 1e-6)
    assert rprop_state.step_sizes[k][(-1, *idx)] == min_step
    if kwargs:
        assert (rprop_state.step_sizes["w"] == kwargs["max_step_size"]).any()


def test_optax_amsgrad_form_differs_from_torch(grads, params0):
    """debias_before_max=True (Optax's form) is not PyTorch's AMSGrad on this sequence; False is."""
    (u_optax_form, p_optax_form), (u_torch_form, _) = run_jax_many(
        [adaptix.amsgrad(0.05), adaptix.amsgrad(0.05, debias_before_max=False)], grads, params0
    )
    p_t, implied_t, before_t = run_torch(lambda p: torch.optim.Adam(p, lr=0.05, amsgrad=True), grads, params0)
    slack = ulp_slack(before_t, p_t)
    assert_close(u_torch_form, implied_t, "torch:amsgrad-torch-form:updates", rtol=RTOL, atol_tree=slack)
    assert max_relative_difference(u_optax_form, implied_t) > 0.1
    assert max(np.abs(p_optax_form[k] - p_t[k]).max() for k in p_t) > 1e-2
