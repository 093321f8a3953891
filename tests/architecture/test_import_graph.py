"""The package's import graph has no cycle, counting imports inside functions too.

A cycle means two modules can only be understood (and loaded) together; the layout
in docs/api.md is layered so that each subpackage depends only on lower ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mlspec_attest

PACKAGE = Path(mlspec_attest.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """Modules of this package that ``path`` imports anywhere (top level, functions, TYPE_CHECKING)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
        elif isinstance(node, ast.ImportFrom):  # relative imports are not used in this package
            found.add(f"<relative import in {path.name}>")
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in MODULES or m.startswith("<")}


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


def test_no_relative_imports() -> None:
    relative = sorted(m for deps in GRAPH.values() for m in deps if m.startswith("<"))
    assert relative == []


def test_nothing_imports_the_public_facade() -> None:
    """``mlspec_attest/__init__.py`` re-exports everything lazily; importing it from inside would be a cycle."""
    importers = sorted(name for name, deps in GRAPH.items() if "mlspec_attest" in deps and name != "mlspec_attest")
    assert importers == []


def test_the_cycle_finder_finds_cycles() -> None:
    """The check above can fail: a two-module and a three-module cycle are both reported."""
    assert _cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("layer,forbidden", [
    ("mlspec_attest.model", ("mlspec_attest.verify", "mlspec_attest.attest", "mlspec_attest.cli", "mlspec_attest.policy")),
    ("mlspec_attest.verify", ("mlspec_attest.cli", "mlspec_attest.attest", "mlspec_attest.demo")),
    ("mlspec_attest.attest", ("mlspec_attest.cli", "mlspec_attest.verify", "mlspec_attest.demo")),
])
def test_layers_do_not_reach_up(layer: str, forbidden: tuple[str, ...]) -> None:
    """The wire model knows nothing of policy or verification; writer and gate stay apart; no core module imports the CLI."""
    offending = sorted(f"{name} -> {dep}" for name, deps in GRAPH.items() if name.startswith(layer)
                       for dep in deps if dep.startswith(forbidden))
    assert offending == []
