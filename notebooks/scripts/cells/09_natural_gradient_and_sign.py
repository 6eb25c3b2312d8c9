# %% [markdown]
# # The exponent of the second moment, and SignGD as Adam's limit
#
# Adam and RMSProp divide the step by $\hat v^{1/2}$, where $\hat v$ is an average of $g^2$: the
# diagonal of the *empirical Fisher* $E[g g^\top]$. The natural gradient divides by the Fisher
# itself. `adaptix.scale_by_rms(..., power=p)` divides by $\hat v^{\,p}$, so one stage spans
#
# | $p$ | step | what it is |
# |---|---|---|
# | 0 | $g$ | SGD (`adaptix.sgd`) |
# | ½ | $g/\sqrt{\hat v}$ | RMSProp, Adam: scale-free, bounded by about $\alpha$ |
# | 1 | $g/\hat v$ | diagonal empirical-Fisher natural gradient |
#
# **The link to Newton.** For a likelihood, the per-example gradients' covariance at the optimum
# equals the Hessian (the Fisher *is* the Hessian there). A minibatch of $B$ examples then has
# $\hat v \approx H/B$ near the optimum, so $p = 1$ preconditions by $H^{-1}$ (Newton), $p = \frac12$
# by $H^{-1/2}$ (half-way, the view of notebook 04), $p = 0$ not at all.
#
# **Its limit.** Far from the optimum $\hat v \approx (\nabla f)^2$, the *squared mean* gradient, and
# $g/\hat v \approx 1/\nabla f$: the step grows where the gradient shrinks, the opposite of Newton
# (Kunstner, Hennig & Balles, 2019, "Limitations of the empirical Fisher approximation"). Only a
# damping $\epsilon$ keeps it finite.
#
# The last section tests a related claim of the course notes: SignGD is Adam with special betas.

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


def power_rms(learning_rate, power, decay=0.999, eps=1e-8):
    """g / (v-hat^p + eps) times the learning rate; p = 0 is plain SGD."""
    if power == 0:
        return adaptix.sgd(learning_rate)
    return adaptix.chain(adaptix.scale_by_rms(decay, eps, eps_in_sqrt=False, bias_correction=True, power=power),
                         adaptix.scale_by_learning_rate(learning_rate))


def run(opt, problem, steps, seed=0):
    """Iterates and final state on a (noisy) problem, one jitted scan."""
    x0 = jnp.asarray(problem.x0, jnp.float32)
    key = jax.random.key(seed)

    @jax.jit
    def go(x0):
        def step(carry, t):
            x, s = carry
            u, s = opt.update(problem.grad(x, jax.random.fold_in(key, t)), s, x)
            x = optax.apply_updates(x, u)
            return (x, s), x

        (_, s), xs = jax.lax.scan(step, (x0, opt.init(x0)), jnp.arange(steps))
        return xs, s

    return go(x0)


# %% [markdown]
# ## 1. Near the optimum: $p$ sets the preconditioner's power of the Hessian
#
# $f(x) = \frac12\sum_i h_i x_i^2$, $h_i$ from 1 to 1000, gradient noise $\sigma_i = 0.3\sqrt{h_i}$
# (noise covariance $\propto$ Hessian, as for a likelihood), started at the optimum so that only the
# noise feeds $\hat v$. The per-coordinate learning rate $\alpha/\hat v_i^{\,p}$ read from the state:

# %%
dim = 24
h = np.geomspace(1.0, 1e3, dim)
noise = 0.3 * np.sqrt(h[::-1])  # quadratic() orders its eigenvalues from the largest
at_optimum = landscapes.noisy_quadratic(1e3, noise=noise, dim=dim, x0=np.zeros(dim))
h_of = np.diag(at_optimum.hessian)
fig, ax = plt.subplots(figsize=(6, 3.6))
for power, marker in ((0.5, "o"), (1.0, "s")):
    _, state = run(power_rms(1e-3, power), at_optimum, 1000)
    nu, count = optax.tree_utils.tree_get(state, "nu"), int(optax.tree_utils.tree_get(state, "count"))
    rate = 1e-3 / (np.asarray(nu) / (1 - 0.999**count)) ** power
    slope = np.polyfit(np.log(h_of), np.log(rate), 1)[0]
    print(f"p = {power}: fitted slope of log(rate) against log(h) = {slope:.2f}  (expected {-power})")
    ax.loglog(h_of, rate / rate[np.argmin(h_of)], marker, ms=4, label=f"p = {power}: slope {slope:.2f}")
ax.loglog(h, h**-1.0, "k--", lw=0.8, label="Newton, h^-1")
ax.loglog(h, h**0, "k:", lw=0.8, label="SGD, h^0")
ax.set(xlabel="curvature h", ylabel="per-coordinate rate (÷ the flattest)",
       title="Preconditioner read from the state at the optimum")
ax.legend(fontsize=8)
plt.tight_layout()

# %% [markdown]
# ## 2. From a distance: each $p$ with its best learning rate
#
# The same noisy quadratic started at $x_0 = (1, 1.5, 1, \dots)$. Each $p$ gets the best of a
# log grid of learning rates (final loss, averaged over the last tenth, 3 seeds), undamped
# ($\epsilon = 10^{-8}$), $\beta_2 = 0.999$, no momentum.
# With $p = 1$ a coordinate whose gradient is still large against its noise takes a step of
# about $\alpha/(h x)$: *small* on the steep coordinates while they are far from the optimum (it
# divides by the squared mean gradient, not by the curvature). The rate per coordinate becomes
# Newton's, $\alpha B/h$ up to the noise's constant, only once the noise dominates, and there it
# is stable only for $\alpha$ below about twice that constant: one learning rate cannot serve both
# phases.

# %%
problem = landscapes.noisy_quadratic(1e3, noise=noise, dim=dim)
steps = 800 if QUICK else 4000
grids = {0: np.geomspace(1e-5, 1e-2, 7), 0.5: np.geomspace(1e-4, 1e-1, 7), 1.0: np.geomspace(1e-3, 1e1, 9)}


def loss_curves(power, grid, seeds=3):
    """Loss curves [learning rate, seed, step]: one compiled program per p, vmapped over both."""

    def curve(lr, seed):
        opt, x0 = power_rms(lr, power), jnp.asarray(problem.x0, jnp.float32)
        key = jax.random.fold_in(jax.random.key(0), seed)

        def step(carry, t):
            x, s = carry
            u, s = opt.update(problem.grad(x, jax.random.fold_in(key, t)), s, x)
            x = optax.apply_updates(x, u)
            return (x, s), x

        xs = jax.lax.scan(step, (x0, opt.init(x0)), jnp.arange(steps))[1]
        return landscapes.losses(problem, xs)

    per_seed = jax.vmap(curve, in_axes=(None, 0))
    return np.asarray(jax.jit(jax.vmap(per_seed, in_axes=(0, None)))(jnp.asarray(grid, jnp.float32),
                                                                       jnp.arange(seeds)))


fig, ax = plt.subplots(figsize=(6.5, 3.8))
for power, grid in grids.items():
    curves = loss_curves(power, grid)
    finite = np.all(np.isfinite(curves), axis=(1, 2))
    scores = np.array([c[:, -steps // 10:].mean() if ok else np.inf for c, ok in zip(curves, finite)])
    best = int(np.argmin(scores))
    edge = " (grid edge)" if best in (0, len(grid) - 1) else ""
    print(f"p = {power}: best learning rate {grid[best]:.2g}{edge}, final loss {scores[best]:.4g}")
    mean, sd = curves[best].mean(0), curves[best].std(0)
    t = np.arange(1, steps + 1)
    ax.semilogy(t, mean, label=f"p = {power} (α = {grid[best]:.2g})")
    ax.fill_between(t, np.maximum(mean - sd, 1e-12), mean + sd, alpha=0.2)
ax.set(xlabel="step", ylabel="loss", title="Noisy quadratic, condition 1e3: best α per p, 3 seeds (±1 s.d.)",
       ylim=(1e-4, None))
ax.legend(fontsize=8)
plt.tight_layout()

# %% [markdown]
# ## 3. Without noise the empirical Fisher is not the Hessian
#
# One coordinate, $f(x) = \frac12 h x^2$ from $x_0 = 1$, no noise, $\alpha = 0.05$, a short memory
# ($\beta_2 = 0.9$). Now $\hat v \approx (h x)^2$ and the $p = 1$ step is about $\alpha/(h x)$: it
# takes a time proportional to $h$ to arrive (Newton, dividing by $h$, takes one step whatever $h$),
# then its steps *grow* as $x$ shrinks and it chatters at $x^2 \approx \alpha/(2h)$, a loss of about
# $\alpha/4$ for every $h$. $p = \frac12$ is sign descent here: the same time for every $h$, then a
# chatter of size $\approx\alpha$, a loss $\propto h$.

# %%
fig, ax = plt.subplots(figsize=(6, 3.6))
for h_1d, style in ((1.0, "-"), (100.0, "--")):
    for power, color in ((0.5, "C1"), (1.0, "C2")):
        opt = power_rms(0.05, power, decay=0.9)

        def step(carry, _, opt=opt, h_1d=h_1d):
            x, s = carry
            u, s = opt.update(h_1d * x, s, x)
            return (x + u, s), 0.5 * h_1d * (x + u) ** 2

        x0 = jnp.ones(())
        curve = np.asarray(jax.lax.scan(step, (x0, opt.init(x0)), None, length=3000)[1])
        arrival = int(np.argmax(curve < 0.1 * curve[0]))
        print(f"h = {h_1d:g}, p = {power}: loss below a tenth after {arrival} steps; "
              f"mean loss over the last 500: {curve[-500:].mean():.3g}")
        ax.semilogy(np.maximum(curve, 1e-8), style, color=color, label=f"p = {power}, h = {h_1d:g}")
ax.set(xlabel="step", ylabel="loss", title="½ h x², no noise, α = 0.05", ylim=(1e-8, None))
ax.legend(fontsize=8)
plt.tight_layout()

# %% [markdown]
# ## 4. SignGD as Adam's limit
#
# **Which betas.** With $\beta_1 = \beta_2 = 0$ and $\epsilon = 0$, $\hat m = g$ and
# $\hat v = g^2$, so $\hat m/\sqrt{\hat v} = \operatorname{sign}(g)$ exactly (in floating point
# $\sqrt{\mathrm{fl}(g^2)} = |g|$; `tests/test_power_and_sign.py` checks the steps equal SignGD's to
# one rounding). The course notes' $\beta_1 = \beta_2 = 1$ is *not* it: with bias correction,
# betas tending to 1 make $\hat m$ and $\hat v$ the plain averages of all gradients so far, and the
# step tends to mean/RMS of the gradient history, which is sign$(g)$ only while every gradient
# is the same:

# %%
history = jnp.array([[1.0], [3.0], [-2.0]])
for b in (0.0, 1 - 1e-6):
    opt = adaptix.adam(1.0, b1=b, b2=b, eps=0.0)
    state = opt.init(jnp.zeros(1))
    for g in history:
        step, state = opt.update(g, state)
    print(f"betas = {b}: last step {float(-step[0]):+.3f}   (sign of the last gradient: "
          f"{float(jnp.sign(history[-1, 0])):+.0f}; mean/RMS of the history: "
          f"{float(history.mean() / jnp.sqrt((history**2).mean())):+.3f})")

# %% [markdown]
# **The small-learning-rate limit** (Ma, Wu & E, 2020). At *fixed* betas, as $\alpha \to 0$ the
# averages' memory in time, $\alpha/(1-\beta)$, shrinks against the time over which the gradient
# changes; $\hat m \to g$, $\hat v \to g^2$, and Adam follows SignGD — their explanation of Adam's
# fast, sign-like early phase. A real task: full-batch logistic regression on scikit-learn's
# handwritten digits (8×8, 10 classes), from zero, over the same time $t = \text{steps}\times\alpha$.
# The gap to SignGD's path, relative to the distance travelled:

# %%
from sklearn.datasets import load_digits

xd, yd = load_digits(return_X_y=True)
xd = jnp.asarray(xd / 16.0, jnp.float32)
yd = jnp.asarray(yd)


def digits_path(opt, steps):
    loss = lambda w: optax.softmax_cross_entropy_with_integer_labels(xd @ w, yd).mean()  # noqa: E731

    @jax.jit
    def path(w0):
        def step(carry, _):
            w, s = carry
            u, s = opt.update(jax.grad(loss)(w), s, w)
            w = optax.apply_updates(w, u)
            return (w, s), w

        return jax.lax.scan(step, (w0, opt.init(w0)), None, length=steps)[1]

    return np.asarray(path(jnp.zeros((64, 10)))).reshape(steps, -1)


horizon = 1.0
rates = (1e-2, 1e-3) if QUICK else (1e-2, 1e-3, 1e-4)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
for ax, b2 in zip(axes, (0.99, 0.999)):
    for lr in rates:
        n = int(round(horizon / lr))
        adam, sign = digits_path(adaptix.adam(lr, b2=b2), n), digits_path(adaptix.sign_sgd(lr), n)
        gap = np.linalg.norm(adam - sign, axis=1) / np.linalg.norm(sign, axis=1)
        print(f"b2 = {b2}, α = {lr:g}: largest relative gap up to t = {horizon}: {gap.max():.3f}")
        ax.plot(np.arange(1, n + 1) * lr, gap, label=f"α = {lr:g}")
    ax.set(xlabel="time t = steps × α", title=f"β1 = 0.9, β2 = {b2}")
    ax.legend(fontsize=8)
axes[0].set_ylabel("|θ_Adam − θ_SignGD| / |θ_SignGD|")
fig.suptitle("Adam tends to SignGD as α → 0 at fixed betas (digits, full batch)")
plt.tight_layout()

# %% [markdown]
# The gap shrinks with $\alpha$ once $\alpha/(1-\beta_2)$ is short against the path; with the
# default $\beta_2 = 0.999$ the memory is ten times longer, and the limit needs a ten times smaller
# $\alpha$. Away from that limit Adam's steps are *smaller* than SignGD's wherever recent gradients
# disagree in sign — the variance adaptation that notebook 04 measures.
#
# **Summary.** $p = 1$ is Newton-like only where the gradient noise dominates its squared mean
# (section 1), which is where the empirical Fisher approaches the Fisher; elsewhere it divides by
# the squared gradient (sections 2, 3). $p = \frac12$ is scale-free everywhere and sign-like
# wherever the noise is small, which is the limit Ma, Wu & E describe.
