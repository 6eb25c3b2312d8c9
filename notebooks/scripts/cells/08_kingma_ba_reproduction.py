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


for results in comparisons:
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results["runs"]:
        losses = np.asarray(r["iteration_loss"], float)
        every = int(r.get("iteration_loss_every") or 1)
        window = max(1, len(losses) // 60)
        y = smooth(losses, window)
        x = (np.arange(len(y)) + window) * every
        label = f"{r['optimizer']} (lr {r['learning_rate']:g})"
        if r.get("diverged"):
            label += ", diverged"
        ax.plot(x, y, lw=1.3, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("iterations")
    ax.set_ylabel("training cost (minibatch, smoothed)")
    ax.set_title(f"{results['experiment']}: {results.get('description', '')}", fontsize=8)
    ax.legend(fontsize=8)
    plt.show()
    print("claim:", results.get("claim", ""))
    print(f"{'optimizer':16s} {'lr':>8s} {'final train cost':>17s} {'test accuracy':>14s}")
    for r in results["runs"]:
        cost = r["epoch_train_loss"][-1] if r.get("epoch_train_loss") else float("nan")
        acc = r["epoch_test_accuracy"][-1] if r.get("epoch_test_accuracy") else float("nan")
        print(f"{r['optimizer']:16s} {r['learning_rate']:8g} {cost:17.4f} {acc:14.4f}")

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
    pngs = sorted(folder.glob("*.png"))
    if pngs:  # redrawn at notebook resolution, to keep the notebook small
        image = plt.imread(pngs[0])
        height, width = image.shape[:2]
        fig, ax = plt.subplots(figsize=(9, 9 * height / width))
        ax.imshow(image)
        ax.axis("off")
        plt.show()
