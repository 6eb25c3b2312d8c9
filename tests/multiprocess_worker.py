"""One process of a multi-process (multi-controller) JAX training run with adaptix; also the one-process reference.

    # two processes on one machine, 4 CPU devices each (start both; each its own --process-id):
    XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/multiprocess_worker.py OUT \\
        --coordinator localhost:12345 --num-processes 2 --process-id 0
    # the same program in one process over 8 devices, with the same (gloo) collectives:
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/multiprocess_worker.py OUT \\
        --coordinator localhost:12346 --num-processes 1 --process-id 0
    # ... or without a distributed runtime (XLA:CPU's in-process collectives): no --coordinator

Every process runs this same program (``tests/test_multiprocess.py`` starts them). Over the 8
devices of all processes, a ``(4, 2)`` mesh ``("data", "model")``, it trains a small MLP on a batch
split over ``"data"``, in two scenarios:

* ``sharded``: parameters sharded over both mesh axes, ``adaptix.adam``: the state follows them;
* ``zero``: parameters replicated, ``adaptix.shard_state(adaptix.adam(...), mesh, "data")``: each
  device holds a quarter of the moments.

Each scenario trains ``STEPS`` steps straight, then again ``STEPS // 2`` steps, an Orbax
checkpoint (every process writes its own shards into the one directory ``OUT/ckpt-<scenario>``),
a restore into the sharded layout, and the remaining steps. ``--restore-from DIR`` also restores
the checkpoints another run wrote (the two-process run's, in the one-process run) and resumes
from them. Process 0 writes ``OUT/results.npz`` (every parameter and state leaf, gathered whole)
and ``OUT/results.json``. Exit status 3 and ``OUT/skip-<process id>.txt``: the platform cannot run
it (no CPU collectives); the test skips then.

Two processes with gloo equal one process with gloo bit for bit: the collectives add the
devices' partial sums in the same order. XLA:CPU's in-process collectives (no ``--coordinator``)
add them in device order, and gloo does not: the runs then agree to rounding only (a few units in
the last place, from the gradient's all-reduce over ``"data"``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

STEPS = 4
SIZES = (16, 32, 32, 4)
BATCH = 32


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--coordinator", default=None,
                        help="host:port of process 0; without it, no distributed runtime (one process)")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--restore-from", type=Path, default=None, help="also resume from that run's checkpoints")
    parser.add_argument("--timeout", type=int, default=60, help="seconds to wait for the other processes")
    return parser.parse_args(argv)


def start(args) -> None:
    """``jax.distributed.initialize`` with CPU collectives (gloo); exit 3 where the platform has none."""
    import jax

    if args.coordinator is None:
        return
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except Exception as err:  # an older JAX: another spelling, or none
        skip(args, f"this JAX has no gloo CPU collectives ({type(err).__name__}: {err})")
    jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                               process_id=args.process_id, initialization_timeout=args.timeout)
    try:
        jax.devices()  # the CPU client is made here, with the gloo collectives
    except Exception as err:  # a jaxlib built without them
        skip(args, f"the CPU backend has no cross-process collectives ({type(err).__name__}: {err})")


def skip(args, reason: str) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"skip-{args.process_id}.txt").write_text(reason)
    sys.exit(3)


def model(seed: int = 0):
    """The MLP's parameters as NumPy arrays (the same in every process) and a batch."""
    import numpy as np

    rng = np.random.default_rng(seed)
    params = {}
    for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        params[f"w{i}"] = (rng.normal(size=(n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
        params[f"b{i}"] = np.zeros(n_out, np.float32)
    x = rng.normal(size=(BATCH, SIZES[0])).astype(np.float32)
    y = rng.normal(size=(BATCH, SIZES[-1])).astype(np.float32)
    return params, (x, y)


def loss_fn(params, batch):
    import jax.numpy as jnp

    x, y = batch
    for i in range(len(SIZES) - 1):
        x = x @ params[f"w{i}"] + params[f"b{i}"]
        x = jnp.tanh(x) if i < len(SIZES) - 2 else x
    return jnp.mean((x - y) ** 2)


def global_array(host, sharding):
    """A global array from the full host copy every process has: each process transfers only its shards."""
    import jax

    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def scenarios(mesh):
    """``name -> (optimizer, the parameters' PartitionSpecs)``."""
    from jax.sharding import PartitionSpec as P

    import adaptix

    sharded = {"w0": P(None, "model"), "b0": P("model"), "w1": P("model", "data"), "b1": P("data"),
               "w2": P("data", None), "b2": P()}
    replicated = {name: P() for name in sharded}
    return {"sharded": (adaptix.adam(1e-2), sharded),
            "zero": (adaptix.shard_state(adaptix.adam(1e-2), mesh, "data"), replicated)}


def make_step(opt, mesh, specs):
    """The jitted training step; the new parameters are pinned to the layout the user chose."""
    import jax
    import optax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    layout = {k: NamedSharding(mesh, spec) for k, spec in specs.items()}

    @jax.jit
    def step(params, state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, state = opt.update(grads, state, params)
        return jax.lax.with_sharding_constraint(optax.apply_updates(params, updates), layout), state, loss

    host_params, host_batch = model()
    batch = tuple(global_array(b, NamedSharding(mesh, P("data"))) for b in host_batch)
    return step, batch


def train(step, params, state, batch, n):
    for _ in range(n):
        params, state, _ = step(params, state, batch)
    return params, state


def abstract(tree):
    import jax

    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def gathered(tree) -> dict:
    """Every leaf, whole, as NumPy (a collective: every process calls it)."""
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return {jax.tree_util.keystr(path): np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
            for path, leaf in leaves}


def local_fraction(tree) -> float:
    """The fraction of the tree's entries held by this process's first device (shards, not copies)."""
    import jax
    import numpy as np

    device = jax.local_devices()[0]
    held = sum(int(np.prod(s.data.shape)) for leaf in jax.tree.leaves(tree) for s in leaf.addressable_shards
               if s.device == device)
    return held / sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def run_scenario(name, opt, specs, mesh, args, checkpointer, arrays, info):
    """Straight, checkpointed and resumed runs of one scenario; results into ``arrays`` and ``info``."""
    import jax
    import optax
    from jax.sharding import NamedSharding

    host_params, _ = model()
    step, batch = make_step(opt, mesh, specs)

    def fresh():
        params = {k: global_array(v, NamedSharding(mesh, specs[k])) for k, v in host_params.items()}
        return params, jax.jit(opt.init)(params)

    params, state = train(step, *fresh(), batch, STEPS)
    arrays.update({f"{name}/straight/params{k}": v for k, v in gathered(params).items()})
    arrays.update({f"{name}/straight/state{k}": v for k, v in gathered(state).items()})
    info[name] = {"state_fraction_per_device": local_fraction(optax.tree_utils.tree_get(state, "mu")),
                  "params_fraction_per_device": local_fraction(params),
                  "param_specs": {k: str(v.sharding.spec) for k, v in params.items()}}

    params, state = train(step, *fresh(), batch, STEPS // 2)
    path = (args.out / f"ckpt-{name}").resolve()
    checkpointer.save(path, {"params": params, "opt_state": state})
    checkpointer.wait_until_finished()
    restored = checkpointer.restore(path, abstract({"params": params, "opt_state": state}))
    params, state = train(step, restored["params"], restored["opt_state"], batch, STEPS - STEPS // 2)
    arrays.update({f"{name}/resumed/params{k}": v for k, v in gathered(params).items()})
    info[name]["resumed_param_specs"] = {k: str(v.sharding.spec) for k, v in params.items()}
    info[name]["checkpoint_files"] = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())

    if args.restore_from is not None:  # another run's checkpoint, written by a different number of processes
        target = abstract({"params": params, "opt_state": state})
        other = checkpointer.restore((args.restore_from / f"ckpt-{name}").resolve(), target)
        params, _ = train(step, other["params"], other["opt_state"], batch, STEPS - STEPS // 2)
        arrays.update({f"{name}/cross/params{k}": v for k, v in gathered(params).items()})


def main(argv=None) -> int:
    args = parse_args(argv)
    start(args)
    import jax
    import numpy as np
    import orbax.checkpoint as ocp
    from jax.sharding import Mesh

    began = time.perf_counter()
    mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
    info = {"process_count": jax.process_count(), "device_count": jax.device_count(),
            "local_device_count": jax.local_device_count(), "backend": jax.default_backend()}
    arrays: dict = {}
    checkpointer = ocp.StandardCheckpointer()
    for name, (opt, specs) in scenarios(mesh).items():
        run_scenario(name, opt, specs, mesh, args, checkpointer, arrays, info)
    checkpointer.close()
    info["seconds"] = time.perf_counter() - began
    if jax.process_index() == 0:
        np.savez(args.out / "results.npz", **arrays)
        (args.out / "results.json").write_text(json.dumps(info, indent=1))
    if args.coordinator is not None:
        jax.distributed.shutdown()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.exit(main())
