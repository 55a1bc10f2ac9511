"""Workflow code must replay the same way every time.

Herald's modules are passed through the workflow sandbox for speed (worker.WORKFLOW_RUNNER), so
the sandbox no longer stops a workflow module from reading the clock, randomness, the
environment or the network. This test does, by reading the source: workflows use
`workflow.now()`, `workflow.random()`, `workflow.uuid4()` and `workflow.sleep()` instead, and
reach the outside world only through activities.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
FORBIDDEN_CALLS = {
    "datetime.now", "datetime.utcnow", "datetime.today", "date.today", "time.time", "time.monotonic",
    "time.sleep", "asyncio.sleep", "random.random", "random.randint", "random.choice", "uuid.uuid4",
    "uuid.uuid1", "os.getenv", "open", "print", "input",
}
FORBIDDEN_IMPORTS = {"random", "uuid", "socket", "httpx", "aiosmtplib", "requests", "subprocess", "threading"}


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def problems(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and dotted(node.func) in FORBIDDEN_CALLS:
            found.append(f"line {node.lineno}: calls {dotted(node.func)}()")
        elif isinstance(node, ast.Attribute) and dotted(node) == "os.environ":
            found.append(f"line {node.lineno}: reads os.environ")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            for name in names:
                if name.split(".")[0] in FORBIDDEN_IMPORTS:
                    found.append(f"line {node.lineno}: imports {name}")
    return found


@pytest.mark.parametrize("module", sorted(WORKFLOWS.glob("*.py")), ids=lambda p: p.name)
def test_workflow_modules_make_no_nondeterministic_calls(module: Path):
    assert problems(module.read_text()) == []


@pytest.mark.parametrize("snippet", [
    "from datetime import datetime\ndatetime.now()",
    "import time\ntime.time()",
    "import asyncio\nasyncio.sleep(1)",
    "import os\nos.environ['X']",
    "import random",
    "import httpx",
])
def test_the_check_catches_what_it_is_for(snippet: str):
    assert problems(snippet)
