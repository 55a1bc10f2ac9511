"""Workflow code must replay the same way every time, and so must everything it calls.

Herald's workers run workflows outside the SDK's sandbox for speed (common/temporal.py WORKFLOW_RUNNER),
so nothing stops workflow code from reading the clock, randomness, the environment or the network
as it runs. This test does, by reading the source (and the replay tests, in the full sandbox):
workflows use `workflow.now()`, `workflow.random()`, `workflow.uuid4()` and `workflow.sleep()`
instead, and reach the outside world only through activities.

What it reads:
- every module in workflows/, whole (calls and imports);
- in common/ and activities/, every function, class and module-level value that workflow code can
  reach: what a workflow module names (called, instantiated or passed on), then, transitively,
  what those name. A class is read whole (its methods, field defaults and `__post_init__` run
  in the workflow when its instances are built, decoded or used), and the classes named in its
  annotations with it (`spec.retry.first_wait()` runs RetrySpec's method).
- Not read: activity classes (a class with an `@activity.defn` method): workflow code only names
  their methods for Temporal to run in an activity, outside the workflow. Module-level code the
  workflow code does not read: with the modules passed through, it runs once per worker process at
  import, outside any run, so it cannot make a replay differ unless a workflow reads what it made,
  and what a workflow reads is read here.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "workflows"
PROJECT_PACKAGES = ("workflows", "common", "activities")
FORBIDDEN_CALLS = {
    "datetime.now",
    "datetime.utcnow",
    "datetime.today",
    "date.today",
    "time.time",
    "time.time_ns",
    "time.monotonic",
    "time.perf_counter",
    "time.sleep",
    "asyncio.sleep",
    "random.random",
    "random.randint",
    "random.choice",
    "uuid.uuid4",
    "uuid.uuid1",
    "os.urandom",
    "os.getenv",
    "secrets.token_hex",
    "secrets.token_bytes",
    "secrets.token_urlsafe",
    "open",
    "print",
    "input",
}
FORBIDDEN_IMPORTS = {"random", "uuid", "socket", "httpx", "aiosmtplib", "requests", "subprocess", "threading"}

# Reachable code that may read the clock, with why that cannot reach a workflow's commands. Keyed by
# (the function, qualified by its module, and the call).
ALLOWED = {
    (
        "common.jobs.start_options",
        "datetime.now",
    ): "the wall clock only when the caller gives no `now` (the API's and a schedule's starts); workflow "
    "code always passes `now=workflow.now()` (test_workflow_code_passes_its_own_clock_to_start_options)"
}


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def call_problems(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for each clock, randomness, environment or I/O call under `tree`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and dotted(node.func) in FORBIDDEN_CALLS:
            found.append((node.lineno, dotted(node.func)))
        elif isinstance(node, ast.Attribute) and dotted(node) == "os.environ":
            found.append((node.lineno, "os.environ"))
    return found


def problems(source: str) -> list[str]:
    """A workflow module's problems: its calls, and the imports workflow code never needs."""
    tree = ast.parse(source)
    found = [
        f"line {line}: calls {what}()" if what != "os.environ" else f"line {line}: reads os.environ"
        for line, what in call_problems(tree)
    ]
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            found += [
                f"line {node.lineno}: imports {name}" for name in names if name.split(".")[0] in FORBIDDEN_IMPORTS
            ]
    return found


# ---- what workflow code reaches ----------------------------------------------------------------
@dataclass
class Module:
    name: str
    root: Path
    tree: ast.Module
    # Top-level functions, classes and assigned names → their node.
    defs: dict[str, ast.AST] = field(default_factory=dict)
    # Local name → the project module ("common.models") or module attribute ("common.models.JobSpec").
    imports: dict[str, str] = field(default_factory=dict)


@cache
def load(name: str, root: Path = ROOT) -> Module | None:
    path = root / (name.replace(".", "/") + ".py")
    if not name.startswith(PROJECT_PACKAGES) or not path.exists():
        return None
    module = Module(name, root, ast.parse(path.read_text()))
    for node in module.tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            module.defs[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            module.defs.update({t.id: node for t in targets if isinstance(t, ast.Name)})
    for node in ast.walk(module.tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PROJECT_PACKAGES):
            module.imports.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
        elif isinstance(node, ast.Import):
            module.imports.update(
                {a.asname or a.name: a.name for a in node.names if a.name.startswith(PROJECT_PACKAGES)}
            )
    return module


def resolve(module: Module, name: str) -> tuple[Module, str] | None:
    """The project definition a name in `module` stands for (following re-exports)."""
    if name in module.defs and name not in module.imports:
        return module, name
    target = module.imports.get(name)
    if target is None:
        return None
    owner, _, attr = target.rpartition(".")
    source = load(owner, module.root)
    return resolve(source, attr) if source else None


def references(module: Module, tree: ast.AST) -> set[tuple[str, str]]:
    """(module, name) of every project definition named under `tree`."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            hit = resolve(module, node.id)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and (source := load(module.imports.get(node.value.id, ""), module.root))
        ):
            hit = resolve(source, node.attr)  # `import common.x as x`; x.name
        else:
            continue
        if hit:
            found.add((hit[0].name, hit[1]))
    return found


def is_activity_class(node: ast.AST) -> bool:
    return isinstance(node, ast.ClassDef) and any(
        dotted(d.func if isinstance(d, ast.Call) else d) == "activity.defn"
        for item in node.body
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
        for d in item.decorator_list
    )


def functions_in(node: ast.AST, prefix: str) -> list[tuple[str, ast.AST]]:
    """(qualified name, node) of a definition and, for a class, of each method (the class body itself
    under the class's name)."""
    if not isinstance(node, ast.ClassDef):
        return [(prefix, node)]
    methods = [item for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))]
    body = ast.Module(body=[item for item in node.body if item not in methods], type_ignores=[])
    return [(prefix, body)] + [(f"{prefix}.{m.name}", m) for m in methods]


@cache
def reached(root: Path = ROOT) -> dict[str, ast.AST]:
    """Qualified name → node of every definition outside workflows/ that workflow code can reach."""
    todo = set()
    for path in sorted((root / "workflows").glob("*.py")):
        module = load(f"workflows.{path.stem}", root)
        assert module is not None
        todo |= references(module, module.tree)
    seen: dict[str, ast.AST] = {}
    while todo:
        module_name, name = todo.pop()
        qualified = f"{module_name}.{name}"
        module = load(module_name, root)
        if qualified in seen or module is None or module_name.startswith("workflows."):
            continue  # workflow modules are read whole
        node = module.defs[name]
        if is_activity_class(node):
            continue
        seen[qualified] = node
        todo |= references(module, node)
    return seen


def reachable_problems(root: Path = ROOT) -> list[str]:
    found = []
    for qualified, node in sorted(reached(root).items()):
        for function, part in functions_in(node, qualified):
            for line, what in call_problems(part):
                if (function, what) not in ALLOWED:
                    module = qualified.rsplit(".", 1)[0].replace(".", "/")
                    found.append(f"{module}.py:{line}: {function} calls {what}")
    return found


# ---- the tests ---------------------------------------------------------------------------------
@pytest.mark.parametrize("module", sorted(WORKFLOWS.glob("*.py")), ids=lambda p: p.name)
def test_workflow_modules_make_no_nondeterministic_calls(module: Path):
    assert problems(module.read_text()) == []


def test_what_workflow_code_calls_in_common_and_activities_makes_no_nondeterministic_calls():
    assert reachable_problems() == []


def test_the_reach_covers_the_modules_workflow_code_imports():
    modules = {name.rsplit(".", 1)[0] for name in reached()}
    # Among them: the job start a `then` uses, the models, logs, metrics, the batch's activity picker.
    assert {
        "common.jobs",
        "common.models",
        "common.logs",
        "common.metrics",
        "common.idempotency",
        "common.failures",
        "common.vocabulary",
        "activities.batch",
    } <= modules, modules
    # Followed through calls and annotations: RetrySpec (spec.retry), the summaries start_options writes.
    assert {
        "common.models.RetrySpec",
        "common.models.JobSpec",
        "common.jobs.start_options",
        "common.summaries.job_summary",
    } <= set(reached())
    # An activity class's methods run in an activity, not in the workflow.
    assert "activities.email.EmailActivities" not in reached()


def test_every_allowance_is_still_needed():
    flagged = {
        (function, what)
        for qualified, node in reached().items()
        for function, part in functions_in(node, qualified)
        for _, what in call_problems(part)
    }
    assert set(ALLOWED) <= flagged, f"allowances for code that no longer needs them: {set(ALLOWED) - flagged}"


def test_workflow_code_passes_its_own_clock_to_start_options():
    for path in sorted(WORKFLOWS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and dotted(node.func).endswith("start_options"):
                now = [k.value for k in node.keywords if k.arg == "now"]
                assert now and dotted(getattr(now[0], "func", now[0])) == "workflow.now", (
                    f"{path.name}:{node.lineno}: start_options without now=workflow.now() reads the wall clock"
                )


@pytest.mark.parametrize(
    "snippet",
    [
        "from datetime import datetime\ndatetime.now()",
        "import time\ntime.time()",
        "import asyncio\nasyncio.sleep(1)",
        "import os\nos.environ['X']",
        "import random",
        "import httpx",
    ],
)
def test_the_check_catches_what_it_is_for(snippet: str):
    assert problems(snippet)


def test_the_reach_catches_what_workflow_code_calls(tmp_path: Path):
    files = {
        "workflows/wf.py": "from common.helpers import Stamped, stamp\nfrom activities.send import Sender\n"
        "async def run():\n    stamp(Stamped())\n    return Sender.send\n",
        "common/helpers.py": "import time\nfrom dataclasses import dataclass, field\nfrom datetime import datetime\n"
        "from common.more import deeper\n"
        "@dataclass\nclass Stamped:\n    at: float = field(default_factory=lambda: time.time())\n"
        "def stamp(x):\n    return deeper()\n"
        "def unused():\n    return datetime.now()\n",
        "common/more.py": "import os\ndef deeper():\n    return os.environ['X']\n",
        "activities/send.py": "from datetime import datetime\nfrom temporalio import activity\n"
        "class Sender:\n    @activity.defn\n    def send(self):\n        return datetime.now()\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert reachable_problems(tmp_path) == [
        "common/helpers.py:7: common.helpers.Stamped calls time.time",
        "common/more.py:3: common.more.deeper calls os.environ",
    ]
