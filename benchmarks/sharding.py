"""Per-device optimizer-state bytes and step time of Adam on 8 simulated CPU devices, three layouts.

    python benchmarks/sharding.py [--quick] [--rounds N] [--devices 8]

(The script asks XLA for ``--devices`` simulated CPU devices itself, before JAX starts.)

The model is ``benchmarks/step.py``'s workload B, a 196-leaf transformer-like tree of 16.4M float32
parameters (``--quick``: 2 layers instead of 12), on a 1-D ``("data",)`` mesh of all devices:

* ``replicated``: data parallelism as usual: parameters (and gradients) replicated, ``adaptix.adam``;
  its state follows the parameters, so every device holds all of it;
* ``shard_state``: the same parameters, ``adaptix.shard_state(adaptix.adam(...), mesh, "data")``:
  every device holds 1/N of the moments (ZeRO stage 1) and the updates are all-gathered;
* ``fully sharded``: parameters and gradients sharded over ``"data"`` (each leaf on its first
  dimension divisible by N, as ``shard_state`` chooses), ``adaptix.adam``: the state follows them.

Bytes: what device 0 holds (its shards of every leaf), counted from ``addressable_shards``. Time:
one optimizer step (update and apply in one donated ``jax.jit``, the gradients given), the three
layouts interleaved round after round, median and min over rounds. The simulated devices share the
host's cores and memory: the times measure the total work of all devices (the replicated step does
the whole update N times), not what N real devices would take in parallel.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 layers instead of 12, 5 rounds")
    parser.add_argument("--rounds", type=int, default=None, help="timed steps per layout (default 20, quick 5)")
    parser.add_argument("--devices", type=int, default=8, help="simulated CPU devices (default 8)")
    return parser.parse_args(argv)


def layouts(mesh, host: dict) -> dict:
    """``name -> (optimizer, parameters' shardings)``."""
    import jax
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import adaptix
    from adaptix._shard import sharded_dim

    n = mesh.shape["data"]

    def fsdp(x):
        dim = sharded_dim(np.shape(x), n)
        return NamedSharding(mesh, P() if dim is None else P(*([None] * dim), "data"))

    replicated = jax.tree.map(lambda x: NamedSharding(mesh, P()), host)
    return {"replicated": (adaptix.adam(1e-3), replicated),
            "shard_state": (adaptix.shard_state(adaptix.adam(1e-3), mesh, "data"), replicated),
            "fully sharded": (adaptix.adam(1e-3), jax.tree.map(fsdp, host))}


def held_by(tree, device) -> int:
    """Bytes of ``tree`` that ``device`` holds."""
    import jax

    return sum(s.data.nbytes for x in jax.tree.leaves(tree) for s in x.addressable_shards if s.device == device)


def prepare(opt, shardings, host: dict) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    params = jax.device_put(jax.tree.map(jnp.asarray, host), shardings)
    grads = jax.device_put(jax.tree.map(lambda x: jnp.full(x.shape, 1e-3, x.dtype), host), shardings)
    state = jax.jit(opt.init)(params)

    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        params = jax.lax.with_sharding_constraint(optax.apply_updates(params, updates), shardings)
        return params, state

    began = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads).compile()
    compile_seconds = time.perf_counter() - began
    device = jax.devices()[0]
    return {"run": compiled, "params": params, "state": state, "grads": grads, "compile": compile_seconds,
            "state_bytes": held_by(state, device), "param_bytes": held_by(params, device), "times": []}


def time_rounds(cases: dict, rounds: int) -> None:
    import jax

    for case in cases.values():  # one untimed step each
        case["params"], case["state"] = case["run"](case["params"], case["state"], case["grads"])
        jax.block_until_ready(case["state"])
    for _ in range(rounds):
        for case in cases.values():
            began = time.perf_counter()
            case["params"], case["state"] = case["run"](case["params"], case["state"], case["grads"])
            jax.block_until_ready((case["params"], case["state"]))
            case["times"].append(time.perf_counter() - began)


def table(cases: dict, n_params: int, n_leaves: int, devices: int) -> str:
    lines = [f"Adam, {n_params / 1e6:.1f}M float32 parameters in {n_leaves} leaves, {devices} simulated CPU devices "
             "(bytes: device 0)", "",
             "| layout | optimizer state per device | parameters per device | step, median (min) | compile |",
             "|---|---|---|---|---|"]
    for name, c in cases.items():
        ms = [1e3 * t for t in c["times"]]
        lines.append(f"| {name} | {c['state_bytes'] / 1e6:.1f} MB ({c['state_bytes'] / (4 * n_params):.3f} x 4 B/param)"
                     f" | {c['param_bytes'] / 1e6:.1f} MB | {statistics.median(ms):.1f} ms ({min(ms):.1f}) "
                     f"| {c['compile']:.1f} s |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if "jax" in sys.modules:
        raise SystemExit("benchmarks/sharding.py: run it as a script (JAX must not be started yet)")
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={args.devices}".strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import numpy as np
    from jax.sharding import Mesh

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from step import workload_b  # imported after XLA_FLAGS is set: step.py starts JAX

    rounds = args.rounds or (5 if args.quick else 20)
    host = workload_b(2 if args.quick else 12)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    load = os.getloadavg()
    cases = {name: prepare(opt, shardings, host) for name, (opt, shardings) in layouts(mesh, host).items()}
    time_rounds(cases, rounds)
    leaves = jax.tree.leaves(host)
    print(table(cases, sum(x.size for x in leaves), len(leaves), jax.device_count()))
    print(f"\n{rounds} rounds; {os.cpu_count()} CPU cores; load average before {load[0]:.2f}, "
          f"after {os.getloadavg()[0]:.2f}; jax {jax.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
