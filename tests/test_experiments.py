"""The experiments command line: runs, files, plots, user optimizers, real data in --quick mode."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from adaptix.experiments import registry
from adaptix.experiments.__main__ import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SHARED_DATA = Path(os.environ.get("ADAPTIX_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _run(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "out"
    assert main(["run", *args, "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    png = out / f"{results['experiment']}.png"
    assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size > 10_000
    return results


def test_list(capsys):
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    for name in ("digits", "logreg-mnist", "logreg-imdb", "mlp-mnist", "cnn-cifar10"):
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
    monkeypatch.syspath_prepend(str(tmp_path))
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
    assert set(run["grid"]) == {"1e-05", "0.01"}
    assert run["learning_rate"] == 1e-2  # 1e-5 barely moves in one epoch


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
    results = _run(tmp_path, "mlp-mnist", "--quick", "--data-dir", str(SHARED_DATA), "--optimizers", "adam,sgd-nesterov")
    for run in results["runs"]:
        assert run["epoch_test_accuracy"][-1] >= 0.85, (run["optimizer"], run["epoch_test_accuracy"])


@needs_data
def test_cnn_cifar10_quick_real_data(tmp_path):
    results = _run(tmp_path, "cnn-cifar10", "--quick", "--data-dir", str(SHARED_DATA), "--optimizers", "adam")
    run = results["runs"][0]
    assert results["train_size"] == 2000
    assert not run["diverged"]
    assert run["epoch_test_accuracy"][-1] > 0.25  # chance is 0.1; 45 steps on 2,000 images
