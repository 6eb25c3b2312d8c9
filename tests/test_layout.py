"""House rules of the package, checked on its source: no import cycle, short functions, lint clean."""

from __future__ import annotations

import ast
import graphlib
import importlib.util
import io
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

import adaptix

PACKAGE = Path(adaptix.__file__).resolve().parent
ROOT = PACKAGE.parent
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports, at its top or inside a function."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing package
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:  # ``from adaptix import _validate`` imports a module
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules}


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _imports(path, set(paths)) for name, path in paths.items()}
    for name in paths:  # importing a submodule runs its package's __init__ first: not an edge of the code
        graph[name] -= {p for p in paths if name.startswith(p + ".")}
    return graph


def test_no_import_cycle():
    """No module imports, even inside a function, a module that imports it back."""
    graph = _graph()
    assert "adaptix._base" in graph["adaptix._alias"]  # the parser sees the imports
    assert "adaptix.experiments.registry" in graph["adaptix.experiments.run"]
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


def _code_lines(source: str, node: ast.AST) -> int:
    """Lines of ``node`` holding code: no blank lines, comments or docstring."""
    body = node.body
    doc = None
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        doc = range(body[0].lineno, body[0].end_lineno + 1)
    lines = set()
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in skip:
            continue
        for line in range(token.start[0], token.end[0] + 1):
            if node.lineno <= line <= node.end_lineno and not (doc and line in doc):
                lines.add(line)
    return len(lines)


def test_functions_are_short():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _code_lines(source, node)
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines of code")
    assert not long, "functions over the limit:\n" + "\n".join(long)


def test_the_public_names_are_all_exported():
    public = {n for n in dir(adaptix) if not n.startswith("_") and not isinstance(getattr(adaptix, n), type(sys))}
    assert sorted(public - set(adaptix.__all__)) == []
    assert len(adaptix.__all__) == len(set(adaptix.__all__))
    assert all(hasattr(adaptix, name) for name in adaptix.__all__)


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed")
@pytest.mark.skipif(not (ROOT / "pyproject.toml").is_file() or not (ROOT / "tests").is_dir(),
                    reason="not a source checkout")
def test_ruff_is_clean():
    """``ruff check`` with the configuration of pyproject.toml finds nothing."""
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
