"""The package layering of ``pipeline/`` stays as the README's code map draws it.

Every import between pipeline packages must point down the list below (or stay inside its own
package), and no module may take part in an import cycle — function-level imports included,
since they are cycles too, only deferred. Read from the source with ``ast``: nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pipeline"

LAYERS = (
    "pipeline.tools",
    "pipeline.act",
    "pipeline.collector",
    "pipeline.worker",
    "pipeline.http",
    "pipeline.kafka",
    "pipeline.engine",
    "pipeline.domain",
    "pipeline.aggregates",
    "pipeline.settings",
)
"""Top to bottom: a layer may import only layers after it (``schemas`` is below them all)."""

ENGINE_FORBIDDEN = ("aiokafka", "faust", "aiohttp")
"""The engine and the domain are pure: no I/O clients."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path) -> set[str]:
    """Every absolute module name the file imports, at any depth of the code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def layer_of(name: str) -> int | None:
    for index, layer in enumerate(LAYERS):
        if name == layer or name.startswith(layer + "."):
            return index
    return None


def internal_graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: {target for target in imports_of(path) if target in known and target != name}
        for name, path in known.items()
    }


def test_every_module_belongs_to_a_layer() -> None:
    stray = [name for name in modules() if name != "pipeline" and layer_of(name) is None]
    assert not stray, f"modules outside the layers of {LAYERS}: {stray}"


def test_imports_point_down_the_layers() -> None:
    upward = []
    for name, targets in internal_graph().items():
        own = layer_of(name)
        for target in targets:
            theirs = layer_of(target)
            if own is not None and theirs is not None and theirs < own:
                upward.append(f"{name} -> {target}")
    assert not upward, "imports that run back up the layers:\n" + "\n".join(sorted(upward))


@pytest.mark.parametrize("layer", ["pipeline.engine", "pipeline.domain", "pipeline.aggregates"])
def test_pure_layers_have_no_io_clients(layer: str) -> None:
    offending = [
        f"{name} imports {target}"
        for name, path in modules().items()
        if layer_of(name) == LAYERS.index(layer)
        for target in imports_of(path)
        if target.split(".")[0] in ENGINE_FORBIDDEN
    ]
    assert not offending, "\n".join(offending)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, …, a]``, or None (iterative DFS, three colours)."""
    state: dict[str, int] = {}
    for start in sorted(graph):
        if state.get(start):
            continue
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        path = [start]
        state[start] = 1
        while stack:
            node, pending = stack[-1]
            if not pending:
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            target = pending.pop()
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if not state.get(target):
                state[target] = 1
                path.append(target)
                stack.append((target, sorted(graph.get(target, ()))))
    return None


def package_init_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Drop edges from a package's ``__init__`` to its own modules: re-exporting is not a cycle
    (``pipeline.domain`` re-exports ``pipeline.domain.carts``, which imports a sibling)."""
    return {
        name: {t for t in targets if not t.startswith(name + ".")}
        for name, targets in graph.items()
    }


def test_no_import_cycle() -> None:
    cycle = find_cycle(package_init_edges(internal_graph()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
