"""The package's shape: no import cycle among nowcast's modules, no function over 100 lines.

Both are read from the source (the AST), so nothing is imported and the test is fast. Imports inside functions
(deferred on purpose: torch, matplotlib, start-up time of the CLI) count too: deferring an import hides a cycle
from Python, not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nowcast"
MAX_FUNCTION_LINES = 100


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name `from ... import` refers to (relative levels counted from `module`)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    # level 1 is the module's own package: the module itself for a package's __init__
    keep = len(base) - node.level + (1 if is_package else 0)
    parts = base[:keep] + ([node.module] if node.module else [])
    return ".".join(parts)


def _module_level_imports(module: str, path: Path, known: set[str], deferred: bool = False) -> set[str]:
    """The nowcast modules `module` imports when it is imported (top level), and with ``deferred`` also those
    it imports inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def add(name: str) -> None:
        # `import a.b.c` also imports a and a.b; the deepest known module is the one that matters
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)

    def visit(nodes) -> None:
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                if deferred:
                    visit([n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))])
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name)
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(module, is_package, node)
                for alias in node.names:  # `from . import units` imports the module nowcast.units
                    full = f"{target}.{alias.name}"
                    add(full if full in known else target)
            elif isinstance(node, ast.ClassDef):
                visit(node.body)
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                visit(ast.iter_child_nodes(node))

    visit(tree.body)
    return found


def import_graph(deferred: bool = False) -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _module_level_imports(name, path, known, deferred) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of module names (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = walk(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = walk(start)
            if cycle:
                return cycle
    return None


def test_the_import_graph_is_read():
    graph = import_graph()
    assert "nowcast.radar" in graph["nowcast.windows"] or "nowcast.timeaxis" in graph["nowcast.windows"]
    assert "nowcast.errors" in graph["nowcast.radar"]


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_inside_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_import_cycle_even_through_imports_inside_functions():
    graph = import_graph(deferred=True)
    assert "nowcast.forecast" in graph["nowcast.methods"]  # deferred there (torch), and counted
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle through a deferred import: " + " -> ".join(cycle)


def _long_functions():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    yield f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({lines} lines)"


def test_no_function_over_100_lines():
    too_long = list(_long_functions())
    assert not too_long, "functions over 100 lines: " + "; ".join(too_long)
