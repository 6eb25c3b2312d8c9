"""How far is the floor with a one-pass kernel? Adam as an XLA FFI custom call vs ``adaptix.adam``.

    python benchmarks/ffi_adam_experiment.py [--rounds 20] [--workloads A,B]

XLA:CPU compiles Adam into three passes per leaf (40 B per float32 parameter
instead of 28; see RESULTS.md). This experiment compiles ``ffi_adam_step.cc``
(one pass, in place, the work shared over XLA's intra-op thread pool) with the
system C++ compiler against the XLA FFI headers shipped with jaxlib, registers it
with ``jax.ffi``, checks it against ``adaptix.adam`` and times both, interleaved,
inside a donated ``jax.jit`` step. It is a measurement, not a feature: adaptix
itself stays pure Python.
"""

from __future__ import annotations

import argparse
import ctypes
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import adaptix

from hand_written_adam import B1, B2, EPS, LR
from hand_written_adam import with_adaptix as chain_step  # adaptix.adam + apply, the step users write
from step import WORKLOADS, measure_bandwidth

SOURCE = Path(__file__).resolve().parent / "ffi_adam_step.cc"


def build_and_register(workdir: Path) -> None:
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        sys.exit("no C++ compiler on PATH: nothing to measure")
    library = workdir / "libffi_adam_step.so"
    subprocess.run([compiler, "-O3", "-std=c++17", "-fPIC", "-shared", "-ffp-contract=off", "-fno-math-errno",
                    "-w", "-I", jax.ffi.include_dir(), str(SOURCE), "-o", str(library)], check=True)
    handler = ctypes.cdll.LoadLibrary(str(library)).AdamStep
    jax.ffi.register_ffi_target("adaptix_experiment_adam_step", jax.ffi.pycapsule(handler), platform="cpu")


def ffi_step(params, state, grads):
    """Adam through the custom call; state ``(m, v, count)``."""
    mu, nu, count = state
    count = count + 1
    t = count.astype(jnp.float32)
    b1, b2 = jnp.float32(B1), jnp.float32(B2)
    # 1 - b rounded from double, as the chain's Python-float weights are
    scalars = jnp.stack([b1, b2, jnp.float32(LR), jnp.float32(EPS), 1 - b1**t, 1 - b2**t,
                         jnp.float32(1 - B1), jnp.float32(1 - B2)])

    def one(p, g, m, v):
        out = jax.ShapeDtypeStruct(p.shape, p.dtype)
        call = jax.ffi.ffi_call("adaptix_experiment_adam_step", (out, out, out),
                                input_output_aliases={0: 0, 2: 1, 3: 2})
        return call(p, g, m, v, scalars)

    treedef = jax.tree.structure(params)
    new = [one(*leaves) for leaves in zip(*(treedef.flatten_up_to(x) for x in (params, grads, mu, nu)))]
    p, m, v = (treedef.unflatten([x[i] for x in new]) for i in range(3))
    return p, (m, v, count)


def ffi_init(params):
    return jax.tree.map(jnp.zeros_like, params), jax.tree.map(jnp.zeros_like, params), jnp.zeros([], jnp.int32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--workloads", default="A,B")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        build_and_register(Path(tmp))

        rng = np.random.default_rng(0)
        p0 = jnp.asarray(rng.normal(size=(300, 70)), jnp.float32)
        pa, sa, pb, sb = p0, ffi_init(p0), p0, adaptix.adam(LR).init(p0)
        for _ in range(20):
            g = jnp.asarray(rng.normal(size=(300, 70)), jnp.float32)
            pa, sa = jax.jit(ffi_step)(pa, sa, g)
            pb, sb = jax.jit(chain_step)(pb, sb, g)
        diff = float(np.abs(np.asarray(pa) - np.asarray(pb)).max())
        print(f"after 20 steps (lr {LR}, |p| ~ 1) the kernel's parameters differ from adaptix.adam's by at most "
              f"{diff:.2g} ({diff / LR:.2g} of one step; float32 spacing at 1 is {np.finfo(np.float32).eps:.2g})")

        print("| workload | implementation | median ms | x floor |\n|---|---|---|---|")
        for workload in args.workloads.split(","):
            runs = {}
            for name, step, init in [("adaptix.adam (XLA)", chain_step, adaptix.adam(LR).init),
                                     ("one-pass FFI kernel", ffi_step, ffi_init)]:
                params = jax.tree.map(jnp.asarray, WORKLOADS[workload]())
                grads = jax.tree.map(lambda x: jnp.full(x.shape, 1e-3, x.dtype), params)
                state = init(params)
                compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads).compile()
                params, state = compiled(params, state, grads)
                jax.block_until_ready(params)
                runs[name] = [compiled, params, state, grads, []]
            bandwidths = []
            for r in range(args.rounds):
                if r % 5 == 0:
                    bandwidths.append(measure_bandwidth())
                for run in runs.values():
                    t0 = time.perf_counter()
                    run[1], run[2] = run[0](run[1], run[2], run[3])
                    jax.block_until_ready(run[1])
                    run[4].append(time.perf_counter() - t0)
            n = sum(x.size for x in jax.tree.leaves(WORKLOADS[workload]()))
            floor = 28 * n / statistics.median(bandwidths)
            for name, run in runs.items():
                median = statistics.median(run[4])
                print(f"| {workload} | {name} | {median * 1e3:.2f} | {median / floor:.2f} |")
        print(f"(floor: 28 B per parameter at the median triad bandwidth, "
              f"{statistics.median(bandwidths) / 1e9:.1f} GB/s in the last workload)")


if __name__ == "__main__":
    main()
