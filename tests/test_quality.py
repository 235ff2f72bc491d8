"""The code stays typed (mypy --strict) and lint-clean (ruff), as part of the suite."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_mypy_strict() -> None:
    result = run("mypy", "service", "projections", "migrations")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff() -> None:
    result = run("ruff", "check", "service", "projections", "migrations", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


FUNCTION_LINES = 50


def long_functions(source: str, name: str, limit: int = FUNCTION_LINES) -> list[str]:
    """Functions longer than ``limit`` lines (decorators excluded, docstring included)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > limit:
                found.append(f"{name}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_a_long_function_is_found() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(FUNCTION_LINES))
    assert len(long_functions(f"def f():\n{body}", "f.py")) == 1


def test_functions_fit_a_screen() -> None:
    found = []
    for package in ("service", "projections", "migrations"):
        for path in sorted((ROOT / package).rglob("*.py")):
            found += long_functions(path.read_text(), str(path.relative_to(ROOT)))
    assert found == []
