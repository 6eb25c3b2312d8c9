# %% [markdown]
# # Kingma & Ba (2015), section 6: the reproduction's figures
#
# `adaptix-experiments` reruns the optimizer comparisons of the Adam paper with Flax models trained
# through `nnx.Optimizer` (see `docs/experiments.md`). Its full runs are committed as
# `docs/experiments/<name>/results.json` with a PNG each; this notebook draws the figures from those
# files. Where none are present it runs the bundled `digits` experiment in its quick form instead
# (no download, a few seconds).

# %%
import json
import os
import tempfile
from pathlib import Path

QUICK = os.environ.get("ADAPTIX_QUICK", "0") == "1"
import matplotlib.pyplot as plt
import numpy as np

from adaptix.experiments.verdicts import describe_verdicts

plt.rcParams.update({"figure.dpi": 80, "axes.grid": True, "grid.alpha": 0.3})
DOCS = Path.cwd().resolve().parent / "docs" / "experiments"
# the paper's experiments, each in the folder of its name (not the later claims, nor variant runs such as
# docs/experiments/eight-bit-logreg-mnist, which rerun a paper experiment with other optimizers)
PAPER = ("logreg-mnist", "logreg-imdb", "mlp-mnist", "mlp-mnist-dropout", "cnn-cifar10", "bias-correction", "toys")
found = sorted(DOCS / name / "results.json" for name in PAPER if (DOCS / name / "results.json").is_file())
comparisons, others = [], []
for path in found:
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        continue
    runs = results.get("runs") or []
    if runs and all(isinstance(r, dict) and "iteration_loss" in r and "optimizer" in r for r in runs):
        comparisons.append(results)
    else:
        others.append((path.parent, results))
print(f"{len(comparisons)} optimizer comparisons and {len(others)} other experiments in {DOCS}")

# %%
if not comparisons:
    from adaptix.experiments.run import run_experiment

    out = Path(tempfile.mkdtemp())
    comparisons = [run_experiment("digits", quick=True, out=out, progress=False)]
    print("no committed results: ran the digits experiment (quick) in", out)


def smooth(values, window):
    v = np.asarray(values, float)
    if window <= 1 or len(v) < window:
        return v
    return np.convolve(v, np.ones(window) / window, mode="valid")


def mean_sd(r, key):
    """A run's per-epoch values and their s.d. over its seeds (zeros for a single-seed run)."""
    mean = np.asarray(r.get(key) or [np.nan], float)
    return mean, np.asarray(r.get(f"{key}_sd") or np.zeros_like(mean), float)


def plus_minus(r, key):
    """The last epoch's value, ± its s.d. over the seeds where the run has several."""
    mean, sd = mean_sd(r, key)
    return f"{mean[-1]:.4g} ± {sd[-1]:.2g}" if f"{key}_sd" in r else f"{mean[-1]:.4g}"


for results in comparisons:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for r in results["runs"]:
        name = r.get("arm", r["optimizer"])
        losses = np.asarray(r["iteration_loss"], float)
        every = int(r.get("iteration_loss_every") or 1)
        window = max(1, len(losses) // 60)
        y = smooth(losses, window)
        (line,) = left.plot((np.arange(len(y)) + window) * every, y, lw=1.2,
                            label=f"{name} (lr {r['learning_rate']:g})" + (", diverged" if r.get("diverged") else ""))
        cost, sd = mean_sd(r, "epoch_train_loss")
        epochs = np.arange(1, len(cost) + 1)
        right.plot(epochs, cost, lw=1.2, color=line.get_color())
        right.fill_between(epochs, np.clip(cost - sd, cost / 10, None), cost + sd, color=line.get_color(), alpha=0.2)
    left.set(yscale="log", xlabel="iterations", ylabel="training cost (minibatch, smoothed)")
    right.set(yscale="log", xlabel="epochs", ylabel="training cost (whole set), mean ± s.d.")
    left.legend(fontsize=7)
    seeds = len(results.get("seeds") or [results.get("seed", 0)])
    fig.suptitle(f"{results['experiment']} ({seeds} seed{'s' if seeds > 1 else ''}): "
                 f"{results.get('description', '')}", fontsize=8)
    plt.show()
    print("claim:", results.get("claim", ""))
    print(f"{'arm':18s} {'lr':>8s} {'final train cost':>22s} {'test accuracy':>20s}")
    for r in results["runs"]:
        print(f"{r.get('arm', r['optimizer']):18s} {r['learning_rate']:8g} {plus_minus(r, 'epoch_train_loss'):>22s} "
              f"{plus_minus(r, 'epoch_test_accuracy'):>20s}")
    for line in describe_verdicts(results.get("verdicts") or []):
        print(" ", line)
    if results.get("verdict_rule"):
        print("  rule:", results["verdict_rule"])

# %% [markdown]
# ## The other experiments
#
# Experiments whose results are not per-optimizer training curves (the bias-correction grid of
# section 6.4, the toy landscapes) are shown with the figure their run produced and the verdict
# recorded in their `results.json`.

# %%
for folder, results in others:
    print(f"{folder.name}: {results.get('description', '')}")
    print("  claim:", results.get("claim", ""))
    if "claim_holds" in results:
        print("  claim holds:", results["claim_holds"])
    early = (results.get("verdict") or {}).get("early", {})
    for half in ("unstable_without_correction", "stable_with_correction"):
        if half in early:
            print(f"  {half.replace('_', ' ')}: {early[half]}  ({early.get('rule', '')})")
    for p in early.get("corrected_worse_at", []):
        print(f"    corrected beta2={max(results['beta2']):g} slower than {min(results['beta2']):g} at "
              f"beta1={p['beta1']:g}, step {p['step_size']:.3g}: {p['ratio']:.3f}x")
    pngs = sorted(folder.glob("*.png"))
    if pngs:  # redrawn at notebook resolution, to keep the notebook small
        image = plt.imread(pngs[0])
        height, width = image.shape[:2]
        fig, ax = plt.subplots(figsize=(9, 9 * height / width))
        ax.imshow(image)
        ax.axis("off")
        plt.show()
