"""Sweeps as one compiled program: --tune and --seeds as one vmapped training, against the one-by-one path.

Lean on purpose (CI budget, most of it compilation): the digits experiment (bundled with scikit-learn),
two grid points by two seeds, two epochs; the per-seed dropout keys are checked on a logistic regression
with input dropout, against :func:`adaptix.experiments.train.train`.
"""

from __future__ import annotations

import json

import numpy as np
import optax
import pytest
from flax import nnx

import adaptix
from adaptix.experiments import registry, results, sweep
from adaptix.experiments.__main__ import main
from adaptix.experiments.models import MLP, LogisticRegression
from adaptix.experiments.train import train

ARGS = ["run", "digits", "--quick", "--epochs", "2", "--tune", "--grid", "1e-3,1e-2,1e-1", "--seeds", "2",
        "--optimizers", "adam", "--no-progress"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    """The same tuned two-seed run, vmapped and ``--sequential``: mode -> results.json read back."""
    out = {}
    for mode, extra in (("vmapped", []), ("sequential", ["--sequential"])):
        folder = tmp_path_factory.mktemp(mode)
        assert main([*ARGS, *extra, "--out", str(folder)]) == 0
        out[mode] = json.loads((folder / "results.json").read_text())
        out[mode]["_png"] = folder / "digits.png"
    return out


def test_vmapped_and_sequential_agree_to_rounding(runs):
    vmapped, sequential = runs["vmapped"], runs["sequential"]
    assert (vmapped["mode"], sequential["mode"]) == ("vmapped", "sequential")
    a, b = vmapped["runs"][0], sequential["runs"][0]
    assert a["learning_rate"] == b["learning_rate"] == 1e-2
    assert a["grid"].keys() == b["grid"].keys() == {"0.001", "0.01", "0.1"}
    np.testing.assert_allclose(list(a["grid"].values()), list(b["grid"].values()), rtol=1e-5)
    for pa, pb in zip(a["per_seed"], b["per_seed"], strict=True):
        assert pa["seed"] == pb["seed"]
        np.testing.assert_allclose(list(pa["grid"].values()), list(pb["grid"].values()), rtol=1e-5)
        for key in results.CURVES:
            np.testing.assert_allclose(pa[key], pb[key], rtol=1e-4, atol=1e-6, err_msg=key)
    # the seeds differ (initialisation, dropout, data order), so the spread is not zero
    assert a["per_seed"][0]["iteration_loss"] != a["per_seed"][1]["iteration_loss"]


def test_lanes_that_do_not_fit_in_memory_train_one_after_another(runs, tmp_path, monkeypatch, capsys):
    """Before any step, the compiled vmapped step's memory is checked; too large, the run goes sequential."""
    monkeypatch.setattr(sweep, "available_memory", lambda device=None: 1024)  # nothing fits in 1 KiB
    assert main([*ARGS, "--out", str(tmp_path)]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "one after another" in line]
    assert len(notes) == 2 and "6 vmapped lanes (3 step sizes x 2 seeds) need" in notes[0]
    assert notes[0].endswith("GiB, 0.0 GiB available; training them one after another, as --sequential does")
    assert notes[1].startswith("adaptix-experiments: adam training: 2 vmapped lanes (1 step size x 2 seeds)")
    fell_back, sequential = (json.loads((tmp_path / "results.json").read_text())["runs"][0],
                             runs["sequential"]["runs"][0])
    assert fell_back["mode"] == sequential["mode"] == "sequential" and runs["vmapped"]["runs"][0]["mode"] == "vmapped"
    for key in ("grid", "learning_rate", *results.CURVES):
        assert fell_back[key] == sequential[key], key


def test_results_json_records_every_seed(runs, capsys):
    results_json = runs["vmapped"]
    assert results_json["seeds"] == [0, 1] and results_json["seed"] == 0
    run = results_json["runs"][0]
    for key in ("iteration_loss", "epoch_train_loss", "epoch_test_accuracy", "learning_rate", "grid", "diverged",
                "seconds", "tune_seconds", "seeds", "per_seed", "grid_sd"):
        assert key in run, key
    assert run["seeds"] == [0, 1] and [p["seed"] for p in run["per_seed"]] == [0, 1]
    steps = 2 * (1437 // 32)
    for key, length in (("iteration_loss", steps), ("epoch_train_loss", 2), ("epoch_test_accuracy", 2)):
        per_seed = np.array([p[key] for p in run["per_seed"]])
        assert per_seed.shape == (2, length)
        np.testing.assert_allclose(run[key], per_seed.mean(0), rtol=1e-6, atol=1e-7)  # the top level is the mean
        np.testing.assert_allclose(run[f"{key}_sd"], per_seed.std(0, ddof=1), rtol=1e-4, atol=1e-6)
    scores = np.array([list(p["grid"].values()) for p in run["per_seed"]])
    np.testing.assert_allclose(list(run["grid"].values()), scores.mean(0), rtol=1e-6)
    assert run["learning_rate"] == float(min(run["grid"], key=run["grid"].get))  # the lowest mean score wins


def test_loss_every_downsamples_every_seed(runs, tmp_path):
    path = tmp_path / "results.json"
    results.write_results(runs["vmapped"] | {"_png": None}, path, loss_every=10)
    run = json.loads(path.read_text())["runs"][0]
    blocks = -(-2 * (1437 // 32) // 10)
    assert run["iteration_loss_every"] == 10
    assert len(run["iteration_loss"]) == len(run["iteration_loss_sd"]) == blocks
    per_seed = np.array([p["iteration_loss"] for p in run["per_seed"]])
    assert per_seed.shape == (2, blocks)
    np.testing.assert_allclose(run["iteration_loss"], per_seed.mean(0), rtol=1e-5)
    np.testing.assert_allclose(run["iteration_loss_sd"], per_seed.std(0, ddof=1), rtol=1e-4, atol=1e-7)


def test_summary_and_plot_with_several_seeds(runs):
    from adaptix.experiments.run import summary_table

    table = summary_table(runs["vmapped"])
    assert "seeds 0-1 (mean ± s.d.)" in table and table.count("±") >= 3
    png = runs["vmapped"]["_png"].read_bytes()  # drawn with the ±1 s.d. bands
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


@pytest.mark.parametrize("value", ["0", "-2"])
def test_seeds_must_be_positive(value, tmp_path, capsys):
    assert main(["run", "digits", "--seeds", value, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--seeds: must be a positive integer" in err, err
    assert not (tmp_path / "results.json").exists()


def test_special_runners_refuse_the_options_they_do_not_read(tmp_path, capsys):
    # their own loops: --sequential (and --seeds for toys) would be silently ignored, so they are refused first
    assert main(["run", "bias-correction", "--seeds", "2", "--sequential", "--out", str(tmp_path / "vae")]) == 2
    assert "--sequential does not apply to bias-correction" in capsys.readouterr().err
    assert main(["run", "toys", "--sequential", "--out", str(tmp_path / "toys")]) == 2
    assert "--sequential does not apply to toys" in capsys.readouterr().err
    assert not (tmp_path / "vae").exists() and not (tmp_path / "toys").exists()


def _loss(model, batch):
    x, y = batch
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


def test_a_diverged_lane_leaves_the_others_alone(capsys):
    """A lane whose cost overflows is marked diverged; the lanes beside it train as if it were not there,
    and as :func:`~adaptix.experiments.train.train` trains the same model, dropout keys included."""
    data = registry.get("digits").load(None, True)
    make = lambda seed: LogisticRegression(64, 10, input_dropout=0.2, rngs=nnx.Rngs(params=seed, dropout=seed + 1))
    optimizer = lambda lr: adaptix.sgd(lr, momentum=0.9, nesterov=True)
    lanes, state = sweep.init_lanes(make, optimizer, [0.1, 1e38], seeds=[0, 1])
    assert lanes.shape == (2, 2)
    both = sweep.train_lanes(lanes, state, _loss, data.train, epochs=2, batch_size=256, progress=True,
                             desc="sweep test bar")
    assert "sweep test bar" in capsys.readouterr().err  # the tuning's progress bar
    assert both.diverged.tolist() == [[False, False], [True, True]]
    assert both.diverged_epoch[1].tolist() == [0, 0]
    losses, _ = both.lane_curves(1, 0)
    assert len(losses) == both.steps_per_epoch  # kept up to the end of the epoch where it diverged
    lanes, state = sweep.init_lanes(make, optimizer, [0.1], seeds=[0, 1])
    alone = sweep.train_lanes(lanes, state, _loss, data.train, epochs=2, batch_size=256, progress=False)
    np.testing.assert_array_equal(both.iteration_loss[0], alone.iteration_loss[0])
    one = train(make(1), optimizer(0.1), data, name="sgd-nesterov", learning_rate=0.1, epochs=2, batch_size=256,
                seed=1, evaluate_every_epoch=False, progress=False)
    np.testing.assert_allclose(alone.iteration_loss[0, 1], one.iteration_loss, rtol=1e-5, atol=1e-6)
    model = sweep.lane_model(lanes, alone.state, 0, 1)  # a lane back as a plain nnx model
    cost, accuracy = sweep.evaluate_classifier(lanes, alone.state, data.test)
    assert accuracy[0, 1] == pytest.approx(one.final_test_accuracy)
    assert accuracy[0, 1] == pytest.approx(float(np.mean(np.argmax(model(data.test.x), -1) == data.test.y)))
    assert cost.shape == (1, 2) and np.isfinite(cost).all()


def test_mean_sd_cuts_to_the_shortest_curve():
    assert results.mean_sd([[1.0, 2.0, 3.0], [3.0, 4.0]]) == ([2.0, 3.0], [2**0.5, 2**0.5])
    assert results.mean_sd([[1.0, 5.0]]) == ([1.0, 5.0], [0.0, 0.0])
    assert results.mean_score([1.0, float("inf")]) == (float("inf"), float("inf"))


def test_the_module_example_runs():
    """The example of :mod:`adaptix.experiments.sweep`'s docstring, on the digits."""
    data = registry.get("digits").load(None, True)
    doc = sweep.__doc__
    code = doc[doc.index("one compiled step::") + len("one compiled step::"): doc.index("The lanes must fit")]
    code = "\n".join(line[4:] for line in code.splitlines())
    scope = {"x_train": data.train.x, "y_train": data.train.y}
    exec(compile(code, "sweep example", "exec"), scope)
    assert scope["run"].iteration_loss.shape == (3, 2, 5 * (1437 // 32))
    assert isinstance(scope["model"], MLP) and not scope["run"].diverged.any()


def test_available_memory_is_a_plausible_byte_count():
    available = sweep.available_memory()
    assert available is None or 2**20 < available < 2**50  # Linux: MemAvailable; elsewhere it may be unknown
