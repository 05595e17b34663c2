"""The package's shape: no import cycle among nowcast's modules, no function over 80 lines, no private helper
with more than 8 parameters.

All are read from the source (the AST), so nothing is imported and the test is fast. Imports inside functions
(deferred on purpose: torch, matplotlib, start-up time of the CLI) count too: deferring an import hides a cycle
from Python, not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nowcast"
MAX_FUNCTION_LINES = 80
# a private helper that needs more than this wants its inputs grouped (a small frozen dataclass)
MAX_PRIVATE_PARAMETERS = 8


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


def _functions(root: Path = PACKAGE):
    """(where, function node) of every function and method under ``root``, nested ones included."""
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{path.relative_to(root.parent)}:{node.lineno}", node


def _long_functions(root: Path = PACKAGE):
    for where, node in _functions(root):
        lines = node.end_lineno - node.lineno + 1
        if lines > MAX_FUNCTION_LINES:
            yield f"{where} {node.name} ({lines} lines)"


def parameter_count(node: ast.FunctionDef) -> int:
    """Positional and keyword-only parameters, *args and **kwargs one each; a leading self or cls not counted."""
    a = node.args
    names = [p.arg for p in a.posonlyargs + a.args]
    if names and names[0] in ("self", "cls"):
        names = names[1:]
    return len(names) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _crowded_private_functions(root: Path = PACKAGE):
    for where, node in _functions(root):
        count = parameter_count(node)
        if _is_private(node.name) and count > MAX_PRIVATE_PARAMETERS:
            yield f"{where} {node.name} ({count} parameters)"


def test_parameters_are_counted_as_the_rule_says(tmp_path):
    src = tmp_path / "pkg"
    src.mkdir()
    (src / "m.py").write_text(
        "def _nine(a, b, c, d, e, f, g, h, i): pass\n"
        "def _eight_with_stars(a, b, c, d, e, f, *args, **kwargs): pass\n"
        "def _nine_keyword_only(a, b, c, d, e, f, g, h, *, i=1): pass\n"
        "def public(a, b, c, d, e, f, g, h, i): pass\n"
        "def __dunder__(a, b, c, d, e, f, g, h, i): pass\n"
        "class C:\n"
        "    def _method(self, a, b, c, d, e, f, g, h): pass\n"
        "    def _too_many(self, a, b, c, d, e, f, g, h, *rest): pass\n"
    )
    found = list(_crowded_private_functions(src))
    assert [line.split(" ", 1)[1] for line in found] == [
        "_nine (9 parameters)", "_nine_keyword_only (9 parameters)", "_too_many (9 parameters)"]
    assert found[0].startswith("pkg/m.py:1 ")


def test_no_function_over_80_lines():
    too_long = list(_long_functions())
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: " + "; ".join(too_long)


def test_no_private_helper_with_more_than_8_parameters():
    crowded = list(_crowded_private_functions())
    assert not crowded, (f"private functions with more than {MAX_PRIVATE_PARAMETERS} parameters (group them): "
                         + "; ".join(crowded))
