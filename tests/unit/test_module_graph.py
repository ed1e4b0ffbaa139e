"""entrypoint/'s imports run one way: every import of one of its modules by another, at the top
or inside a function, is an edge of one acyclic graph, and no module hides an import behind
TYPE_CHECKING. So no import inside a function exists to dodge a circle; the ones there are
defer a heavy or rarely used module and say so."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "entrypoint"
DEVELOPMENT = ROOT / "docs" / "development.md"


def imported_modules(node: ast.Import | ast.ImportFrom) -> set[str]:
    """The entrypoint modules one import statement names."""
    if isinstance(node, ast.Import):
        return {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("entrypoint.")}
    if node.module == "entrypoint":
        return {alias.name for alias in node.names if (PACKAGE / f"{alias.name}.py").is_file()}
    if node.module and node.module.startswith("entrypoint."):
        return {node.module.split(".")[1]}
    return set()


def trees() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text()) for path in sorted(PACKAGE.glob("*.py"))}


def import_graph() -> dict[str, set[str]]:
    """Module -> the entrypoint modules it imports anywhere in its body."""
    return {name: {target for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                   for target in imported_modules(node)} - {name}
            for name, tree in trees().items()}


def below(graph: dict[str, set[str]], name: str) -> set[str]:
    """Every module `name` imports, directly or through others."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_imports_form_a_dag():
    try:
        graphlib.TopologicalSorter(import_graph()).prepare()
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None


def test_no_type_checking_imports():
    guarded = [f"{name}.py:{node.lineno}" for name, tree in trees().items() for node in ast.walk(tree)
               if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)]
    assert guarded == []


def test_settings_flow_one_way():
    """The schema imports neither the loader nor the flag table; the loader is what builds it."""
    graph = import_graph()
    assert not below(graph, "settings") & {"resolver", "rules", "engine_flags", "render", "cpu_tuning",
                                           "secret_files"}
    assert {"settings", "rules", "default_layers", "cpu_tuning", "secret_files"} <= graph["resolver"]
    assert "settings" in graph["engine_flags"]


def documented_graph() -> dict[str, set[str]]:
    """docs/development.md's settings path: module -> the modules of that path it imports."""
    text = DEVELOPMENT.read_text()
    block = text.split("<!-- module-graph:begin -->", 1)[1].split("<!-- module-graph:end -->", 1)[0]
    rows = [line.split("->") for line in block.splitlines() if "->" in line]
    return {head.strip(): {name.strip() for name in tail.split(",") if name.strip()} for head, tail in rows}


def test_the_documented_graph_is_the_codes():
    documented, graph = documented_graph(), import_graph()
    assert documented, "docs/development.md has no module graph"
    assert {name: graph[name] & set(documented) for name in documented} == documented
