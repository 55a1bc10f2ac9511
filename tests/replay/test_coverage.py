"""Every workflow type the worker runs has recorded histories that test_replay.py replays.

A type without one could change its commands and no test would notice until a deploy strands its
open runs. The types are the worker's (worker.WORKFLOWS, which tests/replay/test_names.py pins),
and also every `@workflow.defn` in workflows/, so a new one is caught before it is registered.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from temporalio import workflow

from worker import WORKFLOWS

ROOT = Path(__file__).resolve().parents[2]
HISTORIES = Path(__file__).parent / "histories"


def defined_types() -> set[str]:
    """The `name=` (or the class name) of every class decorated `@workflow.defn` in workflows/."""
    names = set()
    for path in (ROOT / "workflows").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            for decorator in node.decorator_list:
                call = decorator if isinstance(decorator, ast.Call) else None
                target = call.func if call else decorator
                if isinstance(target, ast.Attribute) and target.attr == "defn":
                    pinned = [
                        k.value.value
                        for k in (call.keywords if call else [])
                        if k.arg == "name" and isinstance(k.value, ast.Constant)
                    ]
                    names.add(pinned[0] if pinned else node.name)
    return names


def recorded_types() -> dict[str, list[str]]:
    types: dict[str, list[str]] = {}
    for path in sorted(HISTORIES.glob("**/*.json")):
        started = json.loads(path.read_text())["events"][0]["workflowExecutionStartedEventAttributes"]
        types.setdefault(started["workflowType"]["name"], []).append(path.relative_to(HISTORIES).as_posix())
    return types


def test_the_worker_registers_every_defined_workflow():
    registered = {workflow._Definition.must_from_class(cls).name for cls in WORKFLOWS}
    assert defined_types() == registered


def test_every_workflow_type_has_a_recorded_history():
    missing = sorted(defined_types() - set(recorded_types()))
    assert not missing, (
        f"no recorded history in {HISTORIES.relative_to(ROOT)} for {missing}: record one (tests/replay/README.md)"
    )
