"""The packages form layers: no import cycle between them, and a pure domain.

The import graph is read from the source (AST, nothing is executed). Its nodes are
the top-level packages ``projections`` and ``migrations``, each subpackage of
``service`` (``service.store``, ``service.domain``, ...) and each top-level module of
``service`` (``service.errors``, ``service.server``, ...). Imports inside functions
count too: a deferred import still ties two packages together.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("service", "projections", "migrations")
DOMAIN = "service.domain"
DOMAIN_MAY_IMPORT = {DOMAIN, "service.errors"}

Graph = dict[str, dict[str, set[str]]]


def node_of(module: str) -> str:
    """The layer a dotted module name belongs to."""
    parts = module.split(".")
    if parts[0] != "service" or len(parts) == 1:
        return parts[0]
    return f"service.{parts[1]}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(dotted: str) -> bool:
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imported(tree: ast.AST) -> Iterable[str]:
    """The project modules a module imports (``from a import b`` counts a.b when b is one)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [
                f"{node.module}.{alias.name}"
                if is_module(f"{node.module}.{alias.name}")
                else node.module
                for alias in node.names
            ]
        else:
            continue
        yield from (name for name in names if name.split(".")[0] in PACKAGES)


def import_graph() -> Graph:
    """layer -> imported layer -> the modules that make the edge."""
    graph: Graph = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            source = module_name(path)
            edges = graph.setdefault(node_of(source), {})
            for target in imported(ast.parse(path.read_text(), str(path))):
                if node_of(target) != node_of(source):
                    edges.setdefault(node_of(target), set()).add(source)
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components with more than one layer (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(set(graph) | {t for edges in graph.values() for t in edges}):
        if node not in index:
            visit(node)
    return found


def describe(graph: Graph, component: list[str]) -> str:
    return "; ".join(
        f"{a} -> {b} ({', '.join(sorted(graph[a][b]))})"
        for a in component
        for b in component
        if b in graph.get(a, {})
    )


def test_the_graph_sees_the_layers() -> None:
    graph = import_graph()
    assert {"service.store", "service.domain", "service.api", "projections", "migrations"} <= set(
        graph
    )
    assert "service.domain" in graph["service.store"]
    assert "service.store" in graph["projections"]


def test_no_import_cycle_between_packages() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, "\n".join(describe(graph, component) for component in found)


def test_the_domain_imports_no_other_layer() -> None:
    graph = import_graph()
    outside = {
        target: sorted(modules)
        for target, modules in graph[DOMAIN].items()
        if target not in DOMAIN_MAY_IMPORT
    }
    assert not outside, outside
    assert not graph.get("service.errors"), "the error tree imports nothing of the project"


def test_cycles_are_found() -> None:
    graph: Graph = {"a": {"b": {"a.x"}}, "b": {"c": {"b.y"}}, "c": {"a": {"c.z"}}, "d": {}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b": {"a.x"}}, "b": {}}) == []
