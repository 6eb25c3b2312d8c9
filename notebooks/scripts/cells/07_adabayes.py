# %% [markdown]
# # AdaBayes: optimization as Bayesian filtering
#
# Aitchison (2020) treats each parameter as the hidden state of a scalar Kalman filter whose
# observations are the backpropagated gradients. Because all the *other* parameters keep changing,
# the optimum of this one drifts: the filter models it as a slow random walk towards a prior
# $\mathcal N(0, \sigma^2)$. The posterior variance $\sigma^2_{post}$ is then the per-coordinate learning
# rate, and it moves between two familiar limits:
#
# * little data: $\sigma^2_{post} \approx \sigma^2$ — **SGD** with learning rate $\alpha = B\sigma^2$;
# * much data: $\sigma^2_{post} \approx \eta/\sqrt{\langle g^2\rangle}$ — **Adam** with learning rate $\eta$.
#
# adaptix has both variants as chains: `adabayes` = `chain(trace(b1, ema=True), bias_correction(b1),
# scale_by_posterior_variance(η, α, B), scale(-1))`, and `adabayes_fp`, which replaces the filter by
# its fixed point, $1/s = 1/(2\alpha) + \sqrt{1/(4\alpha^2) + \hat v/\eta^2}$.

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
ETA, ALPHA = 1e-3, 0.1

# %% [markdown]
# ## The learning rate the filter settles at
#
# The fixed point as a function of the gradient's second moment $v$: flat at $\alpha$ (SGD) for
# $v \ll \eta^2/\alpha^2$, and $\eta/\sqrt v$ (Adam) beyond.

# %%
v = jnp.asarray(np.geomspace(1e-12, 1e2, 200), jnp.float32)
fp = adaptix.scale_by_posterior_variance_fp(ETA, ALPHA, decay=0.0, eps=0.0)
s_fp = np.asarray(fp.update(jnp.ones_like(v), fp.init(v), chain_input=jnp.sqrt(v))[0])
plt.figure(figsize=(6, 3.4))
plt.loglog(v, s_fp, lw=2, label="AdaBayes-FP")
plt.loglog(v, np.full_like(v, ALPHA), "k:", lw=1, label="SGD: α")
plt.loglog(v, ETA / np.sqrt(v), "k--", lw=1, label="Adam: η/√v")
plt.axvline(ETA**2 / ALPHA**2, color="0.5", lw=0.6)
plt.ylim(1e-5, 1)
plt.xlabel("second moment of the gradient v")
plt.ylabel("per-coordinate learning rate")
plt.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## The filter's transient
#
# `scale_by_posterior_variance` runs the filter itself: it starts at $\alpha$ and moves towards the
# fixed point as gradients accumulate — after roughly $1/(\eta^2/\alpha + 2 v s)$ steps, which is
# tens of thousands of steps for small gradients.

# %%
g = jnp.asarray([1e-3, 1e-2, 0.1, 1.0])
filt = adaptix.scale_by_posterior_variance(ETA, ALPHA, batch_size=1)
steps = 30000


def body(state, _):
    state = filt.update(g, state)[1]
    return state, state.variance


_, path = jax.lax.scan(body, filt.init(g), None, length=steps)
s_target = np.asarray(fp.update(jnp.ones_like(g), fp.init(g), chain_input=g)[0])
plt.figure(figsize=(6, 3.4))
for i, color in enumerate(plt.get_cmap("tab10").colors[: len(g)]):
    plt.loglog(np.arange(1, steps + 1), path[:, i], color=color, label=f"|g| = {float(g[i]):g}")
    plt.axhline(s_target[i], color=color, ls=":", lw=0.8)
plt.xlabel("step")
plt.ylabel("posterior variance s_t")
plt.legend(fontsize=8)
plt.title("dotted: the fixed point (AdaBayes-FP)", fontsize=9)
plt.show()

# %% [markdown]
# ## Against Adam on logistic regression
#
# MNIST (the shared data when present, else scikit-learn's digits), batch 128, a short run.
# AdaBayes needs the batch size: the filter counts data points. `adabayes_fp` does not.

# %%
SHARED = Path(os.environ.get("ADAPTIX_SHARED_DATA") or Path.cwd().resolve().parents[1] / "shared" / "data")
if (SHARED / "mnist").is_dir():
    from adaptix.experiments.data import load_mnist

    d = load_mnist(SHARED)
    n_train = 12800 if QUICK else 60000
    x_train, y_train, x_test, y_test = d.train.x[:n_train], d.train.y[:n_train], d.test.x, d.test.y
    side, name = 28, "MNIST"
else:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = (x / 16.0).astype(np.float32), y.astype(np.int32)
    x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]
    side, name = 8, "digits"
BATCH, EPOCHS = 128, (2 if QUICK else 5)
print(f"{name}: {len(y_train)} training examples, {EPOCHS} epochs of batch {BATCH}")


def loss_fn(p, xb, yb):
    return optax.softmax_cross_entropy_with_integer_labels(xb @ p["w"] + p["b"], yb).mean()


def train(opt, seed=0):
    rng = np.random.default_rng(seed)
    steps_per_epoch = len(y_train) // BATCH
    order = np.concatenate([rng.permutation(len(y_train))[: steps_per_epoch * BATCH] for _ in range(EPOCHS)])
    xs = jnp.asarray(x_train[order].reshape(-1, BATCH, x_train.shape[1]))
    ys = jnp.asarray(y_train[order].reshape(-1, BATCH))

    @jax.jit
    def go(xs, ys):
        p0 = {"w": jnp.zeros((x_train.shape[1], 10)), "b": jnp.zeros(10)}

        def step(c, b):
            p, s = c
            loss, grads = jax.value_and_grad(loss_fn)(p, *b)
            u, s = opt.update(grads, s, p)
            return (optax.apply_updates(p, u), s), loss

        (p, s), losses = jax.lax.scan(step, (p0, opt.init(p0)), (xs, ys))
        return p, s, losses

    p, s, losses = go(xs, ys)
    acc = float(jnp.mean(jnp.argmax(jnp.asarray(x_test) @ p["w"] + p["b"], -1) == jnp.asarray(y_test)))
    return np.asarray(losses), acc, s


sgd_ema = adaptix.chain(adaptix.trace(0.9, ema=True), adaptix.bias_correction(0.9), adaptix.scale(-ALPHA))
runs = {
    "Adam (η = 1e-3)": adaptix.adam(ETA),
    "AdaBayes": adaptix.adabayes(ETA, ALPHA, batch_size=BATCH),
    "AdaBayes-FP": adaptix.adabayes_fp(ETA, ALPHA),
    "SGD, EMA momentum (α = 0.1)": sgd_ema,
}
results = {k: train(opt) for k, opt in runs.items()}


def smooth(y, w=20):
    return np.convolve(y, np.ones(w) / w, mode="valid")


plt.figure(figsize=(7, 3.8))
for k, (losses, acc, _) in results.items():
    plt.plot(smooth(losses), lw=1.2, label=f"{k}: test accuracy {acc:.4f}")
plt.yscale("log")
plt.xlabel("iteration")
plt.ylabel("training loss (minibatch, smoothed)")
plt.title(f"logistic regression on {name}")
plt.legend(fontsize=8)
plt.show()
for k, (losses, acc, _) in results.items():
    print(f"{k:28s} final training loss {losses[-50:].mean():.4f}   test accuracy {acc:.4f}")

# %% [markdown]
# On this problem the per-weight gradients are small compared with $\eta/\alpha$ and the run is
# short, so the filter has only begun its move away from the SGD limit, and AdaBayes behaves much
# like SGD with momentum. AdaBayes-FP takes smaller steps than *both* of its limits: its rate
# $1/\big(1/(2\alpha) + \sqrt{1/(4\alpha^2) + \hat v/\eta^2}\big)$ is below $\alpha$ and below
# $\eta/\sqrt{\hat v}$ everywhere, most of all at the crossover
# $\hat v = \eta^2/\alpha^2$, where it is smaller by the golden ratio, 1.618.
#
# Where the filter ended up — AdaBayes's posterior variance for the weights of class 0, as an
# image: pixels that are always blank never produce a gradient and keep the prior's learning rate
# $\alpha$; pixels that see data have moved towards Adam's $\eta/\sqrt{v}$, most where the gradients
# are largest.

# %%
state = results["AdaBayes"][2]
variance = np.asarray(optax.tree_utils.tree_get(state, "variance")["w"])  # the filter's posterior variance
fig, ax = plt.subplots(figsize=(4.2, 3.6))
im = ax.imshow(np.log10(variance[:, 0].reshape(side, side)), cmap="viridis")
ax.set_title("log10 posterior variance, class-0 weights", fontsize=9)
ax.axis("off")
fig.colorbar(im)
plt.show()
print(f"fraction of weights still at the prior (SGD-like, s > 0.9 α): {np.mean(variance > 0.9 * ALPHA):.2f}")
