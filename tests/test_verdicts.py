"""The verdict rule: a paired difference across seeds against twice its spread, on synthetic runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from adaptix.experiments.verdicts import Claim, describe_verdicts, holds, measure, paired_difference, verdicts


def _run(arm: str, curves: dict[int, list[float]]) -> dict:
    return {"optimizer": arm, "arm": arm, "per_seed": [{"seed": s, "epoch_train_loss": c} for s, c in curves.items()]}


def test_the_statistic_is_the_mean_over_epochs_of_the_paired_difference():
    a = _run("a", {0: [1.0, 0.5, 0.3], 1: [1.2, 0.6, 0.3], 2: [0.9, 0.4, 0.2]})
    b = _run("b", {1: [1.3, 0.7, 0.5], 0: [1.0, 0.7, 0.4], 2: [1.0, 0.5, 0.4], 3: [9.0, 9.0, 9.0]})
    d, epochs = paired_difference(a, b)  # seeds 0, 1, 2 in common; seed 3 ran only for b
    np.testing.assert_allclose(d, [-0.1, -0.4 / 3, -0.4 / 3])
    assert epochs == 3
    found = measure(a, b)
    assert found["measured"] == "<" and found["seeds"] == 3  # mean -0.122 < -2 x 0.019
    assert found["mean_d"] == pytest.approx(np.mean(d)) and found["sd_d"] == pytest.approx(np.std(d, ddof=1))


@pytest.mark.parametrize(("shift", "spread", "measured"), [(-1.0, 0.1, "<"), (1.0, 0.1, ">"), (0.1, 1.0, "≈"),
                                                          (0.0, 0.0, "≈")])
def test_the_measured_relation_follows_the_two_sd_rule(shift, spread, measured):
    noise = np.array([-1.0, 0.0, 1.0]) * spread
    a = _run("a", {s: [1.0 + shift + noise[s]] * 4 for s in range(3)})
    b = _run("b", {s: [1.0] * 4 for s in range(3)})
    assert measure(a, b)["measured"] == measured


def test_claims_hold_by_their_relation():
    assert holds(Claim("a", "<", "b"), "<") and not holds(Claim("a", "<", "b"), "≈")
    assert holds(Claim("a", "≈", "b"), "≈") and not holds(Claim("a", "≈", "b"), ">")
    assert holds(Claim("a", "≲", "b"), "<") and holds(Claim("a", "≲", "b"), "≈")
    assert not holds(Claim("a", "≲", "b"), ">") and holds(Claim("a", "<", "b"), None) is None
    with pytest.raises(ValueError, match="relation must be one of"):
        Claim("a", ">>", "b")


def test_no_verdict_from_one_seed_or_a_diverged_seed():
    one = measure(_run("a", {0: [1.0]}), _run("b", {0: [2.0]}))
    assert one["measured"] is None and one["why"] == "1 seed(s)"
    diverged = measure(_run("a", {0: [1.0], 1: [None]}), _run("b", {0: [2.0], 1: [2.0]}))
    assert diverged["measured"] is None and diverged["why"] == "a seed diverged"


def test_verdicts_of_an_experiment_and_their_lines():
    runs = [_run("adam", {s: [0.5 - 0.01 * s, 0.3] for s in range(3)}),
            _run("sgd", {s: [0.9, 0.6 + 0.01 * s] for s in range(3)})]
    found = verdicts((Claim("adam", "<", "sgd"), Claim("adam", "≈", "sgd"), Claim("adam", "<", "absent")), runs)
    assert [v["claim"] for v in found] == ["adam < sgd", "adam ≈ sgd"]  # a claim about an arm that did not run: none
    assert [v["holds"] for v in found] == [True, False]
    lines = describe_verdicts(found)
    assert lines[0] == "claim adam < sgd: measured adam < sgd, mean d = -0.36 ± 0.01 (s.d., 3 seeds, 2 epochs): holds"
    assert lines[1].endswith("does not hold") and not math.isnan(found[0]["sd_d"])
    one_seed = verdicts((Claim("adam", "<", "sgd"), Claim("adam", "≈", "sgd")),
                        [_run("adam", {0: [0.5]}), _run("sgd", {0: [0.9]})])
    assert describe_verdicts(one_seed) == [
        "no verdict (1 seed(s); the rule needs 2 or more, e.g. --seeds 3) on: adam < sgd, adam ≈ sgd"]


def test_bias_correction_judges_grid_points_by_the_same_rule():
    from adaptix.experiments.vae_bias_correction import verdict, worse

    assert worse([110.0, 112.0, 111.0], [100.0, 101.0, 100.5], 1.1)  # +10.5 ± 0.5: worse by the paired rule
    assert not worse([110.0, 90.0, 111.0], [100.0, 101.0, 100.5], 1.1)  # +3 ± 12: within the spread
    assert worse([111.0], [100.0], 1.1) and not worse([109.0], [100.0], 1.1)  # one seed: the 1.1x rule
    assert worse([math.inf, 100.0], [100.0, 100.0], 1.1) and not worse([math.inf], [math.inf], 1.1)
    assert not worse([100.0], [math.inf], 1.1)

    def record(b2, corrected, seed, early):
        return {"beta1": 0.9, "beta2": b2, "learning_rate": 1e-3, "bias_correction": corrected, "seed": seed,
                "loss": {"early": early, "late": early}}

    runs = [record(b2, c, s, 100.0 + s + (30.0 if (b2, c) == (0.9999, False) else 0.0))
            for b2 in (0.99, 0.9999) for c in (True, False) for s in range(3)]
    found = verdict(runs, (0.99, 0.9999))
    assert found["per_beta2"]["0.9999"]["worse"] == 1 and found["per_beta2"]["0.99"]["worse"] == 0
    assert found["claim_holds"] and found["rule"] == "paired over 3 seeds, mean difference > 2 s.d."
    assert found["per_beta2"]["0.9999"]["worse_at"] == [{"beta1": 0.9, "step_size": 1e-3, "ratio": 131.0 / 101.0}]
    assert found["corrected_worse_at"] == []

    # corrected beta2=0.9999 slower than 0.99 by 2 % at every seed: worse by the paired rule, which breaks the claim
    slower = [{**r, "loss": {"early": r["loss"]["early"] * 1.02, "late": r["loss"]["early"] * 1.02}}
              if (r["beta2"], r["bias_correction"]) == (0.9999, True) else r for r in runs]
    found = verdict(slower, (0.99, 0.9999))
    assert not found["stable_with_correction"] and not found["claim_holds"]
    assert found["corrected_worse_at"] == [{"beta1": 0.9, "step_size": 1e-3, "ratio": pytest.approx(1.02)}]


def test_bias_correction_judges_each_distinct_checkpoint_once():
    from adaptix.experiments.vae_bias_correction import distinct_checkpoints

    assert distinct_checkpoints({"early": 4680, "late": 4680}) == {"early": 4680}  # --epochs 10
    assert distinct_checkpoints({"early": 4680, "late": 46800}) == {"early": 4680, "late": 46800}


def test_winner_margins_pair_the_tuned_rate_with_its_grid_neighbours():
    from adaptix.experiments.tuning import describe_tuning, winner_margins

    scores = {  # seed -> grid key -> score; the arm's own variant unprefixed, another variant with "@"
        0: {"0.001": 1.00, "0.01": 0.50, "0.1": 0.52, "1": math.inf, "v@0.01": 0.9, "v@0.1": 0.8},
        1: {"0.001": 1.10, "0.01": 0.60, "0.1": 0.60, "1": math.inf, "v@0.01": 0.9, "v@0.1": 0.8},
        2: {"0.001": 0.90, "0.01": 0.40, "0.1": 0.43, "1": None, "v@0.01": 0.9, "v@0.1": 0.8},
    }
    m = winner_margins(scores, "arm", 0.01, "arm")
    assert list(m["neighbours"]) == ["0.001", "0.1"] and not m["resolved"]
    assert m["neighbours"]["0.001"]["resolved"] and m["neighbours"]["0.001"]["mean_d"] == pytest.approx(0.5)
    assert not m["neighbours"]["0.1"]["resolved"]  # +0.017 ± 0.015: within twice its s.d.
    assert winner_margins(scores, "arm", 0.1, "arm")["neighbours"]["1"] == {"mean_d": None, "sd_d": None,
                                                                          "resolved": True}  # diverged
    assert list(winner_margins(scores, "v", 0.1, "arm")["neighbours"]) == ["v@0.01"]  # an edge: one neighbour
    assert not winner_margins({0: scores[0]}, "arm", 0.01, "arm")["resolved"]  # one seed resolves nothing
    extended = {s: {"0.1": 1.0, "0.3": 0.5, "1": 2.0} for s in (0, 1)}  # 0.3 found as 0.1 x 3 by an extension
    assert list(winner_margins(extended, "arm", 0.1 * 3, "arm")["neighbours"]) == ["0.1", "1"]
    run = {"optimizer": "arm", "learning_rate": 0.01, "tuning": m}
    (line,) = describe_tuning([run, {"optimizer": "b", "tuning": None}])
    assert line.startswith("tuning of arm: its step size 0.01 is not told apart from 0.1 (d = +0.0167 ± 0.015)")


def test_the_tuning_score_is_the_last_tenth_of_the_run_but_at_least_min_tail_minibatches():
    from adaptix.experiments.train import History
    from adaptix.experiments.trainers import MIN_TAIL, tail_cost

    long_run = [10.0] * 900 + [1.0] * 100  # a tenth of 1,000 iterations: exactly the last 100
    assert tail_cost(History(optimizer="adam", learning_rate=0.1, iteration_loss=long_run)) == 1.0
    short_run = [5.0] * 10 + [3.0] * (MIN_TAIL - 1) + [1.0]  # a tenth would be the last minibatch alone
    assert tail_cost(History(optimizer="adam", learning_rate=0.1, iteration_loss=short_run)) == pytest.approx(
        (3.0 * (MIN_TAIL - 1) + 1.0) / MIN_TAIL)
    tiny_run = [4.0, 2.0]  # shorter than MIN_TAIL: the whole run
    assert tail_cost(History(optimizer="adam", learning_rate=0.1, iteration_loss=tiny_run)) == 3.0
    assert tail_cost(History(optimizer="adam", learning_rate=0.1, iteration_loss=[1.0], diverged=True)) == math.inf
