"""The layout is the architecture (docs/architecture.md): stages import only earlier stages and
nothing imports in a cycle (import-linter contracts in pyproject.toml, read from the source's
imports), modules stay small enough to read, and long functions say why they are long."""
import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sptrace", "experiments", "models_zoo")
MAX_MODULE_LINES = 600
LONG_MODULES = {"sptrace/graph/ops.py"}  # the op table: one entry per torch op, read as a table
MAX_FUNCTION_LINES = 80
WHY_LONG = "It is long because"


def _sources():
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def test_import_contracts_hold():
    importlinter = pytest.importorskip("importlinter.cli")
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        assert importlinter.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0, \
            "an import breaks the layering: run `lint-imports` in the repository root for the chain"
    finally:
        os.chdir(cwd)


def test_modules_stay_readable():
    too_long = {str(p.relative_to(ROOT)): n for p in _sources()
                if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert set(too_long) <= LONG_MODULES, f"modules over {MAX_MODULE_LINES} lines: {too_long}"


def test_long_functions_say_why():
    unexplained = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and WHY_LONG not in (ast.get_docstring(node) or ""):
                    unexplained.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert not unexplained, (f"functions over {MAX_FUNCTION_LINES} lines without '{WHY_LONG} ...' in their "
                             "docstring: split them or say why not:\n" + "\n".join(unexplained))
