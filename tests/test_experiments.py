"""The experiments command line: runs, files, plots, user optimizers, real data in --quick mode."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import adaptix
from adaptix.experiments import optimizers, options, registry
from adaptix.experiments.__main__ import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SHARED_DATA = Path(os.environ.get("ADAPTIX_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _assert_png(path: Path, min_size: tuple[int, int] = (400, 300)) -> None:
    """A complete PNG file of at least ``min_size`` pixels: signature, IHDR first, IEND last."""
    blob = path.read_bytes()
    assert blob[:8] == PNG_SIGNATURE, path
    assert blob[12:16] == b"IHDR" and blob[-8:-4] == b"IEND", path
    width, height = int.from_bytes(blob[16:20], "big"), int.from_bytes(blob[20:24], "big")
    assert width >= min_size[0] and height >= min_size[1], (width, height)
    assert path.stat().st_size > 10_000  # not a blank canvas


def _run(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "out"
    assert main(["run", *args, "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    _assert_png(out / f"{results['experiment']}.png")
    return results


def test_list(capsys):
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    for name in ("digits", "logreg-mnist", "logreg-imdb", "mlp-mnist", "cnn-cifar10", "bias-correction", "toys"):
        assert name in listed


def test_digits_default_learns(tmp_path, capsys):
    results = _run(tmp_path, "digits", "--epochs", "3", "--optimizers", "adam,sgd-nesterov")
    assert [r["optimizer"] for r in results["runs"]] == ["adam", "sgd-nesterov"]
    for run in results["runs"]:
        assert not run["diverged"]
        assert run["iteration_loss"][-1] < 0.5 * run["iteration_loss"][0]
        assert run["epoch_test_accuracy"][-1] > 0.85
        assert len(run["iteration_loss"]) == 3 * (1437 // 32)
    table = capsys.readouterr().out
    assert "test acc" in table and "adam" in table
    assert "claim (digits) not checked" in table  # two of the five optimizers the claim is about


def test_deterministic_given_seed(tmp_path):
    a = _run(tmp_path / "a", "digits", "--epochs", "1", "--optimizers", "adam", "--seed", "3")
    b = _run(tmp_path / "b", "digits", "--epochs", "1", "--optimizers", "adam", "--seed", "3")
    assert a["runs"][0]["iteration_loss"] == b["runs"][0]["iteration_loss"]


def test_user_factory_and_explicit_learning_rate(tmp_path, monkeypatch):
    module = tmp_path / "my_opts.py"
    module.write_text(textwrap.dedent("""
        import adaptix

        def rmsprop_momentum(learning_rate):
            return adaptix.chain(adaptix.scale_by_rms(0.9, 1e-8),
                                 adaptix.scale_by_learning_rate(learning_rate), adaptix.trace(0.9))
    """))
    # as the installed `adaptix-experiments` script, whose sys.path holds neither "" nor the current directory
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    results = _run(tmp_path, "digits", "--epochs", "2", "--optimizers", "my_opts:rmsprop_momentum@3e-4,adagrad@0.05")
    assert results["runs"][0]["learning_rate"] == 3e-4
    assert results["runs"][1]["learning_rate"] == 0.05
    assert results["runs"][0]["epoch_test_accuracy"][-1] > 0.8


def test_grid_search_records_grid_and_winner(tmp_path, monkeypatch):
    experiment = registry.get("digits")
    monkeypatch.setitem(registry.EXPERIMENTS, "digits",
                        registry.Experiment(**{**experiment.__dict__, "grid": (1e-5, 1e-2)}))
    results = _run(tmp_path, "digits", "--epochs", "1", "--optimizers", "adam", "--tune")
    run = results["runs"][0]
    # 0.01 won at the upper edge, so the grid was extended by its own ratio (x1000) to 10, which lost
    assert set(run["grid"]) == {"1e-05", "0.01", "10"}
    assert run["learning_rate"] == 1e-2  # 1e-5 barely moves in one epoch


def test_tuning_grid_relative_to_the_default_rate(tmp_path):
    results = _run(tmp_path, "digits", "--epochs", "1", "--optimizers", "adam", "--tune", "--grid", "x0.1,x1,x10")
    assert {"0.001", "0.01", "0.1"} <= set(results["runs"][0]["grid"])  # digits' adam default is 1e-2
    assert options.parse_grid("1e-3, 1e-2") == ((1e-3, 1e-2), False)
    for bad in ("x1,1e-3", "abc", "0,1", ""):
        with pytest.raises(ValueError, match="step sizes|as numbers"):
            options.parse_grid(bad)


def test_loss_every_downsamples_results_json(tmp_path):
    results = _run(tmp_path, "digits", "--epochs", "1", "--optimizers", "adam", "--loss-every", "10")
    run = results["runs"][0]
    assert run["iteration_loss_every"] == 10
    assert len(run["iteration_loss"]) == -(-(1437 // 32) // 10)  # block means, the last one shorter
    assert results["wall_seconds"] > 0


def test_adam_without_bias_correction_first_step():
    """Without correction the first step is lr (1 - b1) / sqrt(1 - b2): 10x too large at b1=0.9, b2=0.9999."""
    import jax.numpy as jnp
    import numpy as np

    for b1, b2 in ((0.0, 0.99), (0.9, 0.9999), (0.9, 0.999)):
        opt = optimizers.adam_without_bias_correction(1e-3, b1=b1, b2=b2, eps=0.0)
        g = jnp.array([2.0, -0.5])
        step, state = opt.update(g, opt.init(jnp.zeros(2)))
        np.testing.assert_allclose(step, -1e-3 * (1 - b1) / np.sqrt(1 - b2) * np.sign(g), rtol=1e-3)  # float32 1 - b2
        corrected = adaptix.adam(1e-3, b1=b1, b2=b2, eps=0.0)
        np.testing.assert_allclose(corrected.update(g, corrected.init(jnp.zeros(2)))[0], -1e-3 * np.sign(g), rtol=1e-3)
    # the command line's "adam-no-bias-correction" is the same chain at the default betas
    named = optimizers.optimizer_factory("adam-no-bias-correction")(1e-3)
    np.testing.assert_allclose(named.update(g, named.init(jnp.zeros(2)))[0], -1e-3 * 0.1 / np.sqrt(1e-3) * np.sign(g),
                               rtol=1e-3)


def test_bias_correction_rejects_optimizers_and_tune(tmp_path, capsys):
    assert main(["run", "bias-correction", "--optimizers", "adam", "--out", str(tmp_path)]) == 2
    assert "--optimizers does not apply" in capsys.readouterr().err
    assert main(["run", "bias-correction", "--tune", "--out", str(tmp_path)]) == 2
    assert "--tune" in capsys.readouterr().err


def test_toys_quick(tmp_path, capsys):
    """The toy landscapes need no data: trajectories, a step size per landscape, contour plots."""
    results = _run(tmp_path, "toys", "--quick", "--optimizers", "sgd,adam")
    names = [entry["name"] for entry in results["landscapes"]]
    assert len(names) == 4 and any("Rosenbrock" in n for n in names) and any("saddle" in n for n in names)
    for entry in results["landscapes"]:
        for run in entry["runs"]:
            assert run["learning_rate"] in results["grid"]
            assert len(run["trajectory"]) == len(run["loss"]) == results["steps"] + 1
            if entry["minimum"] is not None:  # every optimizer makes progress on every bounded landscape
                assert run["final_loss"] < 0.5 * run["loss"][0], (entry["name"], run["optimizer"], run["final_loss"])
            else:  # and leaves the saddle downhill
                assert run["final_loss"] < run["loss"][0] - 1.0, (entry["name"], run["optimizer"])
    quadratic = results["landscapes"][0]["runs"]
    assert next(r for r in quadratic if r["optimizer"] == "adam")["final_loss"] < 1e-2
    assert "Rosenbrock" in capsys.readouterr().out


def test_toys_seeds_the_noisy_landscape_only(tmp_path):
    """--seeds reruns the noisy quadratic from each noise seed; its record is their mean and s.d."""
    results = _run(tmp_path, "toys", "--quick", "--optimizers", "adam", "--seeds", "3", "--epochs", "30")
    assert results["seeds"] == [0, 1, 2]
    for entry in results["landscapes"]:
        (record,) = entry["runs"]
        if not np.any(np.asarray(entry["noise"], float) != 0):
            assert entry["seeds"] == [0] and record["final_loss_sd"] is None and record["loss_per_seed"] is None
            continue
        assert entry["seeds"] == [0, 1, 2]
        finals = np.asarray(record["final_loss_per_seed"])
        assert len(set(finals.tolist())) == 3  # the seeds draw different noise
        # results.json keeps 7 significant digits
        np.testing.assert_allclose(record["final_loss"], finals.mean(), rtol=1e-6)
        np.testing.assert_allclose(record["final_loss_sd"], finals.std(ddof=1), rtol=1e-6)
        np.testing.assert_allclose(record["loss"], np.mean(record["loss_per_seed"], axis=0), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(record["loss_per_seed"])[:, -1], finals, rtol=1e-6)
        assert f"{record['learning_rate']:g}" == min(record["grid"], key=record["grid"].get)  # the best mean score


def test_bad_optimizer_name_is_a_clear_error(tmp_path, capsys):
    assert main(["run", "digits", "--optimizers", "adamm", "--out", str(tmp_path)]) == 2
    assert "unknown optimizer 'adamm'" in capsys.readouterr().err


def test_missing_data_names_the_files(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ADAPTIX_OFFLINE", "1")
    assert main(["run", "logreg-mnist", "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path)]) == 2
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err


needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"no shared data at {SHARED_DATA}")


@needs_data
def test_logreg_mnist_quick_real_data(tmp_path):
    results = _run(tmp_path, "logreg-mnist", "--quick", "--data-dir", str(SHARED_DATA))
    best = max(r["epoch_test_accuracy"][-1] for r in results["runs"])
    adam = next(r for r in results["runs"] if r["optimizer"] == "adam")
    assert results["train_size"] == 60000 and results["test_size"] == 10000
    assert adam["epoch_test_accuracy"][-1] >= 0.88, adam["epoch_test_accuracy"]
    assert best >= 0.88


@needs_data
def test_logreg_imdb_quick_real_data(tmp_path):
    results = _run(tmp_path, "logreg-imdb", "--quick", "--data-dir", str(SHARED_DATA), "--optimizers", "adam,adagrad")
    for run in results["runs"]:
        assert run["epoch_test_accuracy"][-1] >= 0.80, (run["optimizer"], run["epoch_test_accuracy"])


@needs_data
def test_mlp_mnist_quick_real_data(tmp_path):
    results = _run(tmp_path, "mlp-mnist", "--quick", "--data-dir", str(SHARED_DATA),
                   "--optimizers", "adam,sgd-nesterov")
    for run in results["runs"]:
        assert run["epoch_test_accuracy"][-1] >= 0.85, (run["optimizer"], run["epoch_test_accuracy"])


@needs_data
def test_cnn_cifar10_quick_real_data(tmp_path):
    results = _run(tmp_path, "cnn-cifar10", "--quick", "--data-dir", str(SHARED_DATA), "--optimizers", "adam")
    run = results["runs"][0]
    assert results["train_size"] == 2000
    assert not run["diverged"]
    # chance is 0.1; 45 steps on 2,000 whitened images with input dropout (measured: 0.156, 0.189, 0.226)
    assert run["epoch_test_accuracy"][-1] > 0.2 and run["epoch_train_loss"][-1] < 0.95 * run["epoch_train_loss"][0]


@needs_data
def test_bias_correction_quick_real_data(tmp_path):
    """Section 6.4 in miniature: without correction beta2=0.9999 is worse early; with it, every beta2 trains."""
    results = _run(tmp_path, "bias-correction", "--quick", "--data-dir", str(SHARED_DATA))
    assert results["checkpoints"] == {"early": 30, "late": 150}
    assert len(results["runs"]) == 2 * len(results["beta1"]) * len(results["beta2"]) * len(results["step_sizes"])
    for run in results["runs"]:
        assert len(run["curve"]) == -(-150 // results["curve_every"])
        if run["bias_correction"]:  # real learning: the negative ELBO falls from ~540 nats to under 200
            assert run["loss"]["late"] < min(200.0, 0.5 * results["initial_loss"]), run
    early = results["verdict"]["early"]
    assert early["stable_with_correction"] and early["unstable_without_correction"], early
    assert early["per_beta2"]["0.9999"]["worse"] >= 1 and early["per_beta2"]["0.99"]["worse"] == 0
    assert results["claim_holds"]


def test_adam_8bit_keeps_both_moments_in_codes():
    import jax
    import jax.numpy as jnp

    opt = optimizers.optimizer_factory("adam-8bit")(1e-3)
    params = {"large": jnp.zeros((64, 128)), "small": jnp.zeros(10)}  # 8,192 entries: coded; 10: float32
    state = opt.init(params)
    coded = [x for x in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, adaptix.QuantizedArray))
             if isinstance(x, adaptix.QuantizedArray)]
    assert len(coded) == 2 and all(c.codes.dtype == jnp.int8 or c.codes.dtype == jnp.uint8 for c in coded)
    updates, _ = opt.update(jax.tree.map(jnp.ones_like, params), state, params)
    assert jnp.allclose(updates["large"], -1e-3, rtol=0.02) and jnp.allclose(updates["small"], -1e-3, rtol=1e-5)
