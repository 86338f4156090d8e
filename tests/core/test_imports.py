"""The import graph of `livestate`: layered, with no circle between its modules."""

from __future__ import annotations

import ast
from pathlib import Path

import livestate

SOURCE = Path(livestate.__file__).parent


def module_name(path: Path) -> str:
    """`livestate.x.y` for src/livestate/x/y.py (a package's __init__ is the package)."""
    parts = ["livestate", *path.relative_to(SOURCE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """The livestate modules `path` imports when it runs: at module level or in a function,
    but not under `if TYPE_CHECKING:` (annotations only)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name):
            if node.test.id == "TYPE_CHECKING":
                skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in modules else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {module for module in found if module in modules and module != name}


def import_graph() -> dict[str, set[str]]:
    """Every livestate module -> the livestate modules it imports at run time."""
    paths = sorted(SOURCE.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    return {module_name(path): runtime_imports(path, modules) for path in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle in `graph` as a list of modules (first repeated last), or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(module: str) -> list[str] | None:
        path.append(module)
        on_path.add(module)
        for target in sorted(graph[module]):
            if target in on_path:
                return [*path[path.index(target) :], target]
            if target not in done and (cycle := visit(target)):
                return cycle
        on_path.discard(path.pop())
        done.add(module)
        return None

    for module in sorted(graph):
        if module not in done and (cycle := visit(module)):
            return cycle
    return None


def test_no_import_circle() -> None:
    """No livestate module imports, at run time, a module that imports it back (through any
    number of others); annotations-only imports do not count."""
    assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()) or [])


def test_the_cycle_finder_finds_a_circle() -> None:
    """The check itself can fail: a graph with a circle is reported, one without is not."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_engine_does_not_import_what_sits_above_it() -> None:
    """The engine (node and below) never imports the LiveState facade, the integrations or
    the command line: those sit on top of it."""
    graph = import_graph()
    engine = {
        "livestate._node", "livestate._client", "livestate._replica", "livestate._persist",
        "livestate._presence", "livestate._declare", "livestate._changes", "livestate._values",
    }  # fmt: skip
    above = ("livestate._spec", "livestate.asgi", "livestate.pyview", "livestate.sync",
             "livestate._cli", "livestate.inspector", "livestate.testing")  # fmt: skip
    reached: set[str] = set()
    todo = list(engine)
    while todo:
        for target in graph[todo.pop()]:
            if target not in reached:
                reached.add(target)
                todo.append(target)
    assert (
        sorted(m for m in reached if m in above or m.startswith(tuple(a + "." for a in above)))
        == []
    )
