"""How much 8-bit moments (``adaptix.quantized``) change Adam, and why 4 bits are not offered.

    python benchmarks/quantized_accuracy.py maps       # the code maps: the update m/sqrt(v) read back from codes
    python benchmarks/quantized_accuracy.py tracking   # a second moment with b2 = 0.99 / 0.999 over 3000 steps
    python benchmarks/quantized_accuracy.py warmup     # a second moment from 0, b2 up to 0.9999, 4680 steps
    ADAPTIX_DATA=../shared/data python benchmarks/quantized_accuracy.py vae [OUT]   # the VAE, 3 moment storages
    cd benchmarks && adaptix-experiments run digits --seeds 3 --optimizers \\
        adam,quantized_accuracy:adam_8bit,quantized_accuracy:adam_8bit_every_leaf,\\
        quantized_accuracy:adam_8bit_simulated,quantized_accuracy:adam_4bit_simulated

``maps`` compares the paper's dynamic map (decades of 10) with adaptix's (decades of 8 signed, 16
unsigned) on block-wise moments whose entries have log-normal scales. ``tracking`` runs
``scale_by_rms`` on stationary noise in float32, bfloat16 and 8-bit codes, halving the gradients
halfway, and compares the stored ``v`` with float32's. The factories train the digits MLP
(64-100-10, 7,510 parameters): ``adam_8bit`` quantizes what the default ``min_size=4096`` quantizes
(the 6,400-entry kernel), ``adam_8bit_every_leaf`` every leaf; ``adam_*bit_simulated`` is Adam with
its moments rounded to the nearest code of a map of that many bits after each update (blocks of
256, used as stored), in plain ``jax.numpy``: the 8-bit one checks the simulation against adaptix,
the 4-bit one is what adaptix would be with 4 bits. ``vae`` trains section 6.4's VAE (784-500-50,
full MNIST, batch 128, 10 epochs) with bias-corrected Adam, beta1 = 0.9, over beta2 in {0.99, 0.999,
0.9999} x step size in {10^-3.5, 10^-3, 10^-2.5} (points of the bias-correction experiment's grid),
from 3 seeds, with the moments in float32, bfloat16 and 8-bit codes; it reads the loss as that
experiment does (the mean minibatch loss over the last tenth of the run) and compares each storage
with float32 by the project's paired rule (worse when the mean difference over seeds exceeds twice
its s.d.). ``OUT/results.json`` is rewritten after each run, and a rerun trains only what it lacks.
Results: ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adaptix


def dynamic_map(bits: int, signed: bool, base: float) -> np.ndarray:
    """Dettmers et al.'s dynamic map with decades of ``base``: 0 and base^-E (1/base + (1 - 1/base)(k + 1)/2^F)."""
    top = bits - 2 if signed else bits - 1
    values = [0.0]
    for exponent in range(top, -1, -1):
        fraction_bits = top - exponent
        k = np.arange(2 ** fraction_bits)
        values += list(base ** -exponent * (1 / base + (1 - 1 / base) * (k + 1) / 2 ** fraction_bits))
    return np.array(values)


def nearest(x: np.ndarray, table: np.ndarray, block: int = 256, never_zero: bool = False) -> np.ndarray:
    """``x`` (size a multiple of ``block``) stored block-wise with ``table`` (nearest code) and read back."""
    blocks = x.reshape(-1, block)
    scale = np.abs(blocks).max(axis=1, keepdims=True)
    ratio = np.abs(blocks) / np.where(scale > 0, scale, 1)
    index = np.clip(np.searchsorted(table, ratio), 1, len(table) - 1)
    low, high = table[index - 1], table[index]
    value = np.where(ratio - low < high - ratio, low, high)
    if never_zero:
        value = np.where((value == 0) & (ratio > 0), table[1], value)
    return (np.sign(blocks) * value * scale).reshape(x.shape)


def compare_maps(size: int = 1 << 20, seed: int = 1) -> None:
    """Mean |m/sqrt(v) read back - m/sqrt(v)| over the RMS of m/sqrt(v), for three spreads of the entries' scales."""
    rng = np.random.default_rng(seed)
    maps = {"paper (10/10)": (8, 10, 10), "adaptix (8/16)": (8, 8, 16), "16/16": (8, 16, 16), "8/8": (8, 8, 8),
            "4-bit 8/16": (4, 8, 16)}
    for spread in (0.2, 0.4, 0.7):
        sigma = 10 ** rng.normal(0, spread, size)
        m, v = rng.normal(0, 1, size) * sigma * 0.3, sigma ** 2 * rng.chisquare(5, size) / 5
        step = m / np.sqrt(v)
        cells = []
        for name, (bits, signed_base, unsigned_base) in maps.items():
            m_q = nearest(m, dynamic_map(bits, True, signed_base))
            v_q = nearest(v, dynamic_map(bits, False, unsigned_base), never_zero=True)
            error = np.mean(np.abs(m_q / np.sqrt(v_q) - step)) / np.sqrt(np.mean(step ** 2))
            cells.append(f"{name} {100 * error:.2f} %")
        print(f"scales spread over {spread} decades (s.d.): " + ", ".join(cells))


def track_second_moment(steps: int = 3000, size: int = 256 * 64, seed: int = 0) -> None:
    """v of scale_by_rms on noise whose entries' scales spread over 0.5 decades; the gradients halve halfway."""
    sigma = jnp.asarray(10 ** np.random.default_rng(seed).normal(0, 0.5, size), jnp.float32)

    def run(decay, storage):
        opt = adaptix.scale_by_rms(decay, accumulator_dtype=storage)

        def body(state, inputs):
            t, key = inputs
            g = jax.random.normal(key, (size,)) * sigma * jnp.where(t > steps // 2, 0.5, 1.0)
            return opt.update(g, state)[1], None

        keys = jax.random.split(jax.random.key(seed + 1), steps)
        state, _ = jax.lax.scan(body, opt.init(jnp.zeros(size)), (jnp.arange(steps), keys))
        return np.asarray(adaptix.dequantize(state.nu), np.float64)

    def four_bits(decay):  # the same run, v rounded to a 4-bit map after each step (NumPy, the same noise)
        table, v = dynamic_map(4, False, 16), np.zeros(size)
        keys = jax.random.split(jax.random.key(seed + 1), steps)
        for t in range(steps):
            g = np.asarray(jax.random.normal(keys[t], (size,)) * sigma, np.float64) * (0.5 if t > steps // 2 else 1.0)
            v = nearest(decay * v + (1 - decay) * g * g, table, never_zero=True)
        return v

    for decay in (0.99, 0.999):
        reference = run(decay, None)
        for name, stored in (("bfloat16", run(decay, jnp.bfloat16)), ("8-bit", run(decay, adaptix.quantized())),
                             ("4-bit (simulated)", four_bits(decay))):
            ratio = stored / reference
            print(f"b2={decay} {name}: v / v_float32 median {np.median(ratio):.3f}, 1st-99th percentile "
                  f"{np.quantile(ratio, 0.01):.2f}-{np.quantile(ratio, 0.99):.2f}, mean |sqrt(v / v_float32) - 1| "
                  f"{np.mean(np.abs(np.sqrt(ratio) - 1)):.3f}")


def second_moment_from_zero(steps: int = 4680, size: int = 256 * 64, seed: int = 0) -> None:
    """v of scale_by_rms from 0 on stationary noise (scales spread over 0.5 decades) for ``steps`` (the VAE's
    10 epochs), stored in bfloat16 and 8 bits, against float32: the warm-up phase, for b2 up to 0.9999."""
    sigma = jnp.asarray(10 ** np.random.default_rng(seed).normal(0, 0.5, size), jnp.float32)

    def run(decay, storage):
        opt = adaptix.scale_by_rms(decay, accumulator_dtype=storage)

        def body(state, key):
            return opt.update(jax.random.normal(key, (size,)) * sigma, state)[1], None

        state, _ = jax.lax.scan(body, opt.init(jnp.zeros(size)), jax.random.split(jax.random.key(seed + 1), steps))
        return np.asarray(adaptix.dequantize(state.nu), np.float64)

    for decay in (0.99, 0.999, 0.9999):
        reference = run(decay, None)
        for name, storage in (("bfloat16", jnp.bfloat16), ("8-bit", adaptix.quantized())):
            ratio = run(decay, storage) / reference
            print(f"b2={decay} {name}: v / v_float32 after {steps} steps from 0: median {np.median(ratio):.3f}, "
                  f"1st-99th percentile {np.quantile(ratio, 0.01):.2f}-{np.quantile(ratio, 0.99):.2f}")


# ---------------------------------------------------------------- factories for adaptix-experiments


def adam_8bit(learning_rate):
    """Adam with both moments in 8-bit codes (defaults: blocks of 256, leaves of 4096 entries or more)."""
    return adaptix.adam(learning_rate, mu_dtype=adaptix.quantized(), nu_dtype=adaptix.quantized())


def adam_8bit_every_leaf(learning_rate):
    """Adam with every leaf's moments in 8-bit codes (``min_size=0``: biases too)."""
    q = adaptix.quantized(min_size=0)
    return adaptix.adam(learning_rate, mu_dtype=q, nu_dtype=q)


def _rounded(x, table, never_zero, block=256):
    """``x`` block-wise to the nearest of ``table`` (magnitudes), read back; zero-padded to whole blocks."""
    flat = jnp.ravel(x)
    padded = jnp.pad(flat, (0, -flat.size % block)).reshape(-1, block)
    scale = jnp.max(jnp.abs(padded), axis=1, keepdims=True)
    ratio = jnp.abs(padded) / jnp.where(scale > 0, scale, 1)
    index = jnp.argmin(jnp.abs(ratio[..., None] - table), axis=-1)
    if never_zero:
        index = jnp.where(ratio > 0, jnp.maximum(index, 1), index)
    value = jnp.sign(padded) * table[index] * scale
    return value.ravel()[: flat.size].reshape(x.shape)


def simulated_adam(learning_rate, bits, b1=0.9, b2=0.999, eps=1e-8):
    """Adam whose moments are rounded block-wise to a ``bits``-bit dynamic map (8/16) after each update."""
    signed = jnp.asarray(dynamic_map(bits, True, 8), jnp.float32)
    unsigned = jnp.asarray(dynamic_map(bits, False, 16), jnp.float32)

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return (jnp.zeros([], jnp.int32), zeros, zeros)

    def update(updates, state, params=None):
        del params
        count, mu, nu = state
        count = count + 1
        mu = jax.tree.map(lambda m, g: _rounded(b1 * m + (1 - b1) * g, signed, False), mu, updates)
        nu = jax.tree.map(lambda v, g: _rounded(b2 * v + (1 - b2) * g * g, unsigned, True), nu, updates)
        correction1, correction2 = 1 - b1 ** count, 1 - b2 ** count
        out = jax.tree.map(lambda m, v: -learning_rate * (m / correction1) / (jnp.sqrt(v / correction2) + eps),
                           mu, nu)
        return out, (count, mu, nu)

    return optax.GradientTransformation(init, update)


def adam_8bit_simulated(learning_rate):
    return simulated_adam(learning_rate, 8)


def adam_4bit_simulated(learning_rate):
    return simulated_adam(learning_rate, 4)


# ---------------------------------------------------------------- the bias-correction VAE in three storages

#: The moments' storage (``mu_dtype`` and ``nu_dtype``) of each arm of the VAE comparison.
VAE_STORAGES = {"float32": None, "bfloat16": jnp.bfloat16, "8-bit": adaptix.quantized()}


def vae_storages(out: Path = Path("runs/eight-bit-vae"), seeds: int = 3, epochs: int = 10, data_dir=None) -> dict:
    """Trains the grid of the module docstring once per seed and storage; ``OUT/results.json`` after each."""
    import dataclasses

    from adaptix.experiments import data as datasets
    from adaptix.experiments import vae_bias_correction as vae

    x_train = datasets.load_mnist(data_dir).train.x
    late = epochs * (len(x_train) // vae.FULL.batch_size)
    budget = dataclasses.replace(vae.FULL, beta1=(0.9,), beta2=(0.99, 0.999, 0.9999),
                                 step_sizes=(3.16e-4, 1e-3, 3.16e-3), early=late, late=late)
    path = Path(out) / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {
        "model": f"VAE 784-{budget.hidden}-{budget.latent}-{budget.hidden}-784, full MNIST, batch 128, {epochs} epochs",
        "loss": "negative ELBO (nats per image), mean minibatch loss over the last tenth of the run",
        "optimizer": "adaptix.adam(step size, b1=0.9, b2, eps=1e-8) with mu_dtype = nu_dtype = the storage",
        "seeds": list(range(seeds)), "runs": []}
    path.parent.mkdir(parents=True, exist_ok=True)
    for seed in range(seeds):
        for storage, moments in VAE_STORAGES.items():
            done = {r["grid_point"] for r in results["runs"] if r["seed"] == seed and r["storage"] == storage}
            if len(done) == len(budget.points):
                continue
            def make_tx(lr, b1, b2, moments=moments):
                return adaptix.adam(lr, b1=b1, b2=b2, mu_dtype=moments, nu_dtype=moments)

            def keep(j, losses, seed=seed, storage=storage):
                b1, b2, lr = budget.points[j]
                loss = vae.checkpoint_loss(losses, budget.late)
                results["runs"].append({"storage": storage, "seed": seed, "grid_point": j, "beta2": b2,
                                        "learning_rate": lr, "loss": None if math.isinf(loss) else loss})
                path.write_text(json.dumps(results, indent=1))
                print(f"seed {seed} {storage:8s} beta2={b2:<6g} lr={lr:<8g} loss {loss:.2f}", flush=True)

            _, seconds = vae.train_grid(make_tx, budget, x_train, seed=seed, skip=frozenset(done), on_point=keep)
            results.setdefault("seconds", {}).setdefault(storage, 0.0)
            results["seconds"][storage] += seconds
            path.write_text(json.dumps(results, indent=1))
    print(vae_table(results))
    vae_figure(results, Path(out) / "eight-bit-vae.png")
    return results


def _paired(results: dict, storage: str, b2: float, lr: float) -> np.ndarray:
    """Per seed, ``storage``'s loss minus float32's at one grid point (inf where either diverged)."""
    loss = {(r["storage"], r["seed"]): math.inf if r["loss"] is None else r["loss"]
            for r in results["runs"] if (r["beta2"], r["learning_rate"]) == (b2, lr)}
    seeds = sorted(s for st, s in loss if st == storage and ("float32", s) in loss)
    return np.array([loss[(storage, s)] - loss[("float32", s)] for s in seeds])


def vae_table(results: dict) -> str:
    """Mean ± s.d. over seeds per storage and grid point, and each storage against float32 by the paired rule."""
    loss = {}
    for r in results["runs"]:
        key = (r["storage"], r["beta2"], r["learning_rate"])
        loss.setdefault(key, {})[r["seed"]] = math.inf if r["loss"] is None else r["loss"]
    lines = ["| beta2 | step size | " + " | ".join(VAE_STORAGES) + " | 8-bit - float32 | bfloat16 - float32 |",
             "|---|---|" + "---|" * (len(VAE_STORAGES) + 2)]
    for b2 in sorted({k[1] for k in loss}):
        for lr in sorted({k[2] for k in loss}):
            cells = []
            for storage in VAE_STORAGES:
                v = np.array(list(loss.get((storage, b2, lr), {}).values()))
                cells.append("–" if not v.size else "diverged" if not np.isfinite(v).all()
                             else f"{v.mean():.2f} ± {v.std(ddof=1):.2f}" if v.size > 1 else f"{v[0]:.2f}")
            for storage in ("8-bit", "bfloat16"):
                d = _paired(results, storage, b2, lr)
                if len(d) < 2 or not np.isfinite(d).all():
                    cells.append("–")
                    continue
                rel = ">" if d.mean() > 2 * d.std(ddof=1) else "<" if d.mean() < -2 * d.std(ddof=1) else "≈"
                cells.append(f"{d.mean():+.2f} ± {d.std(ddof=1):.2f} ({rel})")
            lines.append(f"| {b2:g} | {lr:.3g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def vae_figure(results: dict, path: Path) -> None:
    """Per beta2, each storage's loss minus float32's against the step size: mean over seeds, ± 2 s.d. bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from adaptix.experiments.figures import fitted_title, readable_log_axis

    beta2 = sorted({r["beta2"] for r in results["runs"]})
    steps = sorted({r["learning_rate"] for r in results["runs"]})
    fig, axes = plt.subplots(1, len(beta2), figsize=(3.4 * len(beta2), 3.4), dpi=110, sharey=True, squeeze=False)
    for ax, b2 in zip(axes[0], beta2):
        for storage, color, shift in (("8-bit", "tab:red", 0.97), ("bfloat16", "tab:blue", 1.03)):
            points = [(lr, _paired(results, storage, b2, lr)) for lr in steps]
            points = [(lr * shift, d) for lr, d in points if len(d) > 1 and np.isfinite(d).all()]
            if points:
                x = [lr for lr, _ in points]
                ax.errorbar(x, [d.mean() for _, d in points], yerr=[2 * d.std(ddof=1) for _, d in points],
                            color=color, marker="o", ms=4, capsize=3, lw=1.2, label=f"{storage} − float32")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log")
        readable_log_axis(ax, "x")
        ax.set_title(f"β2 = {b2:g}", fontsize=9)
        ax.set_xlabel("step size α")
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].set_ylabel("loss − float32's loss (nats)")
    if axes[0, 0].get_legend_handles_labels()[0]:
        axes[0, 0].legend(fontsize=7)
    fitted_title(fig, f"Adam's moments in 8 bits and bfloat16 against float32: {results['model']}, β1 = 0.9; "
                 f"mean over {len(results['seeds'])} seeds (paired), bars ± 2 s.d.", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "maps"
    if what == "vae":
        vae_storages(*(Path(a) for a in sys.argv[2:3]))  # MNIST from $ADAPTIX_DATA
    elif what == "vae-figure":  # redraw from OUT/results.json
        out = Path(sys.argv[2] if len(sys.argv) > 2 else "runs/eight-bit-vae")
        results = json.loads((out / "results.json").read_text())
        print(vae_table(results))
        vae_figure(results, out / "eight-bit-vae.png")
    else:
        {"maps": compare_maps, "tracking": track_second_moment, "warmup": second_moment_from_zero}[what]()
