"""api/ is laid out by capability (README, Layout): no import runs in a circle, between modules or
between the capabilities' packages, and api/core/ (the plumbing) imports no capability."""

from __future__ import annotations

import ast
import importlib
import inspect
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from fastapi.routing import APIRoute

API = Path(__file__).resolve().parents[2] / "api"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(API.rglob("*.py")):
        parts = path.relative_to(API.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The api modules `name` imports, wherever in it (a function's own imports count too)."""
    imported: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            imported.add(base)
            imported |= {f"{base}.{alias.name}" for alias in node.names}
    return {i for i in imported if i in modules and i != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _package(module: str) -> str:
    """api.jobs.routes → api.jobs; api.main → api.main (a module of api/ itself)."""
    return ".".join(module.split(".")[:2])


def test_every_api_module_imports() -> None:
    for name in _modules():
        importlib.import_module(name)


def test_no_module_imports_in_a_circle() -> None:
    graph = {name: deps - {name.rpartition(".")[0]} for name, deps in _graph().items()}
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        raise AssertionError(f"api modules import each other in a circle: {' -> '.join(exc.args[1])}") from None


def test_no_package_imports_in_a_circle() -> None:
    packages: dict[str, set[str]] = {}
    for name, deps in _graph().items():
        packages.setdefault(_package(name), set()).update(_package(d) for d in deps if _package(d) != _package(name))
    try:
        TopologicalSorter(packages).prepare()
    except CycleError as exc:
        raise AssertionError(f"api packages import each other in a circle: {' -> '.join(exc.args[1])}") from None


def test_the_plumbing_imports_no_capability() -> None:
    wrong = {
        (name, dep)
        for name, deps in _graph().items()
        if _package(name) == "api.core"
        for dep in deps
        if _package(dep) != "api.core"
    }
    assert not wrong, f"api/core/ must not import a capability: {sorted(wrong)}"


def test_no_route_runs_a_plain_function_in_a_worker_thread(app):
    """FastAPI runs a plain-function endpoint or dependency in a worker thread (a thread hop per request
    each, some 10% of the API's CPU in a profile): Herald's are coroutines, none of which blocks."""

    def plain(dependant) -> set[str]:
        call = dependant.call
        found = set()
        # A callable object (HTTPBearer) counts by its class's __call__.
        if call is not None and not (
            inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(type(call).__call__)
        ):
            found.add(f"{call.__module__}.{getattr(call, '__qualname__', type(call).__name__)}")
        for sub in dependant.dependencies:
            found |= plain(sub)
        return found

    def routes(container) -> list[APIRoute]:
        found = []
        for route in getattr(container, "routes", []):
            if isinstance(route, APIRoute):
                found.append(route)
            else:  # an included router
                found += routes(getattr(route, "original_router", None))
        return found

    every = routes(app.router)
    assert len(every) > 40
    assert set().union(*(plain(route.dependant) for route in every)) == set()
