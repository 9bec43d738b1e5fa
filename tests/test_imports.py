"""The package's seams: no private name crosses a module boundary, no small import cycles."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import nbflow

PACKAGE = Path(nbflow.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolved(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _private_imports(path: Path) -> list[str]:
    module = _module_name(path)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        source = _resolved(node, module, path.name == "__init__.py")
        for alias in node.names:
            private = alias.name.startswith("_") and not alias.name.startswith("__")
            if private and importlib.util.find_spec(f"{source}.{alias.name}") is None:
                found.append(f"{module}: from {source} import {alias.name}")
    return found


def test_no_module_imports_another_modules_private_names():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in _private_imports(path)]
    assert found == []


def _loaded_after(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_api_app_does_not_import_the_server_that_serves_it():
    assert "nbflow.api.server" not in _loaded_after("nbflow.api.app")


def test_the_offline_app_does_not_import_the_handle_that_starts_it():
    assert "nbflow.llm.offline" not in _loaded_after("nbflow.llm._offline_app")


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules ``path`` imports, at the top or in a function (not for
    type checking only)."""
    module = _module_name(path)
    tree = ast.parse(path.read_text())
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for node in ast.walk(stmt)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            source = _resolved(node, module, path.name == "__init__.py")
            named = {f"{source}.{alias.name}" for alias in node.names}
            found |= (named & modules) or {source}
    return (found & modules) - {module}


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """A path of imports from ``start`` back to it, if there is one."""
    stack, seen = [(start, [start])], set()
    while stack:
        module, path = stack.pop()
        for target in sorted(graph[module]):
            if target == start:
                return [*path, start]
            if target not in seen:
                seen.add(target)
                stack.append((target, [*path, target]))
    return None


def test_no_import_cycles_even_through_imports_inside_functions():
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _imports(path, set(paths)) for name, path in paths.items()}
    cycles = [cycle for name in sorted(graph) if (cycle := _cycle_from(name, graph))]
    assert cycles == []
