"""The benchmark scripts run, and compare like with like (no timing is asserted here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptix

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if not (BENCHMARKS / "step.py").is_file():
    pytest.skip("the benchmarks are not here (an sdist carries the package and its tests)", allow_module_level=True)


def _load(name: str):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(f"adaptix_benchmark_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_step_benchmark_runs_and_prints_every_column():
    step = _load("step")
    rows = step.bench("C", "adam", rounds=2, torch_kinds=())
    assert [r["impl"] for r in rows] == ["optax", "adaptix", "adaptix packed"]
    for r in rows:
        assert r["state_bytes"] == pytest.approx(8.0, rel=1e-3)  # m and v in float32, plus the counts
        assert r["compile_s"] > 0 and r["median_ms"] > 0 and r["vs_floor"] is None  # C is not memory-bound
    table = step.format_table(rows).splitlines()
    assert [c.strip() for c in table[0].strip("|").split("|")] == [
        "workload", "opt", "impl", "median ms", "min ms", "x optax", "x floor", "compile s", "state B/p", "faults/step"]
    assert len(table) == 2 + len(rows)


def test_bf16_first_moment_row_counts_six_bytes_per_parameter():
    step = _load("step")
    rows = step.bench("C", "adam-mu-bf16", rounds=1, torch_kinds=("fused",))
    assert [r["impl"] for r in rows] == ["optax", "adaptix", "adaptix packed"]  # torch has no such option
    assert all(r["state_bytes"] == pytest.approx(6.0, rel=1e-3) for r in rows)


def test_8bit_row_times_float32_adaptix_beside_it():
    step = _load("step")
    rows = {r["impl"]: r for r in step.bench("C", "adam-8bit", rounds=1, torch_kinds=("fused",))}
    assert list(rows) == ["optax", "adaptix", "adaptix float32", "adaptix packed"]  # torch has no such option
    # C's leaves (3,600 entries at most) are below min_size: float32; packed into one vector, they are quantized
    assert rows["adaptix"]["state_bytes"] == pytest.approx(8.0, rel=1e-3)
    assert rows["adaptix packed"]["state_bytes"] == pytest.approx(2 + 8 / 256, rel=1e-2)


def test_quantized_accuracy_factories_train():
    accuracy = _load("quantized_accuracy")
    params = {"w": jnp.ones((16, 16))}
    for make in (accuracy.adam_8bit, accuracy.adam_8bit_every_leaf, accuracy.adam_8bit_simulated,
                 accuracy.adam_4bit_simulated):
        tx = make(learning_rate=0.1)
        updates, _ = tx.update({"w": jnp.ones((16, 16))}, tx.init(params), params)
        np.testing.assert_allclose(np.asarray(updates["w"]), -0.1, rtol=1e-5)  # Adam's first step: -lr sign(g)
    assert len(accuracy.dynamic_map(8, True, 8)) == 128 and len(accuracy.dynamic_map(4, False, 16)) == 16


def test_vae_storage_table_applies_the_paired_rule(tmp_path):
    accuracy = _load("quantized_accuracy")
    runs = []
    for seed, (f32, bf16, q8) in enumerate([(100.0, 100.1, 101.0), (102.0, 101.9, 103.1), (98.0, 98.0, 99.0)]):
        for storage, loss in (("float32", f32), ("bfloat16", bf16), ("8-bit", q8)):
            runs.append({"storage": storage, "seed": seed, "beta2": 0.999, "learning_rate": 1e-3, "loss": loss})
    runs.append({"storage": "float32", "seed": 0, "beta2": 0.9999, "learning_rate": 1e-3, "loss": None})
    table = accuracy.vae_table({"runs": runs}).splitlines()
    assert table[2].split(" | ")[2:] == ["100.00 ± 2.00", "100.00 ± 1.95", "101.03 ± 2.05",
                                         "+1.03 ± 0.06 (>)", "+0.00 ± 0.10 (≈) |"]
    assert "diverged" in table[3] and table[3].count("–") == 4  # one storage, one seed: no comparison
    np.testing.assert_allclose(accuracy._paired({"runs": runs}, "8-bit", 0.999, 1e-3), [1.0, 1.1, 1.0])
    accuracy.vae_figure({"runs": runs, "seeds": [0, 1, 2], "model": "VAE"}, tmp_path / "vae.png")
    assert (tmp_path / "vae.png").stat().st_size > 10_000


def test_hand_written_adam_is_the_same_computation_as_the_chain():
    hand = _load("hand_written_adam")
    rng = np.random.default_rng(0)
    params = jnp.asarray(rng.normal(size=(32, 8)), jnp.float32)
    tx = adaptix.adam(hand.LR)
    s_hand = (jnp.zeros_like(params), jnp.zeros_like(params), jnp.zeros([], jnp.int32))
    s_chain = tx.init(params)
    p_hand = p_chain = params
    for _ in range(5):
        g = jnp.asarray(rng.normal(size=(32, 8)), jnp.float32)
        p_hand, s_hand = jax.jit(hand.hand_written)(p_hand, s_hand, g)
        p_chain, s_chain = jax.jit(hand.with_adaptix)(p_chain, s_chain, g)
    np.testing.assert_allclose(p_hand, p_chain, rtol=1e-6, atol=1e-7)


def test_ffi_adam_experiment_builds_and_matches_the_chain(tmp_path):
    """The one-pass kernel of the FFI experiment compiles and computes Adam's step (to float32 rounding)."""
    import shutil

    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler")
    ffi = _load("ffi_adam_experiment")
    ffi.build_and_register(tmp_path)
    rng = np.random.default_rng(1)
    shapes = {"w": (70, 3000), "b": (5,)}  # a leaf above the kernel's 65,536-entry chunk, and a tiny one
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
    pa, sa = jax.tree.map(jnp.copy, params), ffi.ffi_init(params)  # the kernel step donates its inputs
    pb, sb = params, adaptix.adam(ffi.LR).init(params)
    for _ in range(5):
        g = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
        pa, sa = jax.jit(ffi.ffi_step, donate_argnums=(0, 1))(pa, sa, g)
        pb, sb = jax.jit(ffi.chain_step)(pb, sb, g)
    for k in shapes:
        np.testing.assert_allclose(pa[k], pb[k], rtol=0, atol=1e-3 * ffi.LR)
        # m agrees to a rounding of its terms (|g| ~ 1); XLA may fuse a multiply-add where the kernel does not
        np.testing.assert_allclose(sa[0][k], optax.tree_utils.tree_get(sb, "mu")[k], rtol=1e-5, atol=1e-6)
