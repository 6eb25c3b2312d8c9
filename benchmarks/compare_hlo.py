"""Do two source trees of adaptix compile the same optimizer steps? A check for refactors.

    python benchmarks/compare_hlo.py OLD_TREE [NEW_TREE]

``OLD_TREE`` and ``NEW_TREE`` (default: this checkout) are directories holding an ``adaptix``
package, e.g. ``git worktree add /tmp/old HEAD~1``. For each optimizer below, one jitted step
(update and apply, on a tree with float32 and bfloat16 leaves) is compiled in a fresh process per
tree, and the optimized HLO is compared with source locations and instruction numbering removed.
Identical HLO means identical arithmetic and memory traffic: a refactor that passes this cannot
be slower, which a timing on a shared machine could not show to better than a few per cent.
"""

from __future__ import annotations

import difflib
import re
import subprocess
import sys
from pathlib import Path

OPTIMIZERS = {
    "adam": "adaptix.adam(1e-3)",
    "adam_bf16_moments": "adaptix.adam(1e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)",
    "adamw": "adaptix.adamw(1e-3)",
    "nadam": "adaptix.nadam(1e-3)",
    "amsgrad": "adaptix.amsgrad(1e-3)",
    "adamax": "adaptix.adamax(1e-3)",
    "radam": "adaptix.radam(1e-3)",
    "rmsprop_momentum": "adaptix.rmsprop(1e-3, momentum=0.9)",
    "rmsprop_centered": "adaptix.rmsprop(1e-3, centered=True)",
    "adagrad": "adaptix.adagrad(1e-3)",
    "adadelta": "adaptix.adadelta(1.0)",
    "sgd_nesterov": "adaptix.sgd(1e-3, momentum=0.9, nesterov=True)",
    "lion": "adaptix.lion(1e-3)",
    "signum": "adaptix.signum(1e-3)",
    "rprop": "adaptix.rprop(1e-3)",
    "adabayes": "adaptix.adabayes()",
}

# Runs in a fresh interpreter with the tree first on sys.path; prints "== name" and the HLO of each step.
_DUMP = """
import sys
sys.path.insert(0, sys.argv[1])
import jax, jax.numpy as jnp, optax
import adaptix
assert adaptix.__file__.startswith(sys.argv[1]), adaptix.__file__
params = {"a": jnp.zeros((64, 32)), "b": jnp.zeros(32), "c": {"k": jnp.zeros((16, 16), jnp.bfloat16)}}
for name, expression in %r.items():
    tx = eval(expression)
    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s
    print("== " + name)
    print(jax.jit(step).lower(params, tx.init(params), params).compile().as_text())
"""


def _normalized(hlo: str) -> list[str]:
    """The instructions, without metadata, source locations and the numbers in names."""
    lines = []
    for line in hlo.splitlines():
        if re.match(r'^\s*\d+ ("|\{)', line) or re.match(r"^(FileNames|FunctionNames|FileLocations|StackFrames)", line):
            continue
        line = re.sub(r"metadata=\{[^}]*\}", "", line)
        line = re.sub(r",?\s*stack_frame_id=\d+", "", line)
        lines.append(re.sub(r"\.\d+", "", line))
    return lines


def compiled_steps(tree: Path) -> dict[str, list[str]]:
    out = subprocess.run([sys.executable, "-c", _DUMP % OPTIMIZERS, str(tree.resolve())], check=True,
                         capture_output=True, text=True).stdout
    steps = {}
    for block in out.split("== ")[1:]:
        name, _, hlo = block.partition("\n")
        steps[name] = _normalized(hlo)
    return steps


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    old = compiled_steps(Path(argv[0]))
    new = compiled_steps(Path(argv[1]) if len(argv) == 2 else Path(__file__).resolve().parents[1])
    print("| optimizer | compiled step |\n|---|---|")
    differ = 0
    for name in OPTIMIZERS:
        diff = [d for d in difflib.unified_diff(old[name], new[name], lineterm="", n=0)
                if not d.startswith(("---", "+++", "@@"))]
        differ += bool(diff)
        print(f"| {name} | {'identical' if not diff else f'differs ({len(diff)} lines)'} |")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
