"""One rule for every "A converges faster than B": a paired difference across seeds against twice its spread.

For a claim about optimizers ``A`` and ``B`` run from the same seeds (the same initialisation,
dropout keys and minibatch order for both), the statistic of seed ``s`` is the mean, over the
epochs of the run, of the cost on the whole training set after each epoch (the curve the paper
plots; its mean over the window is the area under it, so "faster" means lower all along, not
only at the end):

.. math::

    d_s = \\frac{1}{E} \\sum_{e=1}^{E} \\big(C^A_{s,e} - C^B_{s,e}\\big), \\qquad
    \\bar d = \\operatorname{mean}_s d_s, \\qquad \\sigma_d = \\operatorname{sd}_s d_s \\ (\\text{ddof} = 1).

The measured relation is ``A < B`` (A faster) when :math:`\\bar d < -2\\sigma_d`, ``A > B`` when
:math:`\\bar d > 2\\sigma_d`, else ``A ≈ B``. A claim ``<`` holds when ``<`` is measured, ``≈``
when ``≈`` is, and ``≲`` ("as fast as": not slower) when ``<`` or ``≈`` is. With fewer than
:data:`MIN_SEEDS` seeds, or a diverged seed, there is no verdict. Two seeds give a spread, but a
poor one; the reproductions use three or more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The rule, as ``results.json`` records it.
VERDICT_RULE = ("A < B (faster) when the mean over seeds of d = mean over epochs of (cost A - cost B) on the whole "
                "training set is below -2 s.d. of d across seeds; A > B above +2 s.d.; A ≈ B within")
#: Fewer seeds give no verdict.
MIN_SEEDS = 2
RELATIONS = ("<", "≈", "≲")


@dataclass(frozen=True)
class Claim:
    """``a relation b``: ``"<"`` a converges faster than b, ``"≈"`` as fast, ``"≲"`` at least as fast (not slower).

    ``a`` and ``b`` name arms of the experiment (its optimizer names).
    """

    a: str
    relation: str
    b: str

    def __post_init__(self):
        if self.relation not in RELATIONS:
            raise ValueError(f"Claim: relation must be one of {RELATIONS}, got {self.relation!r}")

    def __str__(self) -> str:
        return f"{self.a} {self.relation} {self.b}"


def _by_seed(run: dict) -> dict[int, list[float]]:
    """seed -> the per-epoch training cost of that seed (None where the run holds no per-seed curves)."""
    per_seed = run.get("per_seed") or []
    return {p["seed"]: [math.inf if v is None else v for v in p["epoch_train_loss"]] for p in per_seed}


def paired_difference(run_a: dict, run_b: dict) -> tuple[np.ndarray, int]:
    """Each common seed's ``d_s`` (the mean over epochs of ``cost_a - cost_b``) and the number of epochs used."""
    a, b = _by_seed(run_a), _by_seed(run_b)
    seeds = sorted(set(a) & set(b))
    epochs = min((len(a[s]) for s in seeds), default=0)
    epochs = min([epochs, *(len(b[s]) for s in seeds)])
    d = np.array([np.mean(np.subtract(a[s][:epochs], b[s][:epochs])) for s in seeds]) if epochs else np.array([])
    return d, epochs


def measure(run_a: dict, run_b: dict) -> dict:
    """The measured relation of two runs under the rule, with the statistic: ``mean_d``, ``sd_d``, ``seeds``."""
    d, epochs = paired_difference(run_a, run_b)
    if len(d) < MIN_SEEDS or not np.all(np.isfinite(d)):
        why = "a seed diverged" if len(d) and not np.all(np.isfinite(d)) else f"{len(d)} seed(s)"
        return {"measured": None, "mean_d": None, "sd_d": None, "seeds": len(d), "epochs": epochs, "why": why}
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    measured = "<" if mean < -2 * sd else ">" if mean > 2 * sd else "≈"
    return {"measured": measured, "mean_d": mean, "sd_d": sd, "seeds": len(d), "epochs": epochs}


def holds(claim: Claim, measured: str | None) -> bool | None:
    """Whether ``measured`` satisfies ``claim`` (None: no verdict)."""
    if measured is None:
        return None
    return measured in {"<": ("<",), "≈": ("≈",), "≲": ("<", "≈")}[claim.relation]


def verdicts(claims: tuple[Claim, ...], runs: list[dict]) -> list[dict]:
    """Each claim whose two arms both ran, with its measurement and whether it holds."""
    by_arm = {r.get("arm", r["optimizer"]): r for r in runs}
    out = []
    for claim in claims:
        if claim.a in by_arm and claim.b in by_arm:
            measured = measure(by_arm[claim.a], by_arm[claim.b])
            out.append({"claim": str(claim), **measured, "holds": holds(claim, measured["measured"])})
    return out


def describe_verdicts(found: list[dict]) -> list[str]:
    """One line per verdict: the claim, what was measured, the statistic, and whether it holds."""
    lines, unjudged = [], {}
    for v in found:
        if v["measured"] is None:
            unjudged.setdefault(v.get("why", ""), []).append(v["claim"])
            continue
        a, _, b = v["claim"].split(" ", 2)
        verdict = "holds" if v["holds"] else "does not hold"
        lines.append(f"claim {v['claim']}: measured {a} {v['measured']} {b}, mean d = {v['mean_d']:+.4g} ± "
                     f"{v['sd_d']:.2g} (s.d., {v['seeds']} seeds, {v['epochs']} epochs): {verdict}")
    for why, claims in unjudged.items():
        hint = f"; the rule needs {MIN_SEEDS} or more, e.g. --seeds 3" if why.endswith("seed(s)") else ""
        lines.append(f"no verdict ({why}{hint}) on: {', '.join(claims)}")
    return lines
