# %% [markdown]
# # The optimizer zoo on classic landscapes
#
# Trajectories of the classic optimizers on the test functions of
# `adaptix.experiments.landscapes`, drawn on contour plots in the spirit of the CS231n animations
# (Alec Radford's): an ill-conditioned valley, Rosenbrock's banana, Beale's function and a saddle
# point. Each optimizer is a one-line adaptix alias; each trajectory is one jitted `lax.scan`
# (`landscapes.trajectory`). Learning rates are hand-picked per landscape so that each method
# shows its typical behaviour, not tuned to win.

# %%
import os

QUICK = os.environ.get("ADAPTIX_QUICK", "0") == "1"
import matplotlib.pyplot as plt
import numpy as np

import adaptix
from adaptix.experiments import landscapes

plt.rcParams.update({"figure.dpi": 80})
COLORS = plt.get_cmap("tab10").colors


MAKE = {
    "SGD": lambda lr: adaptix.sgd(lr),
    "Momentum": lambda lr: adaptix.sgd(lr, momentum=0.9),
    "Nesterov": lambda lr: adaptix.sgd(lr, momentum=0.9, nesterov=True),
    "AdaGrad": lambda lr: adaptix.adagrad(lr),
    "RMSProp": lambda lr: adaptix.rmsprop(lr),
    "AdaDelta": lambda lr: adaptix.adadelta(lr),
    "Adam": lambda lr: adaptix.adam(lr),
    "Lion": lambda lr: adaptix.lion(lr),
}
SHOWN = ("SGD", "Momentum", "AdaGrad", "RMSProp", "Adam") if QUICK else tuple(MAKE)


def zoo(rates):
    """``name -> optimizer`` for the learning rates of one landscape."""
    return {name: MAKE[name](rates[name]) for name in SHOWN}


def draw(problem, rates, steps, ax_path, ax_loss, levels):
    X, Y, Z = landscapes.contour_grid(problem, 200)
    ax_path.contour(X, Y, Z, levels=levels, colors="0.6", linewidths=0.6)
    if problem.minimum is not None:
        ax_path.plot(*problem.minimum[:2], "k*", ms=10)
    ax_path.plot(*problem.x0[:2], "ko", ms=4)
    for color, (name, opt) in zip(COLORS, zoo(rates).items()):
        xs = np.asarray(landscapes.trajectory(opt, problem, steps=steps))
        ok = np.all(np.isfinite(xs), axis=1)
        ax_path.plot(xs[ok, 0], xs[ok, 1], color=color, lw=1.3, label=name)
        f = np.asarray(landscapes.losses(problem, xs))
        ax_loss.plot(f, color=color, lw=1.2)
    ax_path.set_xlim(*problem.bounds[0])
    ax_path.set_ylim(*problem.bounds[1])
    ax_path.set_title(problem.name)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.grid(alpha=0.3)


STEPS = 150 if QUICK else 300

# %% [markdown]
# ## An ill-conditioned valley
#
# $f = \tfrac12 x^\top H x$ with condition number 50, rotated by 30°. SGD zig-zags across the steep
# direction and crawls along the shallow one; momentum accelerates along the valley; the adaptive
# methods rescale per coordinate — which helps less here than on an axis-aligned valley, since the
# valley is rotated (see the rotation-invariance notebook).

# %%
valley = landscapes.quadratic(50.0, angle=np.pi / 6, x0=[-1.7, 1.2])
fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.3, 1]})
rates = dict(SGD=0.03, Momentum=3e-3, Nesterov=3e-3, AdaGrad=1.0, RMSProp=0.03, AdaDelta=10.0, Adam=0.1, Lion=0.03)
draw(valley, rates, STEPS, a, b, np.geomspace(1e-3, 80, 18))
b.set_yscale("log")
a.legend(fontsize=8, loc="lower right")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Rosenbrock's banana
#
# The minimum at $(1, 1)$ lies at the end of a long, curved, flat-bottomed valley.

# %%
banana = landscapes.rosenbrock()
fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.3, 1]})
rates = dict(SGD=1e-3, Momentum=1e-3, Nesterov=5e-4, AdaGrad=1.0, RMSProp=0.1, AdaDelta=10.0, Adam=0.1, Lion=0.01)
draw(banana, rates, 2 * STEPS, a, b, np.geomspace(0.05, 3000, 16))
b.set_yscale("log")
a.legend(fontsize=8, loc="lower right")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Beale's function
#
# Flat plateaus and a curved valley to the minimum at $(3, 0.5)$; gradients differ by orders of
# magnitude across the plane, which is where per-coordinate normalisation shines.

# %%
beale = landscapes.beale()
fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.3, 1]})
rates = dict(SGD=0.01, Momentum=3e-3, Nesterov=3e-3, AdaGrad=1.0, RMSProp=0.01, AdaDelta=10.0, Adam=0.1, Lion=0.03)
draw(beale, rates, STEPS, a, b, np.geomspace(1e-2, 200, 16))
b.set_yscale("log")
a.legend(fontsize=8, loc="upper left")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## A saddle point, $x^2 - y^2$
#
# Starting almost on the ridge ($y_0 = 10^{-3}$), gradient descent first slides down to the saddle
# point and leaves it only as the tiny $y$ component grows by a factor $1 + 2\eta$ per step; methods
# that normalise each coordinate see a $y$-gradient of "full size" and escape at once.

# %%
saddle = landscapes.saddle()
fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.3, 1]})
rates = dict(SGD=0.05, Momentum=0.01, Nesterov=0.01, AdaGrad=0.5, RMSProp=0.02, AdaDelta=1.0, Adam=0.05, Lion=0.01)
draw(saddle, rates, STEPS // 2, a, b, np.linspace(-2, 2, 17))
a.legend(fontsize=8, loc="lower left")
b.set_ylim(-2.5, 1.2)
plt.tight_layout()
plt.show()
