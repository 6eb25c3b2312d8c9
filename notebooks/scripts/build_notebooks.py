"""Builds the notebooks in ``notebooks/`` from the cell lists in ``notebooks/scripts/cells/``, then executes them.

Usage (from the repository root)::

    python notebooks/scripts/build_notebooks.py            # build and execute every notebook (full sizes)
    python notebooks/scripts/build_notebooks.py 03 05      # only those whose name starts with 03 or 05
    ADAPTIX_QUICK=1 python notebooks/scripts/build_notebooks.py --no-save   # the CI sizes, nothing written

Each cell file ``cells/NN_name.py`` holds the notebook as Python source whose
cells are separated by lines ``# %% [markdown]`` / ``# %%`` (the "percent"
format); markdown cells are written as ``#``-prefixed comment lines. The
executed notebook, with its outputs and plots, is saved as ``NN_name.ipynb``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
NOTEBOOKS = HERE.parent
CELLS = HERE / "cells"


def parse(source: str) -> nbformat.NotebookNode:
    """Percent-format source -> a notebook (markdown cells lose their leading '# ')."""
    nb = nbformat.v4.new_notebook()
    kind, lines = None, []

    def flush():
        if kind is None:
            return
        text = "\n".join(lines).strip("\n")
        if kind == "markdown":
            text = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in text.splitlines())
            nb.cells.append(nbformat.v4.new_markdown_cell(text))
        elif text.strip():
            nb.cells.append(nbformat.v4.new_code_cell(text))

    for line in source.splitlines():
        if line.startswith("# %% [markdown]"):
            flush()
            kind, lines = "markdown", []
        elif line.startswith("# %%"):
            flush()
            kind, lines = "code", []
        elif kind is not None:
            lines.append(line)
    flush()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def execute(nb: nbformat.NotebookNode, timeout: int = 1200) -> float:
    t0 = time.perf_counter()
    resources = {"metadata": {"path": str(NOTEBOOKS)}}
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources=resources)
    client.execute()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("only", nargs="*", help="prefixes of the notebooks to build")
    ap.add_argument("--no-save", action="store_true", help="execute only")
    args = ap.parse_args()
    for path in sorted(CELLS.glob("*.py")):
        if args.only and not any(path.stem.startswith(p) for p in args.only):
            continue
        nb = parse(path.read_text())
        seconds = execute(nb)
        print(f"{path.stem}: executed in {seconds:.1f} s (ADAPTIX_QUICK={os.environ.get('ADAPTIX_QUICK', '0')})")
        if not args.no_save:
            for cell in nb.cells:  # keep diffs small: no execution timings
                cell.metadata.pop("execution", None)
            nbformat.write(nb, NOTEBOOKS / f"{path.stem}.ipynb")
    return 0


if __name__ == "__main__":
    sys.exit(main())
