"""The notebooks in notebooks/ execute (at the small CI sizes), match their sources, and show their plots.

Each notebook is generated from ``notebooks/scripts/cells/NN_name.py`` by
``notebooks/scripts/build_notebooks.py`` and committed with its outputs. Here each
one is executed again with nbclient and ``ADAPTIX_QUICK=1`` (reduced sizes; the
shared data is used only when present), with a per-cell timeout.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CELLS = NOTEBOOKS / "scripts" / "cells"
if not CELLS.is_dir():
    pytest.skip("the notebooks are not here (an sdist carries the package and its tests only)", allow_module_level=True)
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
CELL_TIMEOUT = 240  # seconds per cell, generous for a loaded 2-core machine; notebooks take ~5-30 s


def _builder():
    spec = importlib.util.spec_from_file_location("build_notebooks", NOTEBOOKS / "scripts" / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_source_has_a_committed_notebook():
    sources = {p.stem for p in CELLS.glob("*.py")}
    assert sources, "no notebook sources"
    assert sources == {p.stem for p in PATHS}


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_committed_notebook_matches_its_source_and_has_plots(path):
    nb = nbformat.read(path, as_version=4)
    expected = _builder().parse((CELLS / f"{path.stem}.py").read_text())
    got = [(c.cell_type, c.source) for c in nb.cells]
    want = [(c.cell_type, c.source) for c in expected.cells]
    assert got == want, f"{path.name} is out of date: run python notebooks/scripts/build_notebooks.py {path.stem[:2]}"
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"], f"{path.name} was saved with an error"
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code"), f"{path.name} not executed"
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name} has no plots in its outputs"


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_executes(path, monkeypatch):
    monkeypatch.setenv("ADAPTIX_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    t0 = time.perf_counter()
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    seconds = time.perf_counter() - t0
    print(f"{path.name}: {seconds:.1f} s")
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name} produced no plots"
