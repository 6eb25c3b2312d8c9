"""Nothing lost: an interrupted run keeps what finished, and a resumed run equals one never interrupted, bit for bit.

Lean on purpose: the digits (bundled with scikit-learn), a few epochs of 44 steps. The interrupt is a real
``KeyboardInterrupt`` or SIGTERM raised from inside the training loop after a given number of epochs.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from adaptix.experiments import run as run_module
from adaptix.experiments import sweep, train

TIMES = ("seconds", "tune_seconds", "load_seconds", "wall_seconds")


def _timeless(obj):
    """``obj`` without wall times, which are the only thing a resumed run may change."""
    if isinstance(obj, dict):
        return {k: _timeless(v) for k, v in obj.items() if k not in TIMES}
    if isinstance(obj, list):
        return [_timeless(v) for v in obj]
    return obj


def _stop_after(monkeypatch, module, name: str, calls: int, how: str = "sigint"):
    """Patches ``module.name`` to stop the run (Ctrl-C or SIGTERM) when it is called for the ``calls + 1``-th time."""
    original, count = getattr(module, name), [0]

    def counted(*args, **kwargs):
        count[0] += 1
        if count[0] > calls:
            if how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)


def _run(out, **options):
    return run_module.run_experiment("digits", out=out, quick=True, progress=False, **options)


def _read(out):
    return json.loads((out / "results.json").read_text())


OPTIONS = {
    # a grid whose winner (1e-2) is inside it, so the tuning is one vmapped training of 3 epochs
    "vmapped": dict(optimizers=[("adam", None), ("sgd-nesterov", 0.05)], epochs=3, tune=True, tune_epochs=3,
                    grid=(1e-4, 1e-2, 10.0), seeds=2, checkpoint_every=1),
    "sequential": dict(optimizers=[("adam", 1e-2)], epochs=3, seeds=2, sequential=True, checkpoint_every=1),
}


def _count(monkeypatch, module, name: str) -> list[int]:
    """Patches ``module.name`` to count its calls; returns the counter."""
    original, count = getattr(module, name), [0]

    def counted(*args, **kwargs):
        count[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return count


# (mode, where to stop, after how many calls, how, calls left after resuming from the last checkpoint)
CASES = [
    # 9 epochs straight: adam tuned (3), adam trained (3), sgd-nesterov (3); stopped in adam's 2nd training epoch
    ("vmapped", (sweep, "_lane_epoch"), 4, "sigint", 2 + 3),
    ("vmapped", (sweep, "_lane_epoch"), 7, "sigterm", 2),  # adam finished, sgd-nesterov stopped in its 2nd epoch
    # an epoch of train.train is 3 calls of _batches (training, then two evaluations): seed 1 stopped in its 2nd epoch
    ("sequential", (train, "_batches"), 12, "sigint", 2 * 3),
]


@pytest.mark.parametrize(("mode", "stop_in", "calls", "how", "left"), CASES)
def test_an_interrupted_run_resumes_bit_for_bit(tmp_path, monkeypatch, mode, stop_in, calls, how, left):
    straight = _run(tmp_path / "straight", **OPTIONS[mode])
    with monkeypatch.context() as patch:
        _stop_after(patch, *stop_in, calls, how)
        with pytest.raises(run_module.RunInterrupted, match="--resume"):
            _run(tmp_path / "cut", **OPTIONS[mode])
    assert json.loads((tmp_path / "cut" / "run.json").read_text())["experiment"] == "digits"
    assert (tmp_path / "cut" / "checkpoints").is_dir()
    with monkeypatch.context() as patch:
        count = _count(patch, *stop_in)
        resumed = run_module.run_experiment("digits", resume=tmp_path / "cut", progress=False)
    assert count[0] == left  # what finished, and the epochs before the last checkpoint, are not trained again
    assert _timeless(resumed) == _timeless(straight)
    assert _timeless(_read(tmp_path / "cut")) == _timeless(_read(tmp_path / "straight"))
    assert _read(tmp_path / "cut")["complete"] is True
    assert not (tmp_path / "cut" / "checkpoints").exists()  # removed once the run is complete


def test_an_interrupt_keeps_the_optimizers_that_finished(tmp_path, monkeypatch):
    _stop_after(monkeypatch, sweep, "_lane_epoch", 2)  # adam's two epochs, then stopped in sgd-nesterov's first
    with pytest.raises(run_module.RunInterrupted) as stopped:
        _run(tmp_path, optimizers=[("adam", 1e-2), ("sgd-nesterov", 0.05)], epochs=2)
    message = str(stopped.value)
    assert "1 of 2 optimizers" in message and f"--resume {tmp_path}" in message and "\n" not in message
    saved = _read(tmp_path)
    assert saved["complete"] is False and [r["optimizer"] for r in saved["runs"]] == ["adam"]
    assert (tmp_path / "digits.png").is_file()


def test_resume_refuses_what_it_cannot_continue(tmp_path):
    with pytest.raises(FileNotFoundError, match="--resume: .* no run.json"):
        run_module.run_experiment("digits", resume=tmp_path)
    _run(tmp_path, optimizers=[("adam", 1e-2)], epochs=1)
    with pytest.raises(ValueError, match="complete"):
        run_module.run_experiment("digits", resume=tmp_path)
    with pytest.raises(ValueError, match="holds a run of digits"):
        run_module.run_experiment("logreg-mnist", resume=tmp_path)


SHARED_DATA = Path(os.environ.get("ADAPTIX_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"no shared data at {SHARED_DATA}")
def test_bias_correction_resumes_from_the_grid_points_that_finished(tmp_path, monkeypatch):
    import dataclasses

    from adaptix.experiments import vae_bias_correction as vae

    # a smaller quick grid: 2 x 2 points per variant, 40 iterations
    monkeypatch.setattr(vae, "QUICK", dataclasses.replace(vae.QUICK, beta1=(0.9,), step_sizes=(1e-3, 1e-2),
                                                          early=20, late=40))
    options = dict(quick=True, data_dir=SHARED_DATA, progress=False)
    straight = run_module.run_experiment("bias-correction", out=tmp_path / "straight", **options)
    with monkeypatch.context() as patch:
        _stop_after(patch, vae, "_block_means", 5)  # the 4 points with correction, 1 of 4 without, stopped
        with pytest.raises(run_module.RunInterrupted, match="5 of 8 grid points done.*--resume"):
            run_module.run_experiment("bias-correction", out=tmp_path / "cut", **options)
    assert len(_read(tmp_path / "cut")["runs"]) == 5 and _read(tmp_path / "cut")["complete"] is False
    interrupted_seconds = _read(tmp_path / "cut")["wall_seconds"]
    with monkeypatch.context() as patch:
        count = _count(patch, vae, "_block_means")
        resumed = run_module.run_experiment("bias-correction", resume=tmp_path / "cut", progress=False)
    assert count[0] == 3  # only the points that had not finished
    order = lambda runs: sorted(runs, key=lambda r: (r["seed"], not r["bias_correction"], r["grid_point"]))
    cut, whole = _read(tmp_path / "cut"), _read(tmp_path / "straight")
    assert _timeless(order(cut["runs"])) == _timeless(order(whole["runs"]))  # bit for bit, as written
    assert cut["complete"] is True and resumed["claim_holds"] == straight["claim_holds"]
    assert cut["wall_seconds"] > interrupted_seconds  # the wall time goes on from the interrupted part's
    for checkpoint, found in resumed["verdict"].items():  # the points resumed from results.json are rounded there
        assert {k: v["worse"] for k, v in found["per_beta2"].items()} == \
            {k: v["worse"] for k, v in straight["verdict"][checkpoint]["per_beta2"].items()}
