"""Batch-size scaling rules: the mapping itself, and checks of it in training.

One check runs every optimizer and option the square-root rule accepts on a
noise-dominated quadratic (the regime the rule is derived for) at batch B and
4B, with the same per-sample noise; the other trains multiclass logistic
regression with Adam (MNIST from the shared data when present, else
scikit-learn's bundled digits). Both compare the loss at matched numbers of
samples seen: under the square-root rule the curves line up, under the linear
rule they do not.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptix

SHARED_DATA = Path(os.environ.get("ADAPTIX_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def test_sqrt_rule_values():
    hp = adaptix.scale_hyperparameters(
        {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "eps_root": 1e-16, "weight_decay": 1e-2,
         "nesterov": False}, 4.0)
    assert hp["learning_rate"] == pytest.approx(2e-3)
    assert hp["b1"] == pytest.approx(0.6)
    assert hp["b2"] == pytest.approx(0.996)
    assert hp["eps"] == pytest.approx(5e-9)
    assert hp["eps_root"] == pytest.approx(2.5e-17)
    assert hp["weight_decay"] == pytest.approx(2e-2)
    assert hp["nesterov"] is False
    # shrinking the batch: kappa < 1 inverts the map
    back = adaptix.sqrt_scaling({k: hp[k] for k in ("learning_rate", "b1", "b2", "eps")}, 0.25)
    assert back == pytest.approx({"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8})
    # PyTorch names
    torch_hp = adaptix.sqrt_scaling({"lr": 1e-3, "betas": (0.9, 0.999), "alpha": 0.99}, 2)
    assert torch_hp["lr"] == pytest.approx(math.sqrt(2) * 1e-3)
    assert torch_hp["betas"] == pytest.approx((0.8, 0.998))
    assert torch_hp["alpha"] == pytest.approx(0.98)


def test_linear_rule_values_and_sgd_stays_sgd():
    hp = adaptix.linear_scaling({"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}, 8)
    assert hp == pytest.approx({"learning_rate": 0.4, "momentum": 0.9, "nesterov": True})
    adaptix.sgd(**hp)
    linear = adaptix.scale_hyperparameters({"learning_rate": 0.1}, 3, rule="linear")
    assert linear["learning_rate"] == pytest.approx(0.3)


def test_schedules_are_scaled_and_retimed():
    sched = optax.linear_schedule(1.0, 0.0, 100)
    hp = adaptix.sqrt_scaling({"learning_rate": sched}, 4)
    # step k at batch 4B has seen the samples of step 4k at batch B
    for k in [0, 5, 20, 30]:
        assert float(hp["learning_rate"](k)) == pytest.approx(2.0 * float(sched(4 * k)))
    lin = adaptix.linear_scaling({"learning_rate": sched}, 4)
    assert float(lin["learning_rate"](5)) == pytest.approx(4.0 * float(sched(20)))
    opt = adaptix.adam(**hp)
    opt.update(jnp.ones(2), opt.init(jnp.zeros(2)))


@pytest.mark.parametrize("kappa, match", [
    (0, r"kappa \(the batch-size ratio new/old\) must be finite and in \(0, inf\), got 0"),
    (-2.0, r"got -2.0"),
    (float("inf"), r"got inf"),
    (float("nan"), r"got nan"),
])
def test_bad_kappa(kappa, match):
    with pytest.raises(ValueError, match=match):
        adaptix.scale_hyperparameters({"learning_rate": 1e-3}, kappa)
    with pytest.raises(ValueError, match=match):
        adaptix.scale_hyperparameters({"learning_rate": 1e-3}, kappa, rule="linear")


def test_kappa_times_one_minus_beta_at_least_one_is_an_error():
    with pytest.raises(ValueError, match=r"kappa \* \(1 - b1\) = 10 \* 0.1 = 1 >= 1.*kappa < 1 / \(1 - b1\) = 10"):
        adaptix.sqrt_scaling({"learning_rate": 1e-3, "b1": 0.9}, 10)
    with pytest.raises(ValueError, match=r"kappa \* \(1 - betas\[0\]\)"):
        adaptix.sqrt_scaling({"betas": (0.5, 0.999)}, 3)
    adaptix.sqrt_scaling({"b1": 0.9}, 9.99)  # just below the limit is fine
    adaptix.linear_scaling({"momentum": 0.9}, 100)  # the linear rule leaves momentum alone


def test_other_errors():
    with pytest.raises(ValueError, match="rule must be one of"):
        adaptix.scale_hyperparameters({}, 2, rule="cubic")
    with pytest.raises(ValueError, match=r"does not know how to scale 'beta_1'.*strict=False"):
        adaptix.sqrt_scaling({"beta_1": 0.9}, 2)
    assert adaptix.sqrt_scaling({"beta_1": 0.9}, 2, strict=False) == {"beta_1": 0.9}
    with pytest.raises(ValueError, match=r"b2 must be finite and in \[0, 1\), got 1.0"):
        adaptix.sqrt_scaling({"b2": 1.0}, 2)
    with pytest.raises(TypeError, match="kappa"):
        adaptix.sqrt_scaling({"b2": 0.9}, "2")
    with pytest.raises(TypeError, match="hparams must be a dict"):
        adaptix.sqrt_scaling([("b2", 0.9)], 2)


def test_eps_inside_the_root_scales_like_the_second_moment():
    """v ~ Var(g) ~ 1/B: what is added to v (eps with eps_in_sqrt, eps_root, initial_scale) is divided by kappa,
    what is added to sqrt(v) by sqrt(kappa)."""
    inside = adaptix.sqrt_scaling({"decay": 0.99, "eps": 1e-8, "eps_in_sqrt": True, "initial_scale": 1.0}, 4)
    assert inside == pytest.approx({"decay": 0.96, "eps": 2.5e-9, "eps_in_sqrt": True, "initial_scale": 0.25})
    outside = adaptix.sqrt_scaling({"decay": 0.99, "eps": 1e-8, "eps_in_sqrt": False}, 4)
    assert outside["eps"] == pytest.approx(5e-9)
    # absent: the optimizer's default, from its keys: rmsprop's `decay` (adaptix and Optax: inside the root),
    # Adam's b1/b2 and PyTorch's RMSprop (`alpha`) add eps to sqrt(v)
    assert adaptix.sqrt_scaling({"decay": 0.99, "eps": 1e-8}, 4)["eps"] == pytest.approx(2.5e-9)
    assert adaptix.sqrt_scaling({"b2": 0.99, "eps": 1e-8}, 4)["eps"] == pytest.approx(5e-9)
    assert adaptix.sqrt_scaling({"lr": 1e-3, "alpha": 0.99, "eps": 1e-8}, 4)["eps"] == pytest.approx(5e-9)
    # a primitive whose signature has no eps_in_sqrt: say it to the rule
    assert adaptix.sqrt_scaling({"decay": 0.99, "eps": 1e-8}, 4, eps_in_sqrt=False)["eps"] == pytest.approx(5e-9)
    assert adaptix.sqrt_scaling({"b2": 0.99, "eps": 1e-8}, 4, eps_in_sqrt=True)["eps"] == pytest.approx(2.5e-9)
    with pytest.raises(ValueError, match=r"eps_in_sqrt=False contradicts the hyperparameters' eps_in_sqrt=True"):
        adaptix.sqrt_scaling({"eps": 1e-8, "eps_in_sqrt": True}, 4, eps_in_sqrt=False)
    with pytest.raises(TypeError, match=r"eps_in_sqrt must be True or False, got 1"):
        adaptix.sqrt_scaling({"eps": 1e-8, "eps_in_sqrt": 1}, 4)
    # the linear rule (SGD) has no eps to move
    assert adaptix.linear_scaling({"decay": 0.99, "eps": 1e-8}, 4) == {"decay": 0.99, "eps": 1e-8}


def test_heavy_ball_momentum_is_an_ema_of_the_steps():
    """t = mu t + eta u is an EMA of u (decay mu) times eta / (1 - mu): 1 - mu x kappa, eta / (1 - mu) x sqrt(kappa),
    so eta x kappa^1.5 (the old map, 1 - mu x kappa with eta x sqrt(kappa), shrank the step as kappa^-1/2)."""
    hp = adaptix.sqrt_scaling({"learning_rate": 1e-4, "decay": 0.99, "momentum": 0.9, "nesterov": True}, 4)
    assert hp == pytest.approx({"learning_rate": 8e-4, "decay": 0.96, "momentum": 0.6, "nesterov": True})
    assert hp["learning_rate"] / (1 - hp["momentum"]) == pytest.approx(2 * 1e-4 / (1 - 0.9))
    adaptix.rmsprop(**hp)
    # no momentum (None or 0): the plain rule
    for off in (None, 0.0, 0):
        plain = adaptix.sqrt_scaling({"learning_rate": 1e-4, "momentum": off}, 4)
        assert plain["learning_rate"] == pytest.approx(2e-4) and plain["momentum"] == off
    sched = optax.linear_schedule(1.0, 0.0, 100)
    scaled = adaptix.sqrt_scaling({"learning_rate": sched, "momentum": 0.9}, 4)["learning_rate"]
    assert float(scaled(5)) == pytest.approx(8.0 * float(sched(20)))
    with pytest.raises(ValueError, match=r"kappa \* \(1 - momentum\) = 4 \* 0.5 = 2 >= 1.*"
                                         r"kappa < 1 / \(1 - momentum\) = 2"):
        adaptix.sqrt_scaling({"learning_rate": 1e-3, "momentum": 0.5}, 4)
    with pytest.raises(ValueError, match=r"momentum must be finite and in \[0, 1\), got 1.0"):
        adaptix.sqrt_scaling({"learning_rate": 1e-3, "momentum": 1.0}, 2)
    with pytest.raises(TypeError, match=r"momentum must be a real number in \[0, 1\), got '0.9'"):
        adaptix.sqrt_scaling({"momentum": "0.9"}, 2)
    # the linear rule (Goyal et al.) keeps it
    assert adaptix.linear_scaling({"learning_rate": 0.1, "momentum": 0.9}, 4) == pytest.approx(
        {"learning_rate": 0.4, "momentum": 0.9})


def test_adagrad_is_refused_by_the_square_root_rule():
    with pytest.raises(ValueError, match=r"initial_accumulator_value is AdaGrad's.*not an EMA.*does not cover it"):
        adaptix.sqrt_scaling({"learning_rate": 0.1, "initial_accumulator_value": 0.1, "eps": 1e-7}, 4)
    assert adaptix.linear_scaling({"learning_rate": 0.1, "initial_accumulator_value": 0.1}, 4) == pytest.approx(
        {"learning_rate": 0.4, "initial_accumulator_value": 0.1})


# --------------------------------------------------------------------------------------------
# The check on a real problem
# --------------------------------------------------------------------------------------------


def _dataset():
    if (SHARED_DATA / "mnist").is_dir():
        from adaptix.experiments.data import load_mnist

        d = load_mnist(SHARED_DATA)
        return d.train.x[:20000], d.train.y[:20000], "mnist"
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y.astype(np.int32), "digits"


def _loss(p, xb, yb):
    return optax.softmax_cross_entropy_with_integer_labels(xb @ p["w"] + p["b"], yb).mean()


def _curve(x, y, hparams, batch, samples, checkpoints, seed=0):
    """Evaluation loss (on the first 2000 examples) after every ``samples / checkpoints`` samples."""
    perm = np.random.default_rng(seed).permutation(len(y))
    idx = np.resize(perm, samples)
    per = samples // (batch * checkpoints)
    assert per * batch * checkpoints == samples
    xs = jnp.asarray(x[idx].reshape(checkpoints, per, batch, -1))
    ys = jnp.asarray(y[idx].reshape(checkpoints, per, batch))
    x_eval, y_eval = jnp.asarray(x[:2000]), jnp.asarray(y[:2000])
    opt = adaptix.adam(**hparams)

    @jax.jit
    def run(xs, ys):
        p0 = {"w": jnp.zeros((x.shape[1], 10)), "b": jnp.zeros(10)}

        def step(carry, batch_):
            p, s = carry
            u, s = opt.update(jax.grad(_loss)(p, *batch_), s, p)
            return (optax.apply_updates(p, u), s), None

        def chunk(carry, batch_):
            carry, _ = jax.lax.scan(step, carry, batch_)
            return carry, _loss(carry[0], x_eval, y_eval)

        return jax.lax.scan(chunk, (p0, opt.init(p0)), (xs, ys))[1]

    return np.asarray(run(xs, ys))


def test_sqrt_rule_lines_up_curves_per_sample_and_linear_rule_does_not():
    x, y, name = _dataset()
    base = {"learning_rate": 3e-4, "b1": 0.9, "b2": 0.999, "eps": 1e-8}
    batch, kappa, samples, checkpoints = 1, 4, 20480, 16
    ref = _curve(x, y, base, batch, samples, checkpoints)
    sqrt = _curve(x, y, adaptix.sqrt_scaling(base, kappa), kappa * batch, samples, checkpoints)
    linear = _curve(x, y, adaptix.linear_scaling(base, kappa), kappa * batch, samples, checkpoints)
    gap_sqrt = float(np.mean(np.abs(sqrt - ref)))
    gap_linear = float(np.mean(np.abs(linear - ref)))
    print(f"{name}: mean |loss gap| at matched samples: sqrt rule {gap_sqrt:.4f}, linear rule {gap_linear:.4f}")
    assert ref[-1] < 0.6 * ref[0]  # it trained
    assert gap_sqrt < 0.5 * gap_linear
    assert float(np.mean(np.abs(np.log(sqrt / ref)))) < 0.1  # within 10% on average


@pytest.mark.parametrize("rule, kappa", [("sqrt", 4), ("sqrt", 16), ("linear", 8)])
def test_decoupled_weight_decay_per_sample_is_kept(rule, kappa):
    """With zero gradients AdamW only decays: kappa old steps and one scaled step shrink p alike (to first order)."""
    hp = {"learning_rate": 1e-3, "weight_decay": 1e-2}
    scaled = adaptix.scale_hyperparameters(hp, kappa, rule)
    assert scaled["weight_decay"] == pytest.approx(hp["weight_decay"] * (np.sqrt(kappa) if rule == "sqrt" else 1))
    p = jnp.ones(3)

    def decayed(hparams, steps):
        opt = adaptix.adamw(**hparams)
        params, state = p, opt.init(p)
        for _ in range(steps):
            u, state = opt.update(jnp.zeros(3), state, params)
            params = params + u
        return float(1.0 - params[0])

    old, new = decayed(hp, kappa), decayed(scaled, 1)
    if rule == "sqrt":
        # 1 - (1 - eta lam)^k vs k eta lam, seen through float32 rounding of 1 - p (~1e-3 here);
        # keeping lambda unchanged would be off by a factor sqrt(kappa)
        assert new == pytest.approx(old, rel=5e-3)


# --------------------------------------------------------------------------------------------
# The check on a noise-dominated quadratic, for every optimizer and option the square-root rule accepts
# --------------------------------------------------------------------------------------------

DIM, SAMPLES, CHECKPOINTS, SIGMA, KAPPA = 512, 2048, 16, 10.0, 4
# The noise variance per sample is SIGMA**2 = 100, so v ~ 100 / batch: eps = 100 inside the root, 3 outside it and
# initial_scale = 3000 all matter. Measured gaps (mean |log loss ratio|) under the rules before the fix: 0.088 with
# eps / sqrt(kappa) inside the root, 0.067 with initial_scale unchanged, 0.52 with 1 - momentum x kappa and
# lr x sqrt(kappa), 0.091 keeping momentum 0.98 and lr x sqrt(kappa); eps / kappa outside the root: 0.055.
def _natural_gradient(learning_rate, decay, eps, power, eps_in_sqrt=False):
    """``g / (v + eps)`` or ``g / (v^p + eps)``: scale_by_rms with another exponent than 1/2."""
    return adaptix.chain(adaptix.scale_by_rms(decay, eps, eps_in_sqrt=eps_in_sqrt, power=power),
                         adaptix.scale_by_learning_rate(learning_rate))


QUADRATIC_CASES = {
    "adam": (adaptix.adam, {"learning_rate": 3e-3, "b1": 0.9, "b2": 0.99, "eps": 1e-8}),
    "rmsprop-eps-outside": (adaptix.rmsprop, {"learning_rate": 3e-3, "decay": 0.99, "eps": 3.0, "eps_in_sqrt": False}),
    "rmsprop-eps-in-sqrt-centered": (adaptix.rmsprop, {"learning_rate": 3e-3, "decay": 0.99, "eps": 100.0,
                                                       "eps_in_sqrt": True, "centered": True}),
    "rmsprop-initial-scale": (adaptix.rmsprop, {"learning_rate": 3e-3, "decay": 0.99, "eps": 1e-8,
                                                "initial_scale": 3000.0}),
    "rmsprop-momentum": (adaptix.rmsprop, {"learning_rate": 6e-5, "decay": 0.99, "eps": 1e-8, "momentum": 0.98}),
    "rmsprop-nesterov": (adaptix.rmsprop, {"learning_rate": 3e-4, "decay": 0.99, "eps": 1e-8, "momentum": 0.9,
                                           "nesterov": True}),
    # v ~ 100 / batch: the step g / v is ~ batch / 100 times the gradient, so the learning rate is kept (kappa^0)
    "natural-gradient-power-1": (_natural_gradient, {"learning_rate": 3e-2, "decay": 0.99, "eps": 30.0, "power": 1.0}),
    "rms-power-0.75-eps-in-sqrt": (_natural_gradient, {"learning_rate": 1e-2, "decay": 0.99, "eps": 100.0,
                                                       "power": 0.75, "eps_in_sqrt": True}),
}


@functools.cache
def _per_sample_noise():
    return jax.random.normal(jax.random.PRNGKey(0), (SAMPLES, DIM))


def _quadratic_curve(opt, batch):
    """Loss mean(x**2) / 2 after every SAMPLES / CHECKPOINTS samples; a minibatch's gradient is x plus the mean of
    its samples' noise (variance SIGMA**2 / batch), the same samples at every batch size. Starts at x = 1."""

    @jax.jit
    def run(noise):
        def step(carry, n):
            x, s = carry
            u, s = opt.update(x + SIGMA * n.mean(0), s, x)
            return (x + u, s), None

        def chunk(carry, n):
            carry, _ = jax.lax.scan(step, carry, n)
            return carry, 0.5 * jnp.mean(carry[0] ** 2)

        x0 = jnp.ones(DIM)
        return jax.lax.scan(chunk, (x0, opt.init(x0)), noise.reshape(CHECKPOINTS, -1, batch, DIM))[1]

    return np.asarray(run(_per_sample_noise()))


@pytest.mark.parametrize("case", list(QUADRATIC_CASES))
def test_sqrt_rule_lines_up_noise_dominated_curves_per_sample(case):
    make, base = QUADRATIC_CASES[case]
    ref = _quadratic_curve(make(**base), 1)
    sqrt = _quadratic_curve(make(**adaptix.sqrt_scaling(base, KAPPA)), KAPPA)
    linear = _quadratic_curve(make(**adaptix.linear_scaling(base, KAPPA)), KAPPA)
    gap_sqrt = float(np.mean(np.abs(np.log(sqrt / ref))))
    gap_linear = float(np.mean(np.abs(np.log(linear / ref))))
    print(f"{case}: mean |log loss ratio| at matched samples: sqrt rule {gap_sqrt:.3f}, linear rule {gap_linear:.3f}")
    assert ref[-1] < 0.5 * ref[0]  # it trained
    assert gap_sqrt < 0.04
    assert gap_linear > 5 * gap_sqrt


def test_power_of_the_second_moment_sets_the_exponents():
    natural = adaptix.sqrt_scaling({"learning_rate": 0.1, "decay": 0.99, "eps": 1.0, "weight_decay": 0.5,
                                    "power": 1.0}, 4)
    assert natural == pytest.approx({"learning_rate": 0.1, "decay": 0.96, "eps": 0.25, "weight_decay": 2.0,
                                     "power": 1.0})
    quarter = adaptix.sqrt_scaling({"learning_rate": 0.1, "eps": 1.0, "power": 0.25, "momentum": 0.99}, 16)
    assert quarter == pytest.approx({"learning_rate": 0.1 * 16 ** 1.75, "eps": 0.5, "power": 0.25, "momentum": 0.84})
    assert adaptix.linear_scaling({"learning_rate": 0.1, "power": 1.0}, 4) == {"learning_rate": 0.4, "power": 1.0}
    with pytest.raises(ValueError, match="power must be a number in"):
        adaptix.sqrt_scaling({"learning_rate": 0.1, "power": 0.0}, 4)
