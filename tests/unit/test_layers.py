"""The package's layers, read from its source: no module imports from a layer above its own,
and the import graph has no cycle outside ``kv/`` (DESIGN.md §2).

Every import counts, wherever it is written (inside a function or under ``TYPE_CHECKING``
too): a function-level import dodges a cycle at run time but keeps the two modules knotted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "quick_queue"

# What each lower layer may import from the package (its own layer always).
CORE_MAY_IMPORT = {"kv", "keys", "models", "outcomes", "settings", "errors", "clock"}
# Modules the consumer runtime must never import: the facade, the CLI, the read views.
CONSUMER_MUST_NOT = ("queue", "cli", "cli_support", "cli_views", "inspect", "read_model")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The package module ``name`` refers to (a module, or the package it names)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str) -> set[str]:
    """The package modules ``module`` imports, resolved (``from a import b`` counts ``a.b``
    when ``b`` is a module, else ``a``)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        for name in names:
            target = _resolve(name)
            if target is not None and target != module and name.startswith("quick_queue"):
                found.add(target)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def _layer(module: str) -> str:
    """``kv``, ``core``, ``consumer`` or the top-level module's own name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "quick_queue"


def _in(module: str, layer: str) -> bool:
    return _layer(module) == layer


def test_the_package_was_found() -> None:
    assert "quick_queue.kv.api" in MODULES and "quick_queue.consumer.runner" in MODULES
    assert GRAPH["quick_queue.queue"]  # the facade imports the layers below it


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, "kv")))
def test_kv_imports_nothing_above_itself(module: str) -> None:
    above = sorted(t for t in GRAPH[module] if not _in(t, "kv"))
    assert not above, f"{module} imports {above}: kv/ must import nothing outside kv/"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, "core")))
def test_core_imports_only_the_layers_below_it(module: str) -> None:
    above = sorted(
        t for t in GRAPH[module] if _layer(t) not in CORE_MAY_IMPORT | {"core"}
    )
    assert not above, (
        f"{module} imports {above}: core/ may import only "
        f"{', '.join(sorted(CORE_MAY_IMPORT))}"
    )


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, "consumer")))
def test_consumer_never_imports_the_facade_cli_or_views(module: str) -> None:
    above = sorted(t for t in GRAPH[module] if _layer(t) in CONSUMER_MUST_NOT)
    assert not above, f"{module} imports {above}: the runtime sits below the facade"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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


def test_no_import_cycle_outside_kv() -> None:
    # The package's __init__ re-exports the public API, so it imports nearly everything;
    # a module importing the package root would close a cycle through it, which counts.
    outside = {m: {t for t in ts if not _in(t, "kv")} for m, ts in GRAPH.items()
               if not _in(m, "kv")}
    assert _cycles(outside) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
