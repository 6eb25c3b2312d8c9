# %% [markdown]
# # Batch-size scaling rules
#
# When the batch grows from $B$ to $\kappa B$, how should the hyperparameters change so that training
# follows the same curve *per sample seen*?
#
# * **SGD — linear rule** (Goyal et al., 2017): $\eta \to \kappa\eta$, momentum unchanged.
# * **RMSProp / Adam — square-root rule** (Malladi et al., NeurIPS 2022, from their SDE
#   approximations): $\eta \to \sqrt\kappa\,\eta$, $1-\beta_{1,2} \to \kappa(1-\beta_{1,2})$,
#   $\epsilon \to \epsilon/\sqrt\kappa$.
#
# `adaptix.scale_hyperparameters(hparams, kappa, rule=...)` (or `sqrt_scaling` / `linear_scaling`)
# maps an optimizer's keyword arguments; here it is checked on multiclass logistic regression.

# %%
import os
from pathlib import Path

QUICK = os.environ.get("ADAPTIX_QUICK", "0") == "1"
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import adaptix

plt.rcParams.update({"figure.dpi": 80, "axes.grid": True, "grid.alpha": 0.3})

# %% [markdown]
# ## The mapping

# %%
adam_hp = {"learning_rate": 3e-4, "b1": 0.9, "b2": 0.999, "eps": 1e-8}
print(f"{'kappa':>6} {'learning_rate':>14} {'b1':>6} {'b2':>7} {'eps':>9}")
for kappa in (0.25, 1, 2, 4, 8):
    hp = adaptix.sqrt_scaling(adam_hp, kappa)
    print(f"{kappa:6g} {hp['learning_rate']:14.3g} {hp['b1']:6.3f} {hp['b2']:7.4f} {hp['eps']:9.2e}")
print()
print(adaptix.linear_scaling({"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}, 8))
try:
    adaptix.sqrt_scaling(adam_hp, 10)
except ValueError as err:
    print("\nValueError:", err)

# %% [markdown]
# ## The check: curves per sample seen
#
# Logistic regression on MNIST (the shared data when present, else scikit-learn's bundled digits),
# trained from zero with minibatches drawn in one fixed order, so that every run sees the same
# samples; the loss on 2,000 training examples is recorded at matched numbers of samples.

# %%
SHARED = Path(os.environ.get("ADAPTIX_SHARED_DATA") or Path.cwd().resolve().parents[1] / "shared" / "data")
if (SHARED / "mnist").is_dir():
    from adaptix.experiments.data import load_mnist

    d = load_mnist(SHARED)
    X, Y, name = d.train.x[:20000], d.train.y[:20000], "MNIST"
else:
    from sklearn.datasets import load_digits

    X, Y = load_digits(return_X_y=True)
    X, Y, name = (X / 16.0).astype(np.float32), Y.astype(np.int32), "digits"
print(f"{name}: {X.shape[0]} examples of {X.shape[1]} features")
X_eval, Y_eval = jnp.asarray(X[:2000]), jnp.asarray(Y[:2000])


def loss_fn(p, xb, yb):
    return optax.softmax_cross_entropy_with_integer_labels(xb @ p["w"] + p["b"], yb).mean()


def curve(opt, batch, samples, checkpoints=16, seed=0):
    idx = np.resize(np.random.default_rng(seed).permutation(len(Y)), samples)
    per = samples // (batch * checkpoints)
    xs = jnp.asarray(X[idx].reshape(checkpoints, per, batch, -1))
    ys = jnp.asarray(Y[idx].reshape(checkpoints, per, batch))

    @jax.jit
    def go(xs, ys):
        p0 = {"w": jnp.zeros((X.shape[1], 10)), "b": jnp.zeros(10)}

        def step(c, b):
            p, s = c
            u, s = opt.update(jax.grad(loss_fn)(p, *b), s, p)
            return (optax.apply_updates(p, u), s), None

        def chunk(c, b):
            c, _ = jax.lax.scan(step, c, b)
            return c, loss_fn(c[0], X_eval, Y_eval)

        return jax.lax.scan(chunk, (p0, opt.init(p0)), (xs, ys))[1]

    return np.asarray(go(xs, ys))


B, SAMPLES, KAPPAS = 1, (8192 if QUICK else 32768), (4, 8)
seen = np.arange(1, 17) * SAMPLES / 16

# %% [markdown]
# Adam at batch 1 (learning rate 3e-4), and at batch $4$ and $8$ with the hyperparameters given by
# each rule; SGD (learning rate 0.01) the same way.

# %%
families = {
    "Adam": (adaptix.adam, {"learning_rate": 3e-4, "b1": 0.9, "b2": 0.999, "eps": 1e-8}),
    "SGD": (adaptix.sgd, {"learning_rate": 0.01}),
}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
gaps = {}
for ax, (family, (make, hp)) in zip(axes, families.items()):
    ref = curve(make(**hp), B, SAMPLES)
    ax.plot(seen, ref, "k-", lw=2, label=f"batch {B}")
    for rule, style in (("sqrt", "-"), ("linear", "--")):
        for kappa, color in zip(KAPPAS, ("C0", "C3")):
            c = curve(make(**adaptix.scale_hyperparameters(hp, kappa, rule)), kappa * B, SAMPLES)
            gaps[family, rule, kappa] = float(np.mean(np.abs(c - ref)))
            ax.plot(seen, c, style, color=color, lw=1.2, label=f"batch {kappa * B}, {rule} rule")
    ax.set_xlabel("samples seen")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(f"{family} on {name}")
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
print("mean |loss(κB) - loss(B)| at matched samples:")
for (family, rule, kappa), gap in gaps.items():
    print(f"  {family:4s} {rule:6s} rule, κ = {kappa}: {gap:.4f}")

# %% [markdown]
# For Adam the square-root rule keeps the curves together, while under the linear rule (learning
# rate ×κ, betas unchanged) Adam takes far larger steps per sample and follows a different curve —
# here a faster one early on, in general simply a different training run. For SGD it is the other
# way round: the linear rule matches and the square-root rule falls behind. The same check,
# with a threshold, runs in the test suite (`tests/test_scaling.py`).
#
# The rules hold while the gradient noise dominates (small batches, as here); beyond the critical
# batch size no rule keeps the curves together, and for Adam $\kappa(1-\beta_1) < 1$ limits how far
# the square-root rule can go ($\kappa < 10$ for $\beta_1 = 0.9$).

# %% [markdown]
# ## A learning-rate sweep as one compiled program
#
# Tuning a learning rate (the rules above move it; a sweep finds it) is many runs of one model.
# With `adaptix.inject_hyperparams` the rate is part of the optimizer state, so one
# transformation serves every run and `jax.vmap` over the states trains them all in one `jit`:
# below, 9 rates × 3 seeds of Adam on a small `nnx` MLP, one compilation. Lane by lane it is
# the plain run: the last cell checks one lane against `adaptix.adam` trained alone (to float32
# rounding: the vmapped and the plain step are compiled to different loops, and over hundreds of
# steps a training run amplifies such differences).

# %%
from flax import nnx


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.hidden, self.out = nnx.Linear(8, 32, rngs=rngs), nnx.Linear(32, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.hidden(x)))


tx = adaptix.inject_hyperparams(adaptix.adam)(learning_rate=1e-3)
graphdef, _ = nnx.split(MLP(nnx.Rngs(0)))


def init(learning_rate, seed):
    params = nnx.state(MLP(nnx.Rngs(jax.random.key(seed))))
    opt_state = tx.init(params)
    opt_state.hyperparams["learning_rate"] = learning_rate
    return params, opt_state


def mlp_loss(params, x, y):
    return jnp.mean((nnx.merge(graphdef, params)(x) - y) ** 2)


def one_step(params, opt_state, x, y):
    loss, grads = jax.value_and_grad(mlp_loss)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


step = jax.jit(jax.vmap(one_step, in_axes=(0, 0, None, None)))  # every lane sees the same batch

sweep_rates = np.geomspace(1e-4, 1.0, 9)
n_seeds, sweep_steps = 3, (100 if QUICK else 500)
rates = jnp.repeat(jnp.asarray(sweep_rates, jnp.float32), n_seeds)
seeds = jnp.tile(jnp.arange(n_seeds), len(sweep_rates))
rng = np.random.default_rng(0)
x_sweep = rng.normal(size=(256, 8)).astype(np.float32)
y_sweep = np.sin(x_sweep.sum(1, keepdims=True)).astype(np.float32)
params, opt_state = jax.vmap(init)(rates, seeds)
CHECK_AT = 100  # the last cell compares one lane at this step with a plain run
for t in range(1, sweep_steps + 1):
    params, opt_state, losses = step(params, opt_state, x_sweep, y_sweep)
    if t == CHECK_AT:
        snapshot = params
final = np.asarray(losses).reshape(len(sweep_rates), n_seeds)
mean, sd = final.mean(1), final.std(1, ddof=1)
plt.figure(figsize=(5.5, 3.6))
plt.plot(sweep_rates, mean, "o-", label=f"mean of {n_seeds} seeds")
plt.fill_between(sweep_rates, mean - sd, mean + sd, alpha=0.25, label="±1 s.d.")
plt.xscale("log")
plt.yscale("log")
plt.xlabel("learning rate")
plt.ylabel(f"training loss after {sweep_steps} steps")
plt.title("Adam: 9 rates × 3 seeds in one jit(vmap(step))")
plt.legend(fontsize=8)
plt.tight_layout()
plt.show()
print("best rate:", f"{sweep_rates[int(np.argmin(mean))]:.2g}")

# %%
lane = 4 * n_seeds + 1  # rate sweep_rates[4], seed 1, trained alone with the plain alias
alone = adaptix.adam(float(rates[lane]))
p = nnx.state(MLP(nnx.Rngs(jax.random.key(1))))
s = alone.init(p)
plain_step = jax.jit(lambda p, s: alone.update(jax.grad(mlp_loss)(p, x_sweep, y_sweep), s, p))
for _ in range(CHECK_AT):
    u, s = plain_step(p, s)
    p = optax.apply_updates(p, u)
gap = max(float(jnp.max(jnp.abs(a - b[lane]))) for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(snapshot)))
print(f"after {CHECK_AT} steps, largest parameter difference, lane vs plain run: {gap:.1e}")
