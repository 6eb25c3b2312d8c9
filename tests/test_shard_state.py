"""``adaptix.shard_state``: the optimizer state sharded along the data axis (ZeRO stage 1).

On 8 simulated CPU devices (one subprocess: ``XLA_FLAGS`` must be set before JAX starts), with
parameters replicated over a 1-D ``("data",)`` mesh, a ``(8, 16)`` matrix ``w``, a ``(16,)``
vector ``b``, a ``(6,)`` vector ``r`` (no dimension divisible by 8) and a scalar ``s``; for every
optimizer of the table:

* the parameter-shaped state of ``w`` is split on its 8 rows, of ``b`` on its entries, ``r``'s
  and ``s``'s stay replicated, after a jitted ``init`` and after jitted training steps, and the
  updates come out replicated, like the parameters (eager ``init``: adam, nnx);
* three jitted training steps equal the unwrapped optimizer's, bit for bit for 11 of the 28
  elementwise entries and within 3 units in the last place for the others (why: see
  :func:`test_training_equals_the_unsharded_optimizer`).

And: eager updates, ``params=None``, a ``(4, 2)`` mesh with model-parallel parameters, packed
state in both orders, explicit mesh axes, ``flax.nnx.Optimizer``, an Orbax round trip and the
per-device bytes. In this process (one device): validation, the state's structure, chains,
extra arguments and ``inject_hyperparams``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh

import adaptix

from optimizers import OPTIMIZER_PARAMS

TESTS = Path(__file__).resolve().parent
# One optimizer per kind of state, not the whole table: each case compiles two steps on 8 simulated
# devices, and the whole table took 80 s of CI on two busy cores (a first moment, sums, second
# moments, step sizes, Lion's interpolation, a posterior, diagnostics, packed vectors, 8-bit codes).
SHARDED_CASES = ("sgd_momentum", "adagrad", "rmsprop", "rprop", "adadelta", "adam", "radam", "lion", "adabayes",
                 "chain_adam_diagnostics", "packed_adamw", "adam_8bit")
CASE_PARAMS = [p for p in OPTIMIZER_PARAMS if p.values[0].id in SHARDED_CASES]
MAX_ULPS = 8  # of each leaf's largest magnitude, after three steps (measured: at most 3)

SCRIPT = r'''
import json, sys, tempfile
import jax, jax.numpy as jnp, numpy as np, optax
import optax.tree_utils as otu
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

tests_dir, out_path = sys.argv[1:3]
SHARDED_CASES = tuple(json.loads(sys.argv[3]))
sys.path.insert(0, tests_dir)
from optimizers import OPTIMIZERS
import adaptix

devices = np.array(jax.devices())
mesh = Mesh(devices, ("data",))
REP = NamedSharding(mesh, P())
EXPECTED = {"w": P("data", None), "b": P("data"), "r": P(), "s": P()}
rng = np.random.default_rng(0)
HOST = {"w": rng.normal(size=(8, 16)).astype(np.float32), "b": rng.normal(size=16).astype(np.float32),
        "r": rng.normal(size=6).astype(np.float32), "s": np.float32(0.7)}
X = rng.normal(size=(32, 8)).astype(np.float32)
results = {"device_count": jax.device_count(), "cases": {}}


def replicated(tree=HOST):
    return jax.device_put(jax.tree.map(jnp.asarray, tree), REP)


def loss_fn(p, x):
    pred = jnp.tanh(x @ p["w"] + p["b"]) * p["s"]
    return jnp.mean(pred ** 2) + jnp.sum((p["r"] - 1.0) ** 2)


def step_fn(opt, with_updates=False):
    """A jitted data-parallel training step; the new parameters are pinned replicated, as the user placed them.

    ``with_updates``: the step also returns the updates.
    """
    x = jax.device_put(X, NamedSharding(mesh, P("data")))  # data parallel: the batch is split

    @jax.jit
    def step(params, state, x):
        grads = jax.grad(loss_fn)(params, x)
        updates, state = opt.update(grads, state, params)
        new = jax.lax.with_sharding_constraint(optax.apply_updates(params, updates), REP)
        return (new, state, updates) if with_updates else (new, state)
    return lambda params, state: step(params, state, x)


def spec_errors(state, params, expected=EXPECTED):
    """Paths of params-shaped state leaves not laid out as expected; their number."""
    bad, n = [], 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        key = getattr(path[-1], "key", None) if path else None
        if key in params and np.shape(leaf) == np.shape(params[key]):
            n += 1
            if not leaf.sharding.is_equivalent_to(NamedSharding(mesh, expected[key]), np.ndim(leaf)):
                bad.append(f"{jax.tree_util.keystr(path)}: {leaf.sharding.spec}")
    return bad, n


def ulps(a, b):
    """max |a - b| in units in the last place of the larger leaf's largest magnitude."""
    a, b = np.asarray(a), np.asarray(b)
    if a.size == 0 or not np.issubdtype(a.dtype, np.floating):
        return 0.0 if np.array_equal(a, b) else float("inf")
    scale = np.max(np.abs(np.asarray(b, np.float64)))
    return float(np.max(np.abs(a.astype(np.float64) - b)) / np.spacing(np.asarray(max(scale, 1e-30), a.dtype)))


def max_ulps(x, y):
    return max([ulps(a, b) for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y))] or [0.0])


def bitwise(x, y):
    return all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y)))


def run_case(case):
    plain, wrapped = case.make(), adaptix.shard_state(case.make(), mesh, "data")
    entry = {}
    params = replicated()
    state = jax.jit(wrapped.init)(params)
    entry["jit"], entry["n_param_leaves"] = spec_errors(state, params)
    entry["same_structure"] = jax.tree.structure(state) == jax.tree.structure(plain.init(params))
    if not case.elementwise:  # full-matrix AdaGrad: n x n matrices, not params-shaped; 14 s to compile here
        return entry
    step, step_ref = step_fn(wrapped, with_updates=True), step_fn(plain, with_updates=True)
    p_ref, s_ref = replicated(), plain.init(replicated())
    for _ in range(3):
        params, state, updates = step(params, state)
        p_ref, s_ref, _ = step_ref(p_ref, s_ref)
    entry["after_steps"], _ = spec_errors(state, params)
    entry["updates_replicated"] = all(u.sharding.is_fully_replicated for u in jax.tree.leaves(updates))
    entry["param_ulps"], entry["state_ulps"] = max_ulps(params, p_ref), max_ulps(state, s_ref)
    entry["bitwise"] = bitwise(params, p_ref) and bitwise(state, s_ref)
    entry["finite"] = all(bool(np.all(np.isfinite(np.asarray(v)))) for v in jax.tree.leaves(params))
    return entry


for case in OPTIMIZERS:
    if case.id in SHARDED_CASES:
        results["cases"][case.id] = run_case(case)
'''

SCRIPT_MORE = r'''
def eager_and_no_params():
    opt = adaptix.shard_state(adaptix.adam(1e-2), mesh)
    params = replicated()
    grads = replicated(jax.tree.map(lambda v: np.ones_like(v), HOST))
    updates, state = opt.update(grads, opt.init(params), params)  # eagerly
    out = {"eager_state": spec_errors(state, params)[0],
           "eager_updates_replicated": all(u.sharding.is_fully_replicated for u in jax.tree.leaves(updates))}
    updates, state = jax.jit(lambda g, s: opt.update(g, s))(grads, opt.init(params))  # no params
    plain = jax.jit(lambda g, s: adaptix.adam(1e-2).update(g, s))(grads, adaptix.adam(1e-2).init(params))[0]
    out["no_params_state"] = spec_errors(state, params)[0]
    out["no_params_ulps"] = max_ulps(updates, plain)
    return out


def spec(x):
    """The array's PartitionSpec as a string, without trailing Nones: P('data', None) is P('data',)."""
    entries = list(x.sharding.spec)
    while entries and entries[-1] is None:
        entries.pop()
    return str(P(*entries))


def two_axes():
    """A (4, 2) mesh: a model-parallel axis on another dimension carries over; on the chosen one it does not."""
    mesh2 = Mesh(devices.reshape(4, 2), ("data", "model"))
    specs = {"tp_rows": P("model", None), "tp_cols": P(None, "model"), "fsdp": P("data", None), "rep": P()}
    shapes = {"tp_rows": (8, 16), "tp_cols": (8, 16), "fsdp": (16, 8), "rep": (8, 16)}
    params = {k: jax.device_put(jnp.ones(shapes[k]), NamedSharding(mesh2, specs[k])) for k in specs}
    opt = adaptix.shard_state(adaptix.adam(1e-2), mesh2, "data")
    out = {}
    for how, state in (("eager", opt.init(params)), ("jit", jax.jit(opt.init)(params))):
        mu = otu.tree_get(state, "mu")
        state = jax.jit(lambda g, s, p: opt.update(g, s, p)[1])(params, state, params)
        after = otu.tree_get(state, "mu")
        out[how] = {k: [spec(mu[k]), spec(after[k])] for k in specs}
    return out


def packed_orders():
    ref_opt = adaptix.packed(adaptix.adam(1e-2), max_leaf_size=100)
    out = {}
    inside = adaptix.packed(adaptix.shard_state(adaptix.adam(1e-2), mesh), max_leaf_size=100)
    for name, opt in (("shard_of_packed", adaptix.shard_state(ref_opt, mesh)), ("packed_of_shard", inside)):
        params, p_ref = replicated(), replicated()
        state, s_ref = jax.jit(opt.init)(params), ref_opt.init(p_ref)
        step, step_ref = step_fn(opt), step_fn(ref_opt)
        for _ in range(3):
            params, state = step(params, state)
            p_ref, s_ref = step_ref(p_ref, s_ref)
        mu = otu.tree_get(state, "mu")
        out[name] = {"large": spec(mu["large"][0]), "small": spec(mu["small"]["float32"]),
                     "small_size": int(mu["small"]["float32"].size), "ulps": max_ulps(params, p_ref)}
    return out


def explicit_axes():
    emesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
    with jax.set_mesh(emesh):
        params = jax.device_put(jax.tree.map(jnp.asarray, HOST), NamedSharding(emesh, P()))
        opt = adaptix.shard_state(adaptix.adam(1e-2), emesh)
        state = jax.jit(opt.init)(params)
        step = jax.jit(lambda p, s: (lambda u, s: (optax.apply_updates(p, u), s))(*opt.update(p, s, p)))
        params, state = step(params, state)
        mu = otu.tree_get(state, "mu")
        return {"mu": {k: spec(v) for k, v in mu.items()},
                "params_replicated": all(p.sharding.is_fully_replicated for p in jax.tree.leaves(params))}


def nnx_optimizer():
    from flax import nnx

    def make():
        model = nnx.Linear(8, 16, rngs=nnx.Rngs(0))
        nnx.update(model, jax.device_put(nnx.state(model), REP))
        return model

    @nnx.jit
    def train(model, optimizer, x):
        grads = nnx.grad(lambda m: jnp.mean(jnp.tanh(m(x)) ** 2))(model)
        optimizer.update(model, grads)

    x = jax.device_put(X, NamedSharding(mesh, P("data")))
    runs = {}
    for name, tx in (("plain", adaptix.adam(1e-2)), ("sharded", adaptix.shard_state(adaptix.adam(1e-2), mesh))):
        model = make()
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        for _ in range(3):
            train(model, optimizer, x)
        runs[name] = (model, optimizer)
    kernel_mu = otu.tree_get(nnx.state(runs["sharded"][1], nnx.OptState), "mu")["kernel"]
    return {"kernel_mu_spec": spec(getattr(kernel_mu, "value", kernel_mu)),
            "kernel_replicated": runs["sharded"][0].kernel[...].sharding.is_fully_replicated,
            "ulps": max_ulps(nnx.state(runs["sharded"][0]), nnx.state(runs["plain"][0]))}


def orbax_round_trip():
    import orbax.checkpoint as ocp
    opt = adaptix.shard_state(adaptix.adam(1e-2), mesh)
    params = replicated()
    state = step_fn(opt)(params, opt.init(params))[1]
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
    with tempfile.TemporaryDirectory() as d, ocp.StandardCheckpointer() as ckpt:
        ckpt.save(d + "/s", state)
        ckpt.wait_until_finished()
        restored = ckpt.restore(d + "/s", abstract)
        plain = ckpt.restore(d + "/s", jax.eval_shape(adaptix.adam(1e-2).init, params))  # into the unwrapped state
    return {"equal": bitwise(restored, state), "layout": spec_errors(restored, params)[0],
            "into_plain": bitwise(plain, state) and jax.tree.structure(plain) == jax.tree.structure(state)}


def bytes_per_device():
    params = replicated({"w": np.ones((512, 64), np.float32), "b": np.ones(64, np.float32)})
    held = {}
    q = adaptix.quantized()  # w (32,768 entries) in 8-bit codes with 128 scales; b (64) stays float32
    eight_bit = lambda: adaptix.adam(1e-2, mu_dtype=q, nu_dtype=q)
    for name, opt in (("plain", adaptix.adam(1e-2)), ("sharded", adaptix.shard_state(adaptix.adam(1e-2), mesh)),
                      ("8-bit", eight_bit()), ("8-bit sharded", adaptix.shard_state(eight_bit(), mesh))):
        state = jax.jit(opt.init)(params)
        held[name] = sum(s.data.nbytes for x in jax.tree.leaves(state) for s in x.addressable_shards
                         if s.device == devices[0])
    return held


for name in ("eager_and_no_params", "two_axes", "packed_orders", "explicit_axes", "nnx_optimizer",
             "orbax_round_trip", "bytes_per_device"):
    results[name] = globals()[name]()
with open(out_path, "w") as f:
    json.dump(results, f, indent=1)
'''


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("shard_state") / "results.json"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
    proc = subprocess.run([sys.executable, "-c", SCRIPT + SCRIPT_MORE, str(TESTS), str(out), json.dumps(SHARDED_CASES)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"subprocess failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return json.loads(out.read_text())


def test_eight_simulated_devices(results):
    assert results["device_count"] == 8


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_state_is_sharded_along_the_data_axis(results, case):
    entry = results["cases"][case.id]
    assert entry["jit"] == [], f"init under jit: {entry['jit']}"
    assert entry["same_structure"], "shard_state changed the state's structure"
    if not case.elementwise:
        pytest.skip("full-matrix AdaGrad: its n x n state is not params-shaped: it stays as it is (not trained here)")
    assert entry["after_steps"] == [], f"after jitted steps: {entry['after_steps']}"
    assert entry["updates_replicated"], "the updates are not laid out like the (replicated) parameters"


def test_the_layout_check_is_not_vacuous(results):
    stateful = [cid for cid, e in results["cases"].items() if e["n_param_leaves"] > 0]
    # all but packed vectors and 8-bit codes (whose layout test_each_device_holds_an_eighth counts in bytes)
    assert set(stateful) == set(SHARDED_CASES) - {"packed_adamw", "adam_8bit"}
    assert results["cases"]["packed_adamw"]["n_param_leaves"] == 0  # packed state: no params-shaped leaves


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_training_equals_the_unsharded_optimizer(results, case):
    # Not always bit for bit. The arithmetic of every coordinate is the same, but the partitioned
    # step is compiled into other fusions (shard-sized loops, with slices and an all-gather between
    # them), and XLA:CPU contracts a multiply and an add inside one fusion into one fused
    # multiply-add (one rounding instead of two): where a fusion boundary moves, a rounding moves
    # with it, and the next steps carry the difference on. Measured (jax 0.10.2, XLA:CPU): 11 of
    # the 28 elementwise entries bit for bit (SGD, AdaGrad, RMSProp, Rprop, ...), the others within
    # 0.5 ulp (parameters) and 3 ulps (state) of each leaf's largest magnitude after three steps.
    entry = results["cases"][case.id]
    if not case.elementwise:
        pytest.skip("full-matrix AdaGrad is not trained here (its state is not params-shaped)")
    assert entry["finite"]
    assert entry["param_ulps"] <= MAX_ULPS, entry
    assert entry["state_ulps"] <= MAX_ULPS, entry


def test_most_optimizers_train_bit_for_bit(results):
    bitwise = [cid for cid, e in results["cases"].items() if e.get("bitwise")]
    assert {"sgd_momentum", "adagrad", "rmsprop", "rprop"} <= set(bitwise), bitwise


def test_eager_update_and_no_params(results):
    r = results["eager_and_no_params"]
    assert r["eager_state"] == [] and r["eager_updates_replicated"]
    assert r["no_params_state"] == [] and r["no_params_ulps"] <= MAX_ULPS


def test_model_parallel_axes_carry_over(results):
    # [after init, after a jitted update]: "data" always on the first dimension divisible by 4
    eager, jit = results["two_axes"]["eager"], results["two_axes"]["jit"]
    assert eager == {"tp_cols": ["P('data', 'model')"] * 2,  # "model" on the other dimension carries over
                     "fsdp": ["P('data',)"] * 2,  # already split along "data" on the chosen dimension: as it was
                     "tp_rows": ["P('data',)"] * 2,  # "model" on the chosen dimension gives way (documented)
                     "rep": ["P('data',)"] * 2}, eager
    # under jit the other dimensions are the partitioner's to choose: the parameter's axes or none
    assert jit["fsdp"] == eager["fsdp"], jit
    for name in ("tp_cols", "tp_rows", "rep"):
        assert all(spec in ("P('data',)", "P('data', 'model')") for spec in jit[name]), jit


def test_packed_in_either_order(results):
    r = results["packed_orders"]
    # shard_state(packed(...)): the packed tree is not params-shaped, nothing is sharded
    assert r["shard_of_packed"]["large"] == "P()" and r["shard_of_packed"]["small"] == "P()"
    # packed(shard_state(...)): the large leaf is sharded, the 23-entry vector (not divisible by 8) is not
    assert r["packed_of_shard"]["large"] == "P('data',)"
    assert r["packed_of_shard"]["small_size"] % 8 != 0 and r["packed_of_shard"]["small"] == "P()"
    assert r["shard_of_packed"]["ulps"] <= MAX_ULPS and r["packed_of_shard"]["ulps"] <= MAX_ULPS


def test_explicit_mesh_axes(results):
    r = results["explicit_axes"]
    assert r["mu"] == {"w": "P('data',)", "b": "P('data',)", "r": "P()", "s": "P()"}
    assert r["params_replicated"]


def test_flax_nnx_optimizer(results):
    r = results["nnx_optimizer"]
    assert r["kernel_mu_spec"] == "P('data',)" and r["kernel_replicated"]
    assert r["ulps"] <= MAX_ULPS


def test_orbax_round_trip(results):
    r = results["orbax_round_trip"]
    assert r["equal"] and r["layout"] == [] and r["into_plain"]


def test_each_device_holds_an_eighth(results):
    held = results["bytes_per_device"]
    assert held["plain"] == 2 * 4 * (512 * 64 + 64) + 4  # mu, nu replicated, and the count
    assert held["sharded"] == 2 * 4 * (512 * 64 + 64) // 8 + 4
    # 8-bit moments: the codes and the per-block scales are split too
    assert held["8-bit"] == 2 * (512 * 64 + 4 * 128 + 4 * 64) + 4
    assert held["8-bit sharded"] == 2 * (512 * 64 + 4 * 128 + 4 * 64) // 8 + 4


# ---------------------------------------------------------------- in this process (one device)


def mesh1(names=("data",)):
    return Mesh(np.array(jax.devices()[:1]).reshape((1,) * len(names)), names)


def test_validation():
    opt = adaptix.adam(1e-3)
    with pytest.raises(ValueError, match=r"axis must name axes of the mesh, which are \('data',\); got 'batch'"):
        adaptix.shard_state(opt, mesh1(), "batch")
    with pytest.raises(ValueError, match="twice"):
        adaptix.shard_state(opt, mesh1(("data", "model")), ("data", "data"))
    with pytest.raises(TypeError, match="axis must be a mesh axis name"):
        adaptix.shard_state(opt, mesh1(), 0)
    with pytest.raises(TypeError, match="axis must be a mesh axis name"):
        adaptix.shard_state(opt, mesh1(), ())
    with pytest.raises(TypeError, match="mesh must be a jax.sharding.Mesh"):
        adaptix.shard_state(opt, "data")
    with pytest.raises(TypeError, match="inner must be an optax.GradientTransformation"):
        adaptix.shard_state(lambda p: p, mesh1())
    adaptix.shard_state(opt, mesh1(("data", "model")), ("data", "model"))  # a tuple of axes


def test_holds_no_arrays_and_keeps_the_state():
    opt = adaptix.shard_state(adaptix.adam(1e-3), mesh1())
    assert isinstance(opt, optax.GradientTransformationExtraArgs) and isinstance(opt, adaptix.Transformation)
    cells = [c.cell_contents for f in opt for c in (f.__closure__ or ())]
    assert not any(isinstance(x, (jax.Array, np.ndarray)) for x in cells + jax.tree.leaves(cells))
    params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
    assert jax.tree.structure(opt.init(params)) == jax.tree.structure(adaptix.adam(1e-3).init(params))


def test_chains_and_extra_arguments():
    params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)}
    grads = jax.tree.map(lambda x: x ** 2 - 0.3, params)
    mesh = mesh1()
    pairs = [
        (optax.chain(optax.clip_by_global_norm(0.5), adaptix.shard_state(adaptix.adam(1e-2), mesh)),
         optax.chain(optax.clip_by_global_norm(0.5), adaptix.adam(1e-2))),
        # stages of an adaptix chain: chain_input reaches scale_by_rms, chain_step bias_correction
        (adaptix.chain(adaptix.trace(0.9, ema=True), adaptix.shard_state(adaptix.scale_by_rms(0.99), mesh),
                       adaptix.shard_state(adaptix.bias_correction(0.9), mesh), adaptix.scale(-0.1)),
         adaptix.chain(adaptix.trace(0.9, ema=True), adaptix.scale_by_rms(0.99), adaptix.bias_correction(0.9),
                       adaptix.scale(-0.1))),
        (adaptix.shard_state(adaptix.inject_hyperparams(adaptix.adam)(learning_rate=1e-2), mesh),
         adaptix.inject_hyperparams(adaptix.adam)(learning_rate=1e-2)),
    ]
    for wrapped, plain in pairs:
        s_w, s_p = wrapped.init(params), plain.init(params)
        for _ in range(3):
            u_w, s_w = jax.jit(wrapped.update)(grads, s_w, params)
            u_p, s_p = jax.jit(plain.update)(grads, s_p, params)
        assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves((u_w, s_w)), jax.tree.leaves((u_p, s_p))))
    assert isinstance(adaptix.shard_state(adaptix.bias_correction(0.9), mesh), adaptix.CountedTransformation)


def test_extra_arguments_reach_inner():
    seen = []

    def update(updates, state, params=None, **extra):
        seen.append(sorted(extra))
        return updates, state

    inner = optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), update)
    opt = adaptix.shard_state(inner, mesh1())
    opt.update(jnp.ones(2), opt.init(jnp.ones(2)), value=jnp.float32(1.0), grad=jnp.ones(2))
    assert seen == [["grad", "value"]]
    plain = adaptix.shard_state(optax.GradientTransformation(lambda p: optax.EmptyState(),
                                                             lambda u, s, p=None: (u, s)), mesh1())
    plain.update(jnp.ones(2), plain.init(jnp.ones(2)), value=1.0)  # a plain transformation: extras dropped
