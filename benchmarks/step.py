"""One optimizer step against Optax, PyTorch and the memory-bandwidth floor.

    python benchmarks/step.py [--quick] [--workloads A,B,C] [--optimizers adam,rmsprop] [--rounds N]

An optimizer step is memory-bound: Adam reads params, grads, m, v and writes
params, m, v, 28 bytes per float32 parameter. The floor is those bytes divided
by the bandwidth of a donated, jitted triad measured in the same process. All
implementations run interleaved, round after round, so that a noisy shared
machine slows them alike. Every JAX step is the pattern users write: update and
apply inside one ``jax.jit`` with the params and state donated.

Implementations: Optax, adaptix as the README writes it, adaptix wrapped in
``adaptix.packed`` (leaves of at most 65,536 entries packed into one vector per
dtype), and torch.optim with ``foreach=True`` and ``fused=True``. The ``adam-8bit``
row (both moments in ``adaptix.quantized()`` codes: leaves of 4,096 entries or more,
blocks of 256) has no Optax or PyTorch counterpart: its ``optax`` column is Optax's
float32 Adam, and it adds float32 adaptix Adam (``adaptix float32``) to compare with.

Columns: median and min step time, ratio to Optax's median, ratio to the floor,
compile time (lower + compile), optimizer-state bytes per parameter, minor page
faults per step in steady state (0 when donation works end to end).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adaptix

# ---------------------------------------------------------------- workloads


def workload_a() -> dict:
    """A: one 4096x4096 float32 leaf (16.8M parameters)."""
    return {"w": np.zeros((4096, 4096), np.float32)}


def workload_b(layers: int = 12) -> dict:
    """B: a 196-leaf transformer-like tree, 16.4M parameters (``layers`` blocks of 16 leaves)."""
    d, vocab = 320, 5000
    tree = {"embed": np.zeros((vocab, d), np.float32), "pos": np.zeros((512, d), np.float32),
            "ln_f": {"scale": np.zeros(d, np.float32), "bias": np.zeros(d, np.float32)}}
    for i in range(layers):
        layer = {}
        for name in ("q", "k", "v", "o"):
            layer[name] = {"kernel": np.zeros((d, d), np.float32), "bias": np.zeros(d, np.float32)}
        layer["fc1"] = {"kernel": np.zeros((d, 4 * d), np.float32), "bias": np.zeros(4 * d, np.float32)}
        layer["fc2"] = {"kernel": np.zeros((4 * d, d), np.float32), "bias": np.zeros(d, np.float32)}
        layer["ln1"] = {"scale": np.zeros(d, np.float32), "bias": np.zeros(d, np.float32)}
        layer["ln2"] = {"scale": np.zeros(d, np.float32), "bias": np.zeros(d, np.float32)}
        tree[f"layer{i:02d}"] = layer
    return tree


def workload_c() -> dict:
    """C: a 52-leaf small model, about 100k parameters (dispatch-bound)."""
    return {f"dense{i:02d}": {"kernel": np.zeros((60, 60), np.float32), "bias": np.zeros(60, np.float32)}
            for i in range(26)}


def small_leaves(n: int) -> Callable[[], dict]:
    def make() -> dict:
        return {f"p{i:04d}": np.zeros((16, 16), np.float32) for i in range(n)}

    make.__doc__ = f"{n} leaves of 16x16 float32 ({n * 256 / 1e3:.0f}k parameters)"
    return make


WORKLOADS = {"A": workload_a, "B": workload_b, "C": workload_c,
             "L1000": small_leaves(1000), "L3000": small_leaves(3000)}

# ---------------------------------------------------------------- optimizers
# name -> (adaptix factory, optax factory, torch factory, floor bytes per float32 parameter)
LR = 1e-3
OPTIMIZERS = {
    "adam": (lambda: adaptix.adam(LR), lambda: optax.adam(LR),
             lambda torch, ps, **kw: torch.optim.Adam(ps, lr=LR, **kw), 28),
    "adamw": (lambda: adaptix.adamw(LR, weight_decay=1e-2), lambda: optax.adamw(LR, weight_decay=1e-2),
              lambda torch, ps, **kw: torch.optim.AdamW(ps, lr=LR, weight_decay=1e-2, **kw), 28),
    "rmsprop": (lambda: adaptix.rmsprop(LR, momentum=0.9), lambda: optax.rmsprop(LR, momentum=0.9),
                lambda torch, ps, **kw: torch.optim.RMSprop(ps, lr=LR, momentum=0.9, **kw), 28),
    "sgd-momentum": (lambda: adaptix.sgd(LR, momentum=0.9), lambda: optax.sgd(LR, momentum=0.9),
                     lambda torch, ps, **kw: torch.optim.SGD(ps, lr=LR, momentum=0.9, **kw), 20),
    # the first moment stored in bfloat16: 2 + 2 bytes instead of 4 + 4 (torch has no such option)
    "adam-mu-bf16": (lambda: adaptix.adam(LR, mu_dtype=jnp.bfloat16), lambda: optax.adam(LR, mu_dtype=jnp.bfloat16),
                     None, 24),
    # both moments in 8-bit codes: params 4 + 4, grads 4, codes 1 + 1 read and written (scales: 1/64 byte)
    "adam-8bit": (lambda: adaptix.adam(LR, mu_dtype=adaptix.quantized(), nu_dtype=adaptix.quantized()),
                  lambda: optax.adam(LR), None, 16),
}
# Rows without a counterpart elsewhere time the float32 adaptix optimizer beside them.
REFERENCES = {"adam-8bit": ("adaptix float32", lambda: adaptix.adam(LR))}


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@dataclass
class Impl:
    """One implementation of one step on one workload, ready to be timed."""

    name: str
    run: Callable[[], None]  # one step, blocking until done
    compile_seconds: float | None
    state_bytes_per_param: float | None
    times: list
    faults: list


def _jax_impl(name, tx, params_np, grads_np) -> Impl:
    params = jax.tree.map(jnp.asarray, params_np)
    grads = jax.tree.map(lambda x: jnp.full(x.shape, 1e-3, x.dtype), grads_np)
    state = tx.init(params)
    num_params = sum(x.size for x in jax.tree.leaves(params))
    state_bytes = sum(x.nbytes for x in jax.tree.leaves(state) if hasattr(x, "nbytes"))

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    jitted = jax.jit(step, donate_argnums=(0, 1))
    t0 = time.perf_counter()
    compiled = jitted.lower(params, state, grads).compile()
    compile_seconds = time.perf_counter() - t0
    box = [params, state]

    def run():
        box[0], box[1] = compiled(box[0], box[1], grads)
        jax.block_until_ready(box)

    for _ in range(3):
        run()
    return Impl(name, run, compile_seconds, state_bytes / num_params, [], [])


def _torch_impl(name, make, params_np, kind: str) -> Impl | None:
    import torch

    params = [torch.zeros(x.shape, dtype=torch.float32, requires_grad=True) for x in jax.tree.leaves(params_np)]
    for p in params:
        p.grad = torch.full_like(p, 1e-3)
    try:
        opt = make(torch, params, **{kind: True})
        opt.step()
    except (RuntimeError, TypeError, ValueError):
        return None  # this optimizer has no such implementation in torch
    num_params = sum(p.numel() for p in params)
    state_bytes = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values()
                      if torch.is_tensor(t) and t.numel() > 1)

    def run():
        with torch.no_grad():
            opt.step()

    for _ in range(2):
        run()
    return Impl(name, run, None, state_bytes / num_params, [], [])


def measure_bandwidth(n: int = 1 << 24, repeats: int = 7) -> float:
    """Bytes per second of a donated jitted triad ``a + s * b`` (read a, b; write a)."""
    triad = jax.jit(lambda a, b: a + 0.5 * b, donate_argnums=0)
    a, b = jnp.ones(n), jnp.ones(n)
    a = triad(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a = triad(a, b)
        a.block_until_ready()
        times.append(time.perf_counter() - t)
    return 12 * n / statistics.median(times)


def bench(workload: str, optimizer: str, rounds: int, torch_kinds: tuple[str, ...]) -> list[dict]:
    params_np = WORKLOADS[workload]()
    make_adaptix, make_optax, make_torch, floor_bytes = OPTIMIZERS[optimizer]
    num_params = sum(x.size for x in jax.tree.leaves(params_np))
    impls = [
        _jax_impl("optax", make_optax(), params_np, params_np),
        _jax_impl("adaptix", make_adaptix(), params_np, params_np),
        _jax_impl("adaptix packed", adaptix.packed(make_adaptix()), params_np, params_np),
    ]
    if optimizer in REFERENCES:
        name, make_reference = REFERENCES[optimizer]
        impls.insert(2, _jax_impl(name, make_reference(), params_np, params_np))
    for kind in torch_kinds if make_torch is not None else ():
        impl = _torch_impl(f"torch {kind}", make_torch, params_np, kind)
        if impl is not None:
            impls.append(impl)
    bandwidths = []
    for r in range(rounds):
        if r % max(1, rounds // 3) == 0:
            bandwidths.append(measure_bandwidth())
        for impl in impls:
            f0 = _minor_faults()
            t = time.perf_counter()
            impl.run()
            impl.times.append(time.perf_counter() - t)
            impl.faults.append(_minor_faults() - f0)
    bandwidth = statistics.median(bandwidths)
    floor = floor_bytes * num_params / bandwidth
    optax_median = statistics.median(impls[0].times)
    rows = []
    for impl in impls:
        median = statistics.median(impl.times)
        rows.append({
            "workload": workload, "optimizer": optimizer, "impl": impl.name,
            "median_ms": median * 1e3, "min_ms": min(impl.times) * 1e3,
            "vs_optax": median / optax_median, "vs_floor": median / floor if num_params > 1e6 else None,
            "compile_s": impl.compile_seconds, "state_bytes": impl.state_bytes_per_param,
            "faults": statistics.median(impl.faults[len(impl.faults) // 2:]),
            "floor_ms": floor * 1e3, "bandwidth_gbs": bandwidth / 1e9, "params": num_params,
        })
    return rows


def format_table(rows: list[dict]) -> str:
    head = ["workload", "opt", "impl", "median ms", "min ms", "x optax", "x floor", "compile s", "state B/p",
            "faults/step"]
    lines = [head]
    for r in rows:
        lines.append([
            r["workload"], r["optimizer"], r["impl"], f"{r['median_ms']:.2f}", f"{r['min_ms']:.2f}",
            f"{r['vs_optax']:.2f}", "-" if r["vs_floor"] is None else f"{r['vs_floor']:.2f}",
            "-" if r["compile_s"] is None else f"{r['compile_s']:.2f}",
            "-" if r["state_bytes"] is None else f"{r['state_bytes']:.1f}", f"{r['faults']:.0f}",
        ])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="A, B, C with Adam, few rounds: under a minute")
    p.add_argument("--workloads", default=None, help="comma-separated subset of " + ",".join(WORKLOADS))
    p.add_argument("--optimizers", default=None, help="comma-separated subset of " + ",".join(OPTIMIZERS))
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args(argv)
    workloads = args.workloads.split(",") if args.workloads else (["A", "B", "C"] if args.quick else list(WORKLOADS))
    optimizers = args.optimizers.split(",") if args.optimizers else (["adam"] if args.quick else list(OPTIMIZERS))
    rounds = args.rounds or (8 if args.quick else 30)
    torch_kinds = () if args.no_torch else ("foreach", "fused")
    if not args.no_torch:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}, optax {optax.__version__}, "
          f"adaptix {adaptix.__version__}; rounds={rounds}", flush=True)
    rows = []
    for w in workloads:
        for o in optimizers:
            if o != "adam" and w.startswith("L") and args.quick:
                continue
            rows.extend(bench(w, o, rounds, torch_kinds))
            print(f"  done {w} {o}", file=sys.stderr, flush=True)
    print(f"bandwidth (donated jitted triad, median over the run): "
          f"{statistics.median(r['bandwidth_gbs'] for r in rows):.1f} GB/s")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
