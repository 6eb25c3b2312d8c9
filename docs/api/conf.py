"""Sphinx configuration of the adaptix API reference.

Build it from the repository root, with the ``test`` extra installed (``pip install -e ".[test]"``),
into the git-ignored ``build/`` (open ``build/docs/html/index.html``)::

    python -m sphinx -W --keep-going -b html docs/api build/docs/html

Nothing is fetched at build time: no intersphinx, the builtin ``alabaster`` theme, and MathJax
is loaded by the browser from its CDN when a page is viewed. ``tests/test_docs.py`` runs this
build with warnings as errors.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

try:
    import adaptix
except ImportError:  # not installed: the checkout's
    sys.path.insert(0, str(ROOT))
    import adaptix

project = "adaptix"
author = "The adaptix developers"
copyright = "The adaptix developers"
release = version = adaptix.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
]

exclude_patterns = ["_build"]  # a build made inside docs/api
html_theme = "alabaster"
html_theme_options = {"description": "Composable adaptive gradient transformations for JAX"}

# Google-style docstrings (Args / Returns / Example / Note / References), as the library's.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = False  # the class signature shows the field types already

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
# The learning-rate and weight-decay type, by its name rather than as the union it stands for.
autodoc_type_aliases = {"ScalarOrSchedule": "optax.ScalarOrSchedule"}
python_use_unqualified_type_names = True

# A lexing hiccup of a README code block must not fail the build (the block is still shown, plain).
suppress_warnings = ["misc.highlighting_failure"]


# --------------------------------------------------------------------------------------------
# The README page: README.md rendered by MyST (readme.md includes it), with an anchor per heading,
# so that the index's table of contents links every README section. Its links to the repository's
# other files (docs/theory.md, benchmarks/RESULTS.md, ...) are not pages of this reference: MyST
# leaves them as they are, without a warning.
# --------------------------------------------------------------------------------------------

myst_heading_anchors = 3
suppress_warnings += ["myst.xref_missing"]


def _dataclass_signature(app, what, name, obj, options, signature, return_annotation):
    # A dataclass field with a default_factory shows as ``=<factory>``, which is no Python
    # expression: the signature would then be printed as raw text. ``...`` parses.
    if signature and "<factory>" in signature:
        return signature.replace("<factory>", "..."), return_annotation
    return None


def setup(app):
    app.connect("autodoc-process-signature", _dataclass_signature)
    return {"parallel_read_safe": True}
