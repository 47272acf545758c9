"""The layout's rules, read from the source: no import cycles, and the core never imports the CLI's
or the runtime's world. Imports inside functions are left out on purpose: they are how a command
defers loading what only it needs, and they cannot make an import-time cycle."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("control_plane", "runtime")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))
            if "migrations" not in p.parts}


def _top_level_imports(path: Path, module: str) -> set[str]:
    """Modules imported when `module` is imported: its module-level statements, including those
    under `if`/`try`, but not under `if TYPE_CHECKING:` (never executed)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(statements) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If):
                if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(tree.body)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for imported in _top_level_imports(path, name):
            # `from a.b import c` names module a.b.c when it is one, else an attribute of a.b.
            target = imported if imported in modules else None
            if target is None:
                continue
            edges.add(target)
            # Importing a.b.c runs a/__init__ and a/b/__init__ first.
            parts = target.split(".")
            edges.update(".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in modules)
        edges.discard(name)
        # A package's own __init__ is imported before any of its modules: not an edge back.
        graph[name] = {e for e in edges if not name.startswith(e + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return found


def test_the_walk_sees_the_packages():
    graph = _graph()
    assert "control_plane.plans.compare" in graph and "runtime.app" in graph
    assert "control_plane.state.rows" in graph["control_plane.plans.compare"]


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_core_never_imports_click_or_runtime():
    offenders = []
    for name, path in _modules().items():
        if not name.startswith("control_plane.") or name.startswith("control_plane.cli"):
            continue
        for imported in sorted(_imports_anywhere(path)):  # functions included
            if imported.split(".")[0] in ("click", "runtime"):
                offenders.append(f"{name}: imports {imported}")
    assert offenders == []


def _imports_anywhere(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.add(node.module or "")
    return found


def test_config_never_imports_state():
    """Documents are validated without rows; checks that need rows are assembled in reconcile/."""
    offenders = [f"{name}: imports {imported}" for name, path in _modules().items()
                 if name.startswith("control_plane.config")
                 for imported in _imports_anywhere(path) if imported.startswith("control_plane.state")]
    assert offenders == []
