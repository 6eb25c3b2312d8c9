"""Overhead of adaptix.diagnostics on a jitted Adam step over a ~1M-parameter tree.

Two settings: the bare optimizer step (``update`` + ``apply_updates`` on a
fixed gradient: the worst case, since the step itself is a few memory-bound
passes) and a full training step of the MLP 784-1000-200-10 (987,210
parameters, batch 128: forward, backward, Adam). Interleaved timing: each round
times every variant for ``--steps`` steps, in turn, so drifts in machine load
hit all of them alike; the median over rounds is reported. Usage::

    python notebooks/scripts/diagnostics_overhead.py --rounds 21 --steps 10
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adaptix

SHAPES = {"w1": (784, 1000), "b1": (1000,), "w2": (1000, 200), "b2": (200,), "w3": (200, 10), "b3": (10,)}


def mlp_loss(params, x, y):
    h = jax.nn.relu(x @ params["w1"] + params["b1"])
    h = jax.nn.relu(h @ params["w2"] + params["b2"])
    logits = h @ params["w3"] + params["b3"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def make_train_step(opt):
    @jax.jit
    def step(params, state, batch):
        grads = jax.grad(mlp_loss)(params, *batch)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return step


def make_step(opt):
    @jax.jit
    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    keys = jax.random.split(jax.random.key(0), len(SHAPES))
    params = {k: jax.random.normal(key, s) * 0.01 for (k, s), key in zip(SHAPES.items(), keys)}
    grads = jax.tree.map(lambda p: jnp.sin(1e3 * p), params)
    n = sum(p.size for p in jax.tree.leaves(params))
    variants = {
        "adam": adaptix.adam(1e-3),
        "adam + diagnostics(snr=False)": adaptix.chain(adaptix.adam(1e-3), adaptix.diagnostics(snr=False)),
        "adam + diagnostics()": adaptix.chain(adaptix.adam(1e-3), adaptix.diagnostics()),
        "adam + diagnostics(sample=None)": adaptix.chain(adaptix.adam(1e-3), adaptix.diagnostics(sample=None)),
        "adam + diagnostics(every=10)": adaptix.chain(adaptix.adam(1e-3), adaptix.diagnostics(every=10)),
        "adam + diagnostics(snr=False, every=10)": adaptix.chain(adaptix.adam(1e-3),
                                                                 adaptix.diagnostics(snr=False, every=10)),
    }
    x = jax.random.normal(jax.random.key(1), (128, 784))
    y = jax.random.randint(jax.random.key(2), (128,), 0, 10)
    print(f"{n:,} parameters in {len(SHAPES)} leaves, {jax.devices()[0].platform}, "
          f"{args.rounds} interleaved rounds x {args.steps} steps, median ms/step")
    for setting, make, data in [("optimizer step only", make_step, grads),
                                ("training step (MLP, batch 128)", make_train_step, (x, y))]:
        runners = {}
        for name, opt in variants.items():
            step, state = make(opt), opt.init(params)
            p, state = step(params, state, data)  # compile
            jax.block_until_ready(p)
            runners[name] = [step, p, state]
        times = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, r in runners.items():
                step, p, state = r
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    p, state = step(p, state, data)
                jax.block_until_ready(p)
                times[name].append((time.perf_counter() - t0) / args.steps)
                r[1], r[2] = p, state
        base = np.median(times["adam"])
        print(setting)
        for name, ts in times.items():
            med = np.median(ts)
            print(f"  {name:42s} {1e3 * med:7.3f} ms   x{med / base:.2f}")


if __name__ == "__main__":
    main()
