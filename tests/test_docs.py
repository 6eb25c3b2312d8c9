"""The API reference (docs/api) builds with Sphinx, warnings as errors, and documents every public name.

Skipped without Sphinx and MyST (the ``test`` extra has them), without the experiments extra (the reference
documents ``adaptix.experiments``), or without docs/api (an sdist carries no docs).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import adaptix

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "api"
@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The built HTML folder; the build must succeed without a single warning.

    Sphinx runs in its own process: autodoc rewrites the signatures of what it documents
    (``autodoc_preserve_defaults`` puts the source text of each default in ``__signature__``),
    which would change what ``inspect.signature`` - and so ``optax.inject_hyperparams`` - sees
    in the tests that run after this one.
    """
    if not (DOCS / "conf.py").is_file():
        pytest.skip("docs/api is absent (an sdist without docs)")
    for module in ("sphinx", "myst_parser", "flax", "tqdm"):  # the experiments page imports flax and tqdm
        pytest.importorskip(module)
    out = tmp_path_factory.mktemp("docs")
    warnings = out / "warnings.txt"
    result = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q",
                             "-w", str(warnings), str(DOCS), str(out / "html")], capture_output=True, text=True)
    assert result.returncode == 0, f"sphinx-build failed:\n{warnings.read_text() if warnings.exists() else ''}" \
        f"\n{result.stderr[-3000:]}"
    return out / "html"


def test_docs_document_every_public_name(site):
    html = "\n".join(p.read_text(encoding="utf-8") for p in site.glob("*.html"))
    documented = set(re.findall(r'id="adaptix\.([A-Za-z_]\w*)"', html))
    missing = sorted(set(adaptix.__all__) - documented)
    assert not missing, f"public names without an entry in the API reference: {missing}"


def test_docs_index_links_every_readme_section(site):
    readme = re.sub(r"^```.*?^```", "", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.S | re.M)
    sections = re.findall(r"^## ", readme, re.M)  # outside code blocks, where '#' starts a comment
    links = set(re.findall(r'href="readme\.html#([^"]+)"', (site / "index.html").read_text(encoding="utf-8")))
    assert len(links) == len(sections) > 0, sorted(links)
