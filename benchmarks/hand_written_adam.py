"""Is there headroom in what adaptix's chain compiles to? A hand-written Adam step vs ``adaptix.adam``.

    python benchmarks/hand_written_adam.py [--rounds 15]

Both run update + apply in one donated ``jax.jit`` on one 2**24-parameter leaf,
shaped (4096, 4096) and (2**24,), interleaved in one process; the floor is
28 bytes per parameter over the bandwidth of a donated jitted triad measured here.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import adaptix

from step import measure_bandwidth

LR, B1, B2, EPS = 1e-3, 0.9, 0.999, 1e-8


def hand_written(params, state, grads):
    """Adam in one function, the way one would write it without a library."""
    m, v, count = state
    count = count + 1
    m = B1 * m + (1 - B1) * grads
    v = B2 * v + (1 - B2) * grads * grads
    t = count.astype(jnp.float32)
    m_hat, v_hat = m / (1 - B1**t), v / (1 - B2**t)
    return params - LR * m_hat / (jnp.sqrt(v_hat) + EPS), (m, v, count)


ADAM = adaptix.adam(LR)


def with_adaptix(params, state, grads, tx=ADAM):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    n = 1 << 24
    runs = {}
    for shape in [(4096, 4096), (n,)]:
        for name, step, init in [
            ("hand-written", hand_written, lambda p: (jnp.zeros_like(p), jnp.zeros_like(p), jnp.zeros([], jnp.int32))),
            ("adaptix.adam", with_adaptix, adaptix.adam(LR).init),
        ]:
            params, grads = jnp.zeros(shape), jnp.full(shape, 1e-3)
            compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, init(params), grads).compile()
            runs[(name, shape)] = [compiled, params, init(params), grads, []]
    bandwidth = measure_bandwidth()
    for _ in range(args.rounds):
        for run in runs.values():
            compiled, params, state, grads, times = run
            t = time.perf_counter()
            params, state = compiled(params, state, grads)
            jax.block_until_ready(params)
            times.append(time.perf_counter() - t)
            run[1], run[2] = params, state
    floor = 28 * n / bandwidth
    print(f"triad bandwidth {bandwidth / 1e9:.1f} GB/s, floor {floor * 1e3:.2f} ms")
    print("| implementation | shape | median ms | x floor |\n|---|---|---|---|")
    for (name, shape), run in runs.items():
        median = statistics.median(run[4])
        print(f"| {name} | {shape} | {median * 1e3:.2f} | {median / floor:.2f} |")


if __name__ == "__main__":
    main()
