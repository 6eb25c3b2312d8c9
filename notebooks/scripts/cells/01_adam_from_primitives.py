# %% [markdown]
# # Adam from primitives
#
# Every adaptix optimizer is a short `chain(...)` of primitives. This notebook builds Adam from
# its parts, shows why the chain hands every stage the raw gradient (`chain_input=`), and what changes
# when the parts are reordered: momentum of the raw vs the rescaled direction, where `eps` goes,
# AdamW vs Adam+L2, and momentum before vs after the learning rate.
#
# Sizes are reduced when `ADAPTIX_QUICK=1` (as in CI).

# %%
import os

QUICK = os.environ.get("ADAPTIX_QUICK", "0") == "1"
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import adaptix
from adaptix.experiments import landscapes

plt.rcParams.update({"figure.dpi": 80, "axes.grid": True, "grid.alpha": 0.3})
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Composing Adam
#
# $m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t$, $v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2$,
# $\Delta_t = -\alpha\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)$ — four stages, each with one meaning:

# %%
adam = adaptix.chain(
    adaptix.trace(0.9, ema=True),  # m_t: EMA of the raw gradient
    adaptix.scale_by_rms(0.999, 1e-8, eps_in_sqrt=False, bias_correction=True),  # / (sqrt(v_hat) + eps)
    adaptix.bias_correction(0.9),  # / (1 - b1^t)
    adaptix.scale_by_learning_rate(1e-3),  # * -lr
)


def run(opt, grads, params=None):
    """Feeds a gradient stream (a list, or an array with time first), applying every update; returns the updates."""
    grads = jnp.stack(grads) if isinstance(grads, (list, tuple)) else jnp.asarray(grads)
    params = jnp.zeros_like(grads[0]) if params is None else params

    def step(carry, g):
        p, s = carry
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), u

    return jax.jit(lambda p, gs: jax.lax.scan(step, (p, opt.init(p)), gs)[1])(params, grads)


grads = jnp.asarray(rng.standard_normal((200, 5)) * [1, 10, 0.1, 1e-3, 100] + 0.3, jnp.float32)
ours, theirs = run(adam, grads), run(optax.adam(1e-3), grads)
print("max |adaptix chain - optax.adam| over 200 steps:", float(jnp.max(jnp.abs(ours - theirs))))

# %% [markdown]
# ## 2. Why the chain hands every stage the raw gradient
#
# In a plain sequential chain, `scale_by_rms` would measure the *output of the momentum stage*,
# not the gradient. `optax.chain` does exactly that; `adaptix.chain` passes the entering gradient
# as `chain_input=`, so statistic stages measure it while rescaling their input.

# %%
plain = optax.chain(  # the same stages, but the RMS now measures the EMA, not g
    adaptix.trace(0.9, ema=True),
    adaptix.scale_by_rms(0.999, 1e-8, eps_in_sqrt=False, bias_correction=True),
    adaptix.bias_correction(0.9),
    adaptix.scale_by_learning_rate(1e-3),
)
wrong = run(plain, grads)
diff = jnp.max(jnp.abs(wrong - theirs), axis=1) / 1e-3
plt.figure(figsize=(6, 3))
plt.semilogy(np.arange(1, 201), diff)
plt.xlabel("step")
plt.ylabel("max |Δ - Δ_adam| / lr")
plt.title("optax.chain(trace, scale_by_rms, ...) is not Adam")
plt.show()
print(f"after 30 steps the sequential chain is off by {float(diff[29]):.2f} learning rates")

# %% [markdown]
# ## 3. Reordering: momentum of the raw vs the rescaled direction
#
# * `chain(trace, scale_by_rms)` — the buffer holds **raw gradients**; each step is normalised by
#   the *current* second moment (Adam).
# * `chain(scale_by_rms, trace)` — the buffer holds **already normalised steps** (Hinton's RMSProp
#   with momentum, `optax.rmsprop(momentum=...)`).
#
# A single gradient spike shows the difference: with momentum after the rescaling the spike is
# normalised once, when it arrives, and its normalised value then echoes for $1/(1-\beta)$ steps;
# with momentum before the rescaling the echo of the raw spike is divided, step after step, by a
# second moment that still remembers it.

# %%
def raw_first(lr):
    return adaptix.chain(adaptix.trace(0.9, ema=True), adaptix.scale_by_rms(0.99, 1e-8, bias_correction=True),
                         adaptix.bias_correction(0.9), adaptix.scale_by_learning_rate(lr))


def rescaled_first(lr):
    return adaptix.chain(adaptix.scale_by_rms(0.99, 1e-8, bias_correction=True), adaptix.scale_by_learning_rate(lr),
                         adaptix.trace(0.9, ema=True), adaptix.bias_correction(0.9))


T = 60
spike = jnp.where(jnp.arange(T) == 20, 50.0, 1.0)[:, None]
a, b = -run(raw_first(0.01), spike)[:, 0] / 0.01, -run(rescaled_first(0.01), spike)[:, 0] / 0.01
plt.figure(figsize=(6, 3))
plt.plot(a, label="trace → scale_by_rms (Adam)")
plt.plot(b, label="scale_by_rms → trace (RMSProp + momentum)")
plt.axvline(20, color="k", lw=0.5)
plt.xlabel("step")
plt.ylabel("|Δ| / lr")
plt.legend()
plt.title("a gradient spike (×50 at step 20)")
plt.show()
print(f"at the spike: Adam order {a[20]:.2f} lr, RMSProp+momentum order {b[20]:.2f} lr; "
      f"5 steps later: {a[25]:.2f} vs {b[25]:.2f}")

# %% [markdown]
# On a noisy, ill-conditioned quadratic both orders converge; the difference is in how they react
# to the noise.

# %%
problem = landscapes.noisy_quadratic(30.0, noise=[0.5, 0.5], angle=0.3)
orders = {"Adam order": raw_first(0.05), "RMSProp+momentum order": rescaled_first(0.05)}
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
X, Y, Z = landscapes.contour_grid(problem, 120)
axes[0].contour(X, Y, Z, levels=np.geomspace(1e-3, 60, 15), cmap="Greys", linewidths=0.6)
for name, opt in orders.items():
    xs = np.asarray(landscapes.trajectory(opt, problem, steps=300, seed=1))
    axes[0].plot(xs[:, 0], xs[:, 1], lw=1, label=name)
    axes[1].semilogy(np.asarray(landscapes.losses(problem, xs)), lw=1, label=name)
axes[0].set_title(problem.name)
axes[0].legend(fontsize=8)
axes[1].set_xlabel("step")
axes[1].set_ylabel("loss")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Where `eps` goes
#
# `scale_by_rms(eps_in_sqrt=True)` divides by $\sqrt{\hat v + \epsilon}$ (Optax's RMSProp), `False`
# by $\sqrt{\hat v} + \epsilon$ (Adam, PyTorch). With $\epsilon = 10^{-8}$ the two switch from
# "normalise" to "plain SGD" at very different gradient scales: $|g| \approx \sqrt\epsilon = 10^{-4}$
# vs $|g| \approx \epsilon = 10^{-8}$. The first step of each on a gradient of size $|g|$:

# %%
g = jnp.asarray(np.geomspace(1e-11, 1.0, 111), jnp.float32)
for inside in (True, False):
    stage = adaptix.scale_by_rms(0.999, 1e-8, eps_in_sqrt=inside, bias_correction=True)
    out, _ = stage.update(g, stage.init(g))
    plt.loglog(g, out, label=f"eps_in_sqrt={inside}")
plt.loglog(g, np.ones_like(g), "k:", lw=0.8, label="sign(g) (eps = 0)")
plt.xlabel("|g|")
plt.ylabel("first step / lr")
plt.legend()
plt.title("the same eps = 1e-8, two meanings")
plt.show()

# %% [markdown]
# ## 5. AdamW vs Adam + L2
#
# `chain(add_decayed_weights(wd), adam(lr))` adds $\lambda w$ to the gradient *before* the moments
# (Adam+L2, `torch.optim.Adam(weight_decay=...)`): the decay is then normalised like any gradient,
# so it is weak on coordinates with large gradients and, with no data gradient, shrinks every weight
# by about `lr` per step whatever $\lambda$. `adamw` applies $\lambda w$ after the moments: every
# weight shrinks by the factor $1 - \alpha\lambda$ per step.
#
# Two weights start at 1 and see zero-mean gradient noise of very different size:

# %%
lr, wd, T, SEEDS = 1e-2, 0.1, 400 if QUICK else 1000, 64
noise_scale = jnp.array([10.0, 1e-3])
noise = noise_scale * jax.random.normal(jax.random.key(0), (SEEDS, T, 2))  # 64 independent runs
runs = {
    "Adam + L2": adaptix.chain(adaptix.add_decayed_weights(wd), adaptix.adam(lr)),
    "AdamW": adaptix.adamw(lr, weight_decay=wd),
}
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
for ax, (name, opt) in zip(axes, runs.items()):
    updates = jax.vmap(lambda n: run(opt, n, params=jnp.ones(2)))(noise)  # (seeds, T, 2)
    paths = 1.0 + np.concatenate([np.zeros((SEEDS, 1, 2)), np.cumsum(np.asarray(updates), axis=1)], axis=1)
    for i, label in enumerate(("noise std 10", "noise std 1e-3")):
        mean, std = paths[:, :, i].mean(0), paths[:, :, i].std(0)
        ax.plot(mean, label=label)
        ax.fill_between(np.arange(T + 1), mean - std, mean + std, alpha=0.2)
    ax.plot((1 - lr * wd) ** np.arange(T + 1), "k:", lw=0.8, label="(1 - lr·wd)^t")
    ax.set_title(f"{name} (mean ± std over {SEEDS} runs)")
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
axes[0].set_ylabel("weight")
plt.tight_layout()
plt.show()

# %% [markdown]
# With Adam+L2 the quiet weight is driven to 0 at about `lr` per step while the noisy one decays
# about ten times more slowly than $(1-\alpha\lambda)^t$ (its decay term is divided by a second moment
# dominated by the noise); with AdamW both follow $(1-\alpha\lambda)^t$ on average.

# %% [markdown]
# ## 6. Momentum before or after the learning rate
#
# `sgd(lr, momentum=β)` = `chain(trace(β), scale_by_learning_rate(lr))` averages gradients, then
# scales by the *current* rate. Hinton's form $w_{t+1} = w_t - \eta_t g_t + \beta (w_t - w_{t-1})$ is
# `chain(scale_by_learning_rate(lr), parameter_difference_momentum(β))`: it averages *steps*. For
# a constant rate the two are the same algorithm; after a drop of the rate they are not:
# the step form keeps its old velocity for $\sim 1/(1-\beta)$ steps,
# $\Delta_t - \Delta'_t = \sum_s \beta^{t-s}(\eta_t - \eta_s) g_s$.

# %%
schedule = optax.piecewise_constant_schedule(0.1, {30: 0.1})
ones = jnp.ones((80, 1))
ema_form = -run(adaptix.sgd(schedule, momentum=0.9), ones)[:, 0]
step_form = -run(adaptix.chain(adaptix.scale_by_learning_rate(schedule),
                               adaptix.parameter_difference_momentum(0.9)), ones)[:, 0]
const_a = -run(adaptix.sgd(0.1, momentum=0.9), ones)[:, 0]
const_b = -run(adaptix.chain(adaptix.scale_by_learning_rate(0.1), adaptix.parameter_difference_momentum(0.9)),
               ones)[:, 0]
print("constant rate, max difference of the two forms:", float(np.max(np.abs(const_a - const_b))),
      "(float32 rounding of w_t - w_{t-1})")
plt.figure(figsize=(6, 3))
plt.plot(ema_form, label="sgd(schedule, momentum=0.9)")
plt.plot(step_form, "--", label="parameter_difference_momentum(0.9)")
plt.axvline(30, color="k", lw=0.5)
plt.xlabel("step")
plt.ylabel("|Δ| for g = 1")
plt.legend()
plt.title("learning rate ÷10 at step 30")
plt.show()
