# %% [markdown]
# # Why second moments work
#
# Three views of dividing by $\sqrt{\hat v}$, each measured with adaptix on a problem small enough
# to understand completely:
#
# 1. **The Newton link** — on a quadratic whose gradient noise has covariance proportional to the
#    Hessian (as for least squares, where the Fisher equals the Hessian), $\sqrt{\hat v_i}$ grows
#    like $\sqrt{h_i}$: Adam preconditions by $H^{-1/2}$, half-way between SGD ($H^0$) and Newton
#    ($H^{-1}$).
# 2. **Per-coordinate noise scaling** — for equal curvature, a noisier coordinate gets a smaller
#    step: the stationary loss grows like $\sigma$ instead of SGD's $\sigma^2$.
# 3. **Sparse features** — a feature seen rarely accumulates a small second moment, so it gets a
#    large step when it does appear.

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
T = 2000 if QUICK else 5000


def run(opt, problem, steps, seed=0):
    """Iterates and final optimizer state on a noisy problem (one jitted scan)."""
    x0 = jnp.asarray(problem.x0, jnp.float32)
    key = jax.random.key(seed)

    @jax.jit
    def go(x0):
        def step(carry, t):
            x, s = carry
            g = problem.grad(x, jax.random.fold_in(key, t))
            u, s = opt.update(g, s, x)
            x = optax.apply_updates(x, u)
            return (x, s), x

        (x, s), xs = jax.lax.scan(step, (x0, opt.init(x0)), jnp.arange(steps))
        return xs, s

    return go(x0)


# %% [markdown]
# ## 1. The Newton link
#
# $f(x) = \tfrac12\sum_i h_i x_i^2$ with $h_i$ from 1 to 1000, gradient noise $\sigma_i = 0.3\sqrt{h_i}$,
# started at the optimum so that only the noise drives the moments. Adam's per-coordinate learning
# rate $\alpha/(\sqrt{\hat v_i}+\epsilon)$, read from its state, against $h_i$:

# %%
dim = 24
h = np.geomspace(1.0, 1e3, dim)
noise = 0.3 * np.sqrt(h[::-1])  # quadratic() orders the eigenvalues from largest to smallest
at_optimum = landscapes.noisy_quadratic(1e3, noise=noise, dim=dim, x0=np.zeros(dim))
h_of = np.diag(at_optimum.hessian)
assert np.allclose(np.sort(h_of), h)
lr = 1e-3
_, state = run(adaptix.adam(lr), at_optimum, 1000)
# the second moment and the one step counter, found by name as in an Optax state
nu, count = optax.tree_utils.tree_get(state, "nu"), optax.tree_utils.tree_get(state, "count")
v_hat = np.asarray(nu) / (1 - 0.999 ** int(count))
eff = lr / (np.sqrt(v_hat) + 1e-8)
slope = np.polyfit(np.log(h_of), np.log(eff), 1)[0]
print(f"fitted slope of log(α/√v̂) against log(h): {slope:.3f}  (Adam: -1/2, Newton: -1, SGD: 0)")
plt.figure(figsize=(6, 3.6))
plt.loglog(h_of, eff, "o", ms=4, label="Adam: α / √v̂")
ref = eff[np.argmin(np.abs(h_of - 1))]
plt.loglog(h, ref * h ** -0.5, "C0-", lw=0.8, label="∝ h^(-1/2)")
plt.loglog(h, ref * h**-1.0, "k--", lw=0.8, label="Newton ∝ h^(-1)")
plt.loglog(h, ref * h**0, "k:", lw=0.8, label="SGD ∝ h^0")
plt.xlabel("curvature h_i")
plt.ylabel("per-coordinate learning rate")
plt.legend(fontsize=8)
plt.show()

# %% [markdown]
# Near the optimum $\hat v_i \approx \mathbb E[g_i^2] = h_i^2 x_i^2 + \sigma_i^2 \approx 0.09\, h_i$, so
# $\alpha/\sqrt{\hat v_i} \propto h_i^{-1/2}$: a square-root Newton preconditioner. (Far from the
# optimum the signal dominates, $\sqrt{\hat v_i} \approx h_i |x_i|$, and Adam's step is
# $\approx \alpha\,\mathrm{sign}(x_i)$: sign descent.)
#
# What it buys: SGD must keep its learning rate below $2/h_{max}$ and then crawls along the flat
# directions; Adam's rate adapts per coordinate. Mean squared distance to the optimum, starting at
# $x_0 = (1, \dots, 1)$:

# %%
start = landscapes.noisy_quadratic(1e3, noise=noise, dim=dim, x0=np.ones(dim))
steps = 1000 if QUICK else 3000
plt.figure(figsize=(6, 3.4))
for name, opt in [("SGD, lr = 1/h_max", adaptix.sgd(1.0 / h.max())), ("SGD, lr = 1.9/h_max", adaptix.sgd(1.9 / h.max())),
                  ("Adam, lr = 3e-3", adaptix.adam(3e-3)), ("Adam, lr = 1e-2", adaptix.adam(1e-2))]:
    path, _ = run(opt, start, steps)
    d = np.mean(np.asarray(path) ** 2, axis=1)
    plt.loglog(np.arange(1, steps + 1), d, lw=1.2, label=name)
plt.xlabel("step")
plt.ylabel("mean_i x_i²")
plt.legend(fontsize=8)
plt.show()

# %% [markdown]
# SGD's flat coordinates shrink by $(1 - \eta h_i)$ per step, about $e^{-t/1000}$ for $h = 1$; Adam
# reaches its noise floor within a few hundred steps.
#
# ## 2. Per-coordinate noise scaling
#
# Now all curvatures are equal ($h_i = 1$) and only the noise differs, $\sigma_i$ from 0.01 to 10.
# The average loss of each coordinate over the second half of the run, Adam's per-coordinate
# learning rate, and its signal-to-noise ratio $|\hat m_i|/\sqrt{\hat v_i}$ as summarised by
# `adaptix.diagnostics`:

# %%
sigma = np.geomspace(0.01, 10.0, dim)
flat = landscapes.noisy_quadratic(1.0, noise=sigma, dim=dim, x0=np.zeros(dim))
runs = {
    "SGD (lr 0.01)": adaptix.sgd(0.01),
    "Adam (lr 0.01)": adaptix.chain(adaptix.adam(0.01), adaptix.diagnostics()),
}
fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
for name, opt in runs.items():
    path, st = run(opt, flat, T, seed=1)
    loss_i = 0.5 * np.mean(np.asarray(path[T // 2:]) ** 2, axis=0)
    k = np.polyfit(np.log(sigma), np.log(loss_i), 1)[0]
    a.loglog(sigma, loss_i, "o", ms=4, label=f"{name}: slope {k:.2f}")
    if "Adam" in name:
        # chain(adam, diagnostics): Adam's second moment and the chain's one step counter, by name
        nu_raw, count = optax.tree_utils.tree_get(st, "nu"), optax.tree_utils.tree_get(st, "count")
        nu = np.asarray(nu_raw) / (1 - 0.999 ** int(count))
        b.loglog(sigma, 0.01 / np.sqrt(nu), "o", ms=4, label="α/√v̂")
        b.loglog(sigma, 0.01 / sigma, "k:", lw=0.8, label="α/σ")
        b.legend(fontsize=8)
        d = adaptix.read_diagnostics(st)
        print(f"diagnostics at the last step: mean |snr| = {d['abs_snr_mean']:.3f}, "
              f"fraction with |snr| < 0.1 = {d['low_snr_fraction']:.2f}")
a.set_xlabel("noise σ_i")
a.set_ylabel("mean loss of coordinate i")
a.legend(fontsize=8)
b.set_xlabel("noise σ_i")
b.set_ylabel("Adam's per-coordinate learning rate")
plt.tight_layout()
plt.show()

# %% [markdown]
# SGD's stationary loss grows like $\eta\sigma^2$ (slope 2); Adam's step on a noisy coordinate is
# divided by $\sqrt{\hat v} \approx \sigma$, so its loss grows like $\alpha\sigma$ (slope 1). Once at
# the noise floor the gradient's sign keeps changing, so $|\hat m|$ is far below $\sqrt{\hat v}$: the mean
# $|\mathrm{snr}|$ is well below the value 1 of a consistent gradient — Kingma & Ba's "cautiousness",
# the steps shrink by themselves as the optimum is approached.
#
# ## 3. Sparse features
#
# Least squares with features that are active with probabilities $p_j$ from $10^{-3}$ to 1
# ($y = x^\top w^\star + 0.1\,\xi$, $w^\star = 1$, batches of 32). A feature active in a fraction $p$ of
# the examples gets a gradient only that often; SGD's progress on it is $\propto p$, while AdaGrad
# and Adam divide by a second moment that is itself $\propto p$ (AdaGrad: $\sqrt{\sum g^2} \propto \sqrt{pt}$).

# %%
n_feat, batch = 30, 32
p = np.geomspace(1e-3, 1.0, n_feat)
steps = 1500  # a fixed budget: given long enough, SGD gets there too
key = jax.random.key(2)


def sparse_run(opt):
    def loss(w, xb, yb):
        return 0.5 * jnp.mean((xb @ w - yb) ** 2)

    @jax.jit
    def go():
        def step(carry, t):
            w, s = carry
            k1, k2, k3 = jax.random.split(jax.random.fold_in(key, t), 3)
            active = jax.random.uniform(k1, (batch, n_feat)) < p
            xb = jnp.where(active, jax.random.normal(k2, (batch, n_feat)), 0.0)
            yb = xb @ jnp.ones(n_feat) + 0.1 * jax.random.normal(k3, (batch,))
            u, s = opt.update(jax.grad(loss)(w, xb, yb), s, w)
            return (optax.apply_updates(w, u), s), None

        w0 = jnp.zeros(n_feat)
        return jax.lax.scan(step, (w0, opt.init(w0)), jnp.arange(steps))[0][0]

    return np.asarray(go())


plt.figure(figsize=(6, 3.6))
for name, opt in [("SGD (lr 0.5)", adaptix.sgd(0.5)), ("AdaGrad (lr 0.5)", adaptix.adagrad(0.5)),
                  ("Adam (lr 0.01)", adaptix.adam(0.01))]:
    w = sparse_run(opt)
    plt.loglog(p, np.abs(w - 1.0) + 1e-6, "o-", ms=3, lw=0.8, label=name)
    print(f"{name:18s} mean |w - w*| on the 10 rarest features: {np.mean(np.abs(w[:10] - 1)):.3f}, "
          f"on the 10 commonest: {np.mean(np.abs(w[-10:] - 1)):.4f}")
plt.xlabel("feature frequency p_j")
plt.ylabel("|w_j - w*_j| after training")
plt.legend(fontsize=8)
plt.show()

# %% [markdown]
# With a learning rate as large as the common features allow and a fixed budget of 1,500 steps, SGD
# has hardly moved the rarest weights; the adaptive methods have learned them — the reason AdaGrad was invented (Duchi et al.,
# 2011) and why Kingma & Ba test Adam on sparse bag-of-words features.
