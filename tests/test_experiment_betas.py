"""The adam-betas experiment (Ma, Wu & E, 2020): its statistics, its verdict rule, and a quick run end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from adaptix.experiments import betas  # noqa: E402


def test_roughness_is_zero_for_a_monotone_curve_and_counts_upward_moves():
    smooth = np.geomspace(1.0, 1e-4, 100)
    assert betas.roughness(smooth) == 0.0
    bumpy = smooth.copy()
    bumpy[50::10] *= 20.0  # five one-step spikes of 1.3 decades, each followed by the way back down
    # each spike goes up by log10(20) less one step of the descent (4/99 decades); the first tenth is skipped
    assert betas.roughness(bumpy) == pytest.approx(5 * (np.log10(20) - 4 / 99) / 89, rel=1e-6)
    assert betas.spikes(bumpy) == 5 and betas.spikes(smooth) == 0


def test_statistics_clip_at_the_float32_floor_and_at_divergence():
    below_floor = np.full(50, 1e-9)
    assert betas.final_log_loss(below_floor) == pytest.approx(np.log10(betas.FLOOR))
    diverged = np.concatenate([np.ones(10), np.full(10, np.nan)])
    assert betas.speed(diverged) == pytest.approx(0.5 * np.log10(betas.CEILING))


def test_relation_follows_the_verdict_rule():
    assert betas.relation([1.0, 1.1, 0.9], [2.0, 2.0, 2.1])["relation"] == "<"
    assert betas.relation([2.0, 2.1, 2.0], [1.0, 1.0, 1.1])["relation"] == ">"
    assert betas.relation([1.0, 2.0, 0.0], [1.0, 1.0, 1.0])["relation"] == "≈"
    assert betas.relation([1.0], [2.0])["relation"] == "?"  # one seed: no verdict


def test_judge_pairs_each_diagonal_point_with_the_far_points_of_its_column():
    grid = (0.5, 0.9, 0.99)
    cells = [{"b1": b1, "b2": b2, "speed": [0.0 if b1 == b2 else 1.0 + s for s in (0.0, 0.1, 0.2)],
              "roughness": [0.0, 0.0, 0.0]} for b1 in grid for b2 in grid]
    judged = betas.judge(cells, grid)
    pairs = {(p["b2"], p["far_b1"]) for p in judged["pairs"]}
    # 1 - b: 0.5, 0.1, 0.01; "far" is a decade or more apart: 0.5 vs 0.99 and 0.9 vs 0.99 (0.5 vs 0.9 is not)
    assert pairs == {(0.5, 0.99), (0.99, 0.5), (0.99, 0.9), (0.9, 0.99)}
    assert judged["faster"] == 4 and judged["verdict"] == "reproduced"


def test_quick_run_writes_results_and_figure(tmp_path):
    results = betas.run(out=tmp_path, seeds=2, quick=True, steps=20, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "adam-betas.png").stat().st_size > 0
    assert saved["complete"] and saved["seeds"] == [0, 1] and saved["steps"] == 20
    assert len(saved["cells"]) == len(betas.QUICK.betas) ** 2
    assert all(len(c["speed"]) == 2 and np.isfinite(c["speed"]).all() for c in saved["cells"])
    assert results["judgement"]["verdict"] in ("reproduced", "partly", "not reproduced")
    assert "close betas faster in" in betas.summary(results)
