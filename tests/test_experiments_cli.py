"""The command line refuses careless input up front, says what to install, and draws figures that read well.

Lean on purpose: every bad input is refused before anything trains, so these tests cost milliseconds each.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest

from adaptix.experiments import data, figures, sweep, toys
from adaptix.experiments import run as run_module
from adaptix.experiments.__main__ import _claim_line, main

# (arguments, what the one-line error must say)
BAD_INPUTS = [
    (["--optimizers", "adam@abc"], "--optimizers: the step size in 'adam@abc' must be a number in (0, inf), got 'abc'"),
    (["--optimizers", "adam@"], "--optimizers: nothing after '@' in 'adam@'"),
    (["--optimizers", "adam@0"], "--optimizers: the step size in 'adam@0' must be a number in (0, inf)"),
    (["--optimizers", "adam@inf"], "got 'inf'"),
    (["--optimizers", "adam@-1e-3"], "got '-1e-3'"),
    (["--optimizers", ","], "--optimizers: no optimizer named in ','"),
    (["--optimizers", "adamm"], "--optimizers: unknown optimizer 'adamm'; use one of adadelta, adagrad, adagrad-paper"),
    (["--optimizers", "no_such_module_here:f"], "--optimizers: cannot import the optimizer factory"),
    (["--seed", "-1"], "--seed: must be an integer in [0, 4294967295], got '-1'"),
    (["--seed", "x"], "--seed: must be an integer"),
    (["--epochs", "0"], "--epochs: must be a positive integer (1, 2, ...), got '0'"),
    (["--epochs", "-3"], "--epochs: must be a positive integer"),
    (["toys", "--epochs", "0"], "--epochs: must be a positive integer"),
    (["--seeds", "0"], "--seeds: must be a positive integer"),
    (["--loss-every", "0"], "--loss-every: must be a positive integer"),
    (["--checkpoint-every", "0"], "--checkpoint-every: must be a positive integer"),
    (["--grid", "x1,1e-3"], "--grid: takes step sizes"),
    (["--grid", "1e-3"], "--grid applies with --tune"),
    (["--tune-epochs", "2"], "--tune-epochs applies with --tune"),
    (["no-such-experiment"], "experiment: unknown experiment 'no-such-experiment'; one of: digits, logreg-mnist"),
    (["bias-correction", "--optimizers", "adam"], "--optimizers does not apply to bias-correction"),
    (["bias-correction", "--tune"], "--tune does not apply to bias-correction"),
    (["toys", "--sequential"], "--sequential does not apply to toys"),
    (["toys", "--checkpoint-every", "2"], "--checkpoint-every does not apply to toys"),
    (["--resume", "{tmp}/never-ran"], "--resume: {tmp}/never-ran holds no run.json"),
    (["--resume", "{tmp}", "--epochs", "3"], "--epochs does not apply (only --checkpoint-every and --no-progress"),
    (["--data-dir", "{tmp}/a-file"], "--data-dir {tmp}/a-file is a file, not a directory"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_naming_the_option_and_nothing_is_written(tmp_path, capsys, args, message):
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "out"
    args = [a.format(tmp=tmp_path) for a in args]
    where = [] if "--resume" in args else ["--out", str(out)]  # a resumed run writes where it was started
    assert main(["run", *args, *where, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("adaptix-experiments: error: ") and err.count("\n") == 1, err
    assert message.format(tmp=tmp_path) in err
    assert "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("where", ["a-file", "a-file/below", "/proc/adaptix-test", "/sys/adaptix-test"])
def test_an_output_directory_that_cannot_be_written_is_refused_first(tmp_path, capsys, where):
    if where.startswith(("/proc", "/sys")) and not Path(where).parent.is_dir():
        pytest.skip(f"no {Path(where).parent} here")
    (tmp_path / "a-file").write_text("kept")
    out = tmp_path / where if not where.startswith("/") else Path(where)
    assert main(["run", "digits", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}" in err and err.count("\n") == 1
    assert (tmp_path / "a-file").read_text() == "kept"


def test_missing_data_leaves_no_directory_behind(tmp_path, capsys, monkeypatch):
    """Offline, or when every mirror fails: the error lists the files, and neither --out nor the data dir appear."""
    def unreachable(url, timeout=None):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(data.urllib.request, "urlopen", unreachable)
    out, data_dir = tmp_path / "runs" / "logreg", tmp_path / "no-data-here"
    assert main(["run", "logreg-mnist", "--data-dir", str(data_dir), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "could not download (Name or service not known; set ADAPTIX_OFFLINE=1" in err
    assert err.count("Name or service not known") == 1  # one reason, not one per mirror
    assert "train-images-idx3-ubyte.gz" in err
    assert not data_dir.exists() and not (tmp_path / "runs").exists()


def test_version_and_help_list_what_there_is(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("adaptix 0.")
    assert main(["run", "--help"]) == 0
    helped = capsys.readouterr().out
    for name in ("logreg-imdb", "bias-correction", "sgd-nesterov", "adam-no-bias-correction", "module:function",
                 "--resume", "--checkpoint-every"):
        assert name in helped
    assert main(["list"]) == 0
    assert "adadelta, adagrad, adagrad-paper, adam" in capsys.readouterr().out


def test_the_claim_line_names_only_what_ran():
    results = {"claim": "Adam converges as fast as SGD-Nesterov, both faster than AdaGrad"}
    assert _claim_line("logreg-mnist", results, None) == f"claim (logreg-mnist): {results['claim']}"
    everything = [("adam", None), ("adagrad-paper", 0.1), ("sgd-nesterov", None), ("rmsprop", None)]
    assert _claim_line("logreg-mnist", results, everything).startswith("claim (logreg-mnist): Adam")
    partial = _claim_line("logreg-mnist", results, [("adam", None), ("adagrad", None)])
    assert partial == ("claim (logreg-mnist) not checked: it is about adam, sgd-nesterov, adagrad-paper; "
                       "this run trained adam, adagrad")


def test_without_the_extra_the_command_says_what_to_install():
    code = "import sys; sys.modules['flax'] = None; from adaptix.experiments.__main__ import main; sys.exit(main([]))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == ("adaptix-experiments: error: flax is not installed; the experiments need the "
                                   "[experiments] extra: pip install 'adaptix[experiments]' (or, in a checkout: "
                                   "pip install -e '.[experiments]')")


@pytest.mark.parametrize(("how", "status"), [("sigint", 130), ("sigterm", 143)])
def test_an_interrupt_is_one_line_that_says_how_to_resume(tmp_path, capsys, monkeypatch, how, status):
    import os
    import signal

    original, calls = sweep._lane_epoch, [0]

    def stop_in_the_second_optimizer(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 2:
            if how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(sweep, "_lane_epoch", stop_in_the_second_optimizer)
    out = tmp_path / "out"
    argv = ["run", "digits", "--optimizers", "adam,sgd", "--epochs", "1", "--out", str(out), "--no-progress"]
    assert main(argv) == status
    err = capsys.readouterr().err
    assert err == (f"adaptix-experiments: stopped after 1 of 2 optimizers; what finished is saved in {out}; "
                   f"continue with: adaptix-experiments run digits --resume {out}\n")
    assert [r["optimizer"] for r in json.loads((out / "results.json").read_text())["runs"]] == ["adam"]


def test_toys_keeps_the_landscapes_that_finished(tmp_path, monkeypatch):
    original, calls = toys._landscape, [0]

    def stop_in_the_second(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(toys, "_landscape", stop_in_the_second)
    with pytest.raises(run_module.RunInterrupted, match="after 1 of 4 landscapes"):
        run_module.run_experiment("toys", optimizers=[("sgd", 0.1)], epochs=5, out=tmp_path, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["complete"] is False and len(saved["landscapes"]) == 1
    assert (tmp_path / "toys.png").is_file()


def _rendered(ax, which: str) -> list[str]:
    axis = ax.yaxis if which == "y" else ax.xaxis
    ticks = [*axis.get_majorticklabels(), *axis.get_minorticklabels()]
    low, high = sorted(ax.get_ylim() if which == "y" else ax.get_xlim())
    return [t.get_text() for t in ticks if t.get_text() and low <= (t.get_position()[1 if which == "y" else 0]) <= high]


@pytest.mark.parametrize(("low", "high"), [(0.21, 0.48), (0.05, 0.4), (2.4, 3.1), (1e-6, 3.0)])
def test_log_axis_ticks_are_plain_numbers_or_powers_of_ten(low, high):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [low, (low * high) ** 0.5, high])
    ax.set_yscale("log")
    figures.readable_log_axis(ax)
    ax.plot(range(1, 8), [low] * 7)
    figures.whole_number_ticks(ax)
    fig.canvas.draw()
    labels = _rendered(ax, "y")
    assert len(labels) >= 2, labels  # even within one decade the axis says what it shows
    for label in labels:  # "0.25", "300", or 10^k far from 1 ("$10^{-6}$", "$3{\\times}10^{-5}$"); never "2.4×10⁰"
        power = re.fullmatch(r"\$(\d(\.\d+)?\{\\times\})?10\^\{(-?\d+)\}\$", label)
        assert re.fullmatch(r"\d+(\.\d+)?", label) or (power and abs(int(power[3])) >= 3), labels
    assert all(float(t) == int(float(t)) for t in (x.get_text().replace("−", "-") for x in ax.get_xticklabels()) if t)
    plt.close(fig)


def test_a_long_title_fits_the_figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, _ = plt.subplots(figsize=(6.4, 4.4))
    figures.fitted_title(fig, "Adam with and without bias correction; VAE 784-500-50-500-784, softplus, Bernoulli "
                         "decoder; x = diverged, ^ = off the chart; and some more words to make it long", fontsize=9)
    fig.canvas.draw()
    box = fig._suptitle.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width
    plt.close(fig)


def test_tuning_extends_the_grid_until_it_brackets_the_winner(monkeypatch):
    """A winner at an edge is searched past, with the grid's ratio, and each variant (momentum) is searched."""
    from adaptix.experiments import registry, tuning
    from adaptix.experiments.options import RunOptions

    best = {"sgd-nesterov": 1e-2, "sgd-nesterov-0.99": 1e-3}
    searched = []

    def score(experiment, data, variant, points, options, epochs, seeds, progress, key):
        searched.append((variant, tuple(points)))
        return {seed: {lr: (math.log10(lr) - math.log10(best[variant])) ** 2 + (variant != "sgd-nesterov")
                       for lr in points} for seed in seeds}

    monkeypatch.setattr(tuning, "_score", score)
    experiment = dataclasses.replace(registry.get("logreg-mnist"), grid=(1e-5, 1e-4, 1e-3))
    variant, lr, scores = tuning.tune(experiment, None, "sgd-nesterov", RunOptions(tune=True), 1, (0, 1), None, "k")
    assert (variant, lr) == ("sgd-nesterov", 1e-2)
    assert searched == [("sgd-nesterov", (1e-5, 1e-4, 1e-3)), ("sgd-nesterov", (0.01,)), ("sgd-nesterov", (0.1,)),
                        ("sgd-nesterov-0.99", (1e-5, 1e-4, 1e-3)), ("sgd-nesterov-0.99", (0.01,))]
    assert set(scores[0]) == {"1e-05", "0.0001", "0.001", "0.01", "0.1", "sgd-nesterov-0.99@1e-05",
                              "sgd-nesterov-0.99@0.0001", "sgd-nesterov-0.99@0.001", "sgd-nesterov-0.99@0.01"}


def test_zca_whitening_decorrelates_and_stays_close_to_the_images():
    import numpy as np

    from adaptix.experiments.registry import zca_whitening

    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(12, 12)) + 3 * np.eye(12)
    x = (rng.normal(size=(4000, 2, 2, 3)).reshape(4000, 12) @ mixing).reshape(4000, 2, 2, 3)
    mean, w = zca_whitening(x, eps=1e-6)
    white = (x.reshape(4000, -1) - mean) @ w
    np.testing.assert_allclose(np.cov(white, rowvar=False, bias=True), np.eye(12), atol=1e-3)
    np.testing.assert_allclose(w, w.T, rtol=1e-4, atol=1e-6)  # ZCA: the symmetric whitening, no rotation
