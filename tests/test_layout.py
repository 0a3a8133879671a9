"""The layout shows the architecture: components grouped in layered domain packages, no upward or
sideways import, no import cycle, no component importing `stacks/` or `tools/`, and no module grown
past what reads as one thing."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from components import LAYERS

ROOT = Path(__file__).resolve().parent.parent
PROGRAM_DIRS = ("components", "stacks", "tools")
MAX_MODULE_LINES = 400
# Modules allowed past MAX_MODULE_LINES, each because it is one cohesive thing (none today).
LONG_MODULES: Mapping[str, str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def program_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for top in PROGRAM_DIRS
        for path in sorted((ROOT / top).rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def imported_modules(path: Path, known: Iterable[str]) -> set[str]:
    """Program modules a file imports, anywhere in it (a function-level import counts too).
    ``from pkg import mod`` resolves to ``pkg.mod`` when that is a module."""
    known = set(known)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in known else node.module)
    return {name for name in found if name in known}


def import_graph() -> dict[str, set[str]]:
    modules = program_modules()
    return {name: imported_modules(path, modules) for name, path in modules.items()}


def layering_violations(graph: Mapping[str, set[str]], layers: Mapping[str, int]) -> list[str]:
    """Every import that breaks the rules, as 'importer -> imported: why'."""
    problems = []
    for importer, imports in sorted(graph.items()):
        parts = importer.split(".")
        if parts[0] == "stacks":
            problems += [
                f"{importer} -> {i}: stacks never import tools"
                for i in imports
                if i.split(".")[0] == "tools"
            ]
        if parts[0] != "components":
            continue
        own = parts[1] if len(parts) > 1 else None
        if own is not None and own not in layers:
            problems.append(f"{importer}: package '{own}' has no layer in components.LAYERS")
            continue
        for imported in sorted(imports):
            target = imported.split(".")
            if target[0] in ("stacks", "tools"):
                problems.append(f"{importer} -> {imported}: components never import {target[0]}")
            elif target[0] == "components" and len(target) > 1 and own is not None:
                other = target[1]
                if other == own:
                    continue
                if other not in layers:
                    problems.append(f"{importer} -> {imported}: '{other}' has no layer")
                elif layers[other] >= layers[own]:
                    problems.append(
                        f"{importer} -> {imported}: layer {layers[own]} ('{own}') may only "
                        f"import lower layers, '{other}' is layer {layers[other]}"
                    )
    return problems


def import_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a self-import)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

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
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(members))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_every_component_package_has_a_layer_and_says_what_lives_there() -> None:
    packages = sorted(
        p.name for p in (ROOT / "components").iterdir() if (p / "__init__.py").exists()
    )
    assert packages == sorted(LAYERS)
    for package in packages:
        doc = ast.get_docstring(
            ast.parse((ROOT / "components" / package / "__init__.py").read_text())
        )
        assert doc, package
        assert f"layer {LAYERS[package]}" in doc, package
    loose = [p.name for p in (ROOT / "components").glob("*.py") if p.name != "__init__.py"]
    assert loose == [], f"modules outside a domain package: {loose}"


def test_no_upward_or_sideways_import_and_no_component_imports_stacks() -> None:
    assert layering_violations(import_graph(), LAYERS) == []


def test_no_import_cycles() -> None:
    assert import_cycles(import_graph()) == []


def test_modules_stay_readable_in_size() -> None:
    too_long = {
        name: len(path.read_text().splitlines())
        for name, path in program_modules().items()
        if len(path.read_text().splitlines()) > MAX_MODULE_LINES and name not in LONG_MODULES
    }
    assert too_long == {}


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        # a layer-0 package importing a layer-2 one
        ({"components.kube.charts": {"components.aws.network"}}, "may only import lower layers"),
        # sideways: two layer-2 packages
        ({"components.aws.network": {"components.platform.rancher"}}, "'platform' is layer 3"),
        ({"components.aws.network": {"stacks.config"}}, "components never import stacks"),
        ({"components.newthing.x": set()}, "has no layer"),
        ({"stacks.homelab": {"tools.offline"}}, "stacks never import tools"),
    ],
)
def test_the_layering_check_catches_violations(graph: dict[str, set[str]], expected: str) -> None:
    problems = layering_violations(graph, LAYERS)
    assert len(problems) == 1, problems
    assert expected in problems[0]


def test_the_cycle_check_catches_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_reader_resolves_from_imports_to_modules(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from components.nebula import pki\nfrom components.kube.labels import GPU_RESOURCE\n"
        "def f():\n    import stacks.config\n"
    )
    known = {
        "components.nebula",
        "components.nebula.pki",
        "components.kube.labels",
        "stacks.config",
    }
    assert imported_modules(source, known) == {
        "components.nebula.pki",
        "components.kube.labels",
        "stacks.config",
    }
