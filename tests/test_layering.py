"""Layering rules users never see but every change depends on."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def _imports_after(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_importing_the_api_does_not_import_torch() -> None:
    loaded = _imports_after("grader.api.app")
    assert "torch" not in loaded
    assert "fastapi" in loaded


def test_domain_and_rubric_import_no_web_db_or_queue_framework() -> None:
    loaded = _imports_after("grader.rubric.engine")
    assert not {"fastapi", "sqlalchemy", "celery"} & loaded


def test_the_students_client_is_only_a_client_of_the_rest_api() -> None:
    loaded = _imports_after("grader.client")
    assert not {"fastapi", "sqlalchemy", "celery", "torch"} & loaded
    assert not {name for name in loaded if name.startswith(("grader.api", "grader.services", "grader.db", "worker"))}


def _import_graph() -> dict[str, set[str]]:
    """Every module of `grader` and `worker` → the modules of both it imports, at the top or inside a function."""
    modules: dict[str, Path] = {}
    for package in ("grader", "worker"):
        for path in (REPO_ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(filter(None, (known(alias.name) for alias in node.names)))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*parent, *([node.module] if node.module else [])])
                for alias in node.names:
                    found = known(f"{base}.{alias.name}") if f"{base}.{alias.name}" in modules else known(base)
                    if found:
                        targets.add(found)
        graph[module] = targets - {module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


CORE = (
    "grader.answers",
    "grader.checks",
    "grader.rubric",
    "grader.evaluation",
    "grader.sandbox",
    "grader.domain",
    "grader.grading",
    "grader.settings",
    "grader.errors",
    "grader.storage",
)
ABOVE_CORE = ("grader.db", "grader.services", "grader.api", "grader.web", "grader.cli", "grader.runner", "worker")


def _violations(graph: dict[str, set[str]], importers: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if module.startswith(importers)
        for target in targets
        if any(target == name or target.startswith(f"{name}.") for name in forbidden)
    )


def test_no_import_cycles_even_through_imports_inside_functions() -> None:
    assert _cycles(_import_graph()) == []


def test_grader_never_imports_the_worker_package() -> None:
    assert _violations(_import_graph(), ("grader",), ("worker",)) == []


def test_the_core_imports_nothing_above_it() -> None:
    assert _violations(_import_graph(), CORE, ABOVE_CORE) == []


def test_services_import_no_web_layer() -> None:
    assert _violations(_import_graph(), ("grader.services",), ("grader.api", "grader.web", "grader.cli")) == []


def test_the_sandbox_is_only_the_mechanism() -> None:
    """It runs untrusted programs under limits; what they compute (Q1, CIFAR-10, checkpoints) is evaluation's."""
    q1 = ("grader.evaluation", "grader.checks", "grader.rubric", "grader.answers", "grader.grading")
    assert _violations(_import_graph(), ("grader.sandbox",), q1) == []


def test_the_graph_sees_imports_inside_functions_and_relative_ones() -> None:
    """The checks above would pass on an empty graph: it must hold edges that are known to exist."""
    graph = _import_graph()
    assert "grader.queues" in graph["grader.api.deps"]  # top-level
    assert "grader.checks" in graph["grader.rubric.engine"]  # imported inside a function
    assert "grader.sandbox.archive" in graph["grader.services.submissions"]  # inside a function
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
