"""The autoencoder-betas experiment (De, Mukherjee & Ullah 2018): the quick run end to end, the tuning's grid
extension and the verdicts, on the bundled digits (no data directory needed)."""

import json
import math

import numpy as np
import pytest

from adaptix.experiments import autoencoder
from adaptix.experiments import run as run_module
from adaptix.experiments.results import beyond_edge


def test_quick_run_end_to_end(tmp_path):
    out = tmp_path / "out"
    results = run_module.run_experiment("autoencoder-betas", quick=True, out=out, progress=False)
    saved = json.loads((out / "results.json").read_text())
    png = out / "autoencoder-betas.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert saved["complete"] and saved["experiment"] == "autoencoder-betas" and saved["dataset"] == "digits"
    assert saved["seeds"] == [0, 1, 2]  # --seeds not given: three, the verdict needs two or more
    assert saved["tune_epochs"] == 2 and saved["epochs"] == 6
    assert [r["arm"] for r in saved["runs"]] == list(autoencoder.ARMS)
    for arm in autoencoder.ARMS:
        tuning = saved["tuning"][arm]
        # every variant searched every point of the grid, from every seed
        assert len(tuning["scores"]) >= 2 * len(tuning["grid"])
        assert all(len(p["per_seed"]) == 3 for p in tuning["scores"].values())
        won = tuning["winner"]
        assert won["score"] == min(p["mean"] for p in tuning["scores"].values() if p["mean"] is not None)
    for r in saved["runs"]:
        won = saved["tuning"][r["arm"]]["winner"]
        assert r["learning_rate"] == won["learning_rate"] and r["variant"] == won["variant"]
        assert [p["seed"] for p in r["per_seed"]] == [0, 1, 2]
        assert all(len(p["epoch_train_loss"]) == 6 and len(p["epoch_test_loss"]) == 6 for p in r["per_seed"])
        assert not r["diverged"]
        assert r["epoch_train_loss"][-1] < r["epoch_train_loss"][0]  # it learns
    assert saved["runs"][0]["variant"]["beta"] == 0.99 and saved["runs"][1]["variant"]["beta"] == 0.9
    (claim,) = saved["verdicts"]
    assert claim["claim"] == "adam-b1-0.99 < nag" and claim["measured"] in ("<", "≈", ">")
    assert claim["holds"] == (claim["measured"] == "<") and claim["seeds"] == 3 and claim["epochs"] == 6
    assert [v["comparison"] for v in saved["reference"]] == ["adam-b1-0.9 vs nag", "adam-b1-0.99 vs adam-b1-0.9"]
    assert len(saved["test_loss"]) == 3
    assert results["complete"] and results["verdicts"][0]["measured"] == claim["measured"]
    text = autoencoder.summary(saved)
    assert "claim adam-b1-0.99 < nag: measured" in text and "adam-b1-0.9 vs nag" in text


def test_beyond_edge_extends_only_a_winning_edge():
    assert beyond_edge({1e-3: 2.0, 1e-2: 1.0, 1e-1: 3.0}) is None
    assert beyond_edge({1e-3: 1.0, 1e-2: 2.0, 1e-1: 3.0}) == 1e-4
    assert beyond_edge({1e-3: 3.0, 3e-3: 2.0, 1e-2: 1.0}) == pytest.approx(0.0333)
    # a diverged point is never the winner; nothing to extend when every point diverged
    assert beyond_edge({1e-3: 2.0, 1e-2: 1.0, 1e-1: math.inf}) is None
    assert beyond_edge({1e-3: math.inf, 1e-2: math.inf}) is None


def _fake_train(best: float):
    """A stand-in for :func:`autoencoder.train`: the loss is the distance of log10(lr) from ``log10(best)``."""

    def train(lanes, x_train, x_test, hidden, batch_size, epochs, evaluate, group):
        curves = [np.full(10, 1.0 + abs(math.log10(lane.learning_rate / best)) + 0.01 * lane.seed) for lane in lanes]
        return {"iteration_loss": np.asarray(curves), "epoch_train_loss": None, "epoch_test_loss": None, "seconds": 0}

    return train


@pytest.mark.parametrize("best, extensions, added", [(1e-2, 0, []), (1e-4, 2, [1e-4, 1e-5]),
                                                     (1e-9, 3, [1e-4, 1e-5, 1e-6])])
def test_tuning_extends_the_grid_past_a_winning_edge(monkeypatch, best, extensions, added):
    monkeypatch.setattr(autoencoder, "train", _fake_train(best))
    budget = autoencoder.QUICK
    tuned = autoencoder.tune_arm("nag", budget, (0, 1, 2), None, None, tune_epochs=1)
    assert tuned["extensions"] == extensions
    for label in ("momentum=0.9", "momentum=0.99"):
        searched = sorted(p["learning_rate"] for p in tuned["scores"].values() if p["variant"] == label)
        assert searched == sorted([*budget.grids["nag"], *added])
        assert tuned["winner_at_edge"][label] == (best == 1e-9)  # the extensions ran out below 1e-6
    assert tuned["winner"]["learning_rate"] == max(best, 1e-6)
    assert tuned["winner"]["variant"]["beta"] == 0.9  # ties go to the first variant


def test_verdicts_use_the_paired_rule_over_seeds():
    def arm(name, curves):
        per_seed = [{"seed": s, "epoch_train_loss": c, "epoch_test_loss": c} for s, c in enumerate(curves)]
        return {"arm": name, "optimizer": name, "per_seed": per_seed}

    base = [[3.0, 2.0, 1.0], [3.2, 2.1, 1.1], [2.9, 2.2, 1.0]]
    lower = [[v - 0.5 for v in c] for c in base]
    noisy = [[v + d for v in c] for c, d in zip(base, (-0.1, 0.2, 0.0))]
    found = autoencoder.comparisons([arm("adam-b1-0.99", lower), arm("adam-b1-0.9", noisy), arm("nag", base)])
    (claim,) = found["verdicts"]
    assert claim["measured"] == "<" and claim["holds"] and claim["mean_d"] == pytest.approx(-0.5)
    assert [v["measured"] for v in found["reference"]] == ["≈", "<"]  # 0.9 vs nag within 2 s.d.; 0.99 vs 0.9 below


def test_an_interrupt_keeps_the_arms_that_finished(tmp_path, monkeypatch):
    from adaptix.experiments.interrupts import RunInterrupted

    original, calls = autoencoder.tune_arm, []

    def stop_in_the_second(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(autoencoder, "train", _fake_train(1e-2))
    monkeypatch.setattr(autoencoder, "tune_arm", stop_in_the_second)
    with pytest.raises(RunInterrupted, match="1 of 6 units"):
        autoencoder.run(quick=True, out=tmp_path, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert not saved["complete"] and list(saved["tuning"]) == ["adam-b1-0.99"] and saved["runs"] == []
    assert (tmp_path / "autoencoder-betas.png").is_file()
