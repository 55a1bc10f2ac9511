"""The patch registry (workflows/patches.py) is the list of patches: no more, no fewer, and true.

A `workflow.patched` id nobody wrote down is a branch nobody will retire; a listed id the code no
longer calls is a retirement done but not recorded. The ids are read from the source with `ast`,
so a literal (`workflow.patched("x")`) counts as much as a constant, wherever it is defined.
The histories each entry names are checked against the recorded files: a history that holds the
patch's marker is listed as needing the id, and one listed as taking the old branch lacks it.
"""

from __future__ import annotations

import ast
import base64
import json
from pathlib import Path

import pytest

from workflows.patches import PATCHES

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "workflows"
HISTORIES = Path(__file__).parent / "histories"
PATCH_CALLS = {"patched", "deprecate_patch"}


def _constants(tree: ast.Module) -> dict[str, str]:
    """The module-level `NAME = "string"` assignments of a module."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            found.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
    return found


def patch_ids(package: Path = WORKFLOWS) -> dict[str, list[str]]:
    """Each id passed to `workflow.patched`/`deprecate_patch` in the package → where (file:line)."""
    trees = {f"{package.name}.{path.stem}": ast.parse(path.read_text()) for path in sorted(package.glob("*.py"))}
    constants = {module: _constants(tree) for module, tree in trees.items()}
    used: dict[str, list[str]] = {}
    for module, tree in trees.items():
        # What a name means in this module: its own constants, then the constants it imports.
        names = dict(constants[module])
        aliases = {}
        for node in ast.walk(tree):
            for a in node.names if isinstance(node, (ast.Import, ast.ImportFrom)) else []:
                source = f"{node.module}.{a.name}" if isinstance(node, ast.ImportFrom) else a.name
                if isinstance(node, ast.ImportFrom) and a.name in constants.get(node.module or "", {}):
                    names[a.asname or a.name] = constants[node.module or ""][a.name]
                elif source in constants:
                    aliases[a.asname or a.name] = source
        for node in ast.walk(tree):
            func = node.func if isinstance(node, ast.Call) else None
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if name not in PATCH_CALLS:
                continue
            where = f"{module.replace('.', '/')}.py:{node.lineno}"
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                patch_id = arg.value
            elif isinstance(arg, ast.Name) and arg.id in names:
                patch_id = names[arg.id]
            elif (
                isinstance(arg, ast.Attribute)
                and isinstance(arg.value, ast.Name)
                and arg.attr in constants.get(aliases.get(arg.value.id, ""), {})
            ):
                patch_id = constants[aliases[arg.value.id]][arg.attr]
            else:
                raise AssertionError(f"{where}: a patch id must be a string literal or a string constant")
            used.setdefault(patch_id, []).append(where)
    return used


def markers(history: Path) -> set[str]:
    """The patch ids whose marker a recorded history holds."""
    found = set()
    for event in json.loads(history.read_text())["events"]:
        marker = event.get("markerRecordedEventAttributes")
        if marker and marker.get("markerName") == "core_patch":
            [payload] = marker["details"]["patch-data"]["payloads"]
            found.add(json.loads(base64.b64decode(payload["data"]))["id"])
    return found


def recorded() -> dict[str, set[str]]:
    return {
        path.relative_to(HISTORIES).with_suffix("").as_posix(): markers(path)
        for path in sorted(HISTORIES.glob("**/*.json"))
    }


def test_every_patch_the_workflows_use_is_in_the_registry():
    unlisted = {patch_id: where for patch_id, where in patch_ids().items() if patch_id not in PATCHES}
    assert not unlisted, f"patch ids missing from workflows/patches.py (docs/versioning.md): {unlisted}"


def test_every_patch_in_the_registry_is_used():
    unused = set(PATCHES) - set(patch_ids())
    assert not unused, f"workflows/patches.py lists patches no workflow calls any more (drop them): {unused}"


def test_the_registry_names_the_histories_that_hold_each_marker():
    histories = recorded()
    for patch in PATCHES.values():
        holding = sorted(name for name, ids in histories.items() if patch.id in ids)
        assert sorted(patch.marker_histories) == holding, f"{patch.id}: marker_histories should be {holding}"


def test_the_histories_said_to_take_an_old_branch_exist_and_lack_its_marker():
    histories = recorded()
    for patch in PATCHES.values():
        for name in patch.old_path_histories:
            assert name in histories, f"{patch.id}: no recorded history {name}"
            assert patch.id not in histories[name], f"{patch.id}: {name} holds the marker, so takes the new branch"


@pytest.mark.parametrize(
    "source",
    [
        'from temporalio import workflow\nworkflow.patched("made-up")',
        'from temporalio import workflow\nMADE_UP = "made-up"\nworkflow.deprecate_patch(MADE_UP)',
        'from temporalio.workflow import patched\nif patched("made-up"): pass',
    ],
)
def test_the_scan_finds_literals_and_constants(tmp_path: Path, source: str):
    package = tmp_path / "workflows"
    package.mkdir()
    (package / "some.py").write_text(source)
    assert set(patch_ids(package)) == {"made-up"}


def test_the_scan_follows_an_imported_constant(tmp_path: Path):
    package = tmp_path / "workflows"
    package.mkdir()
    (package / "ids.py").write_text('MADE_UP = "made-up"\n')
    (package / "a.py").write_text("from workflows.ids import MADE_UP\nworkflow.patched(MADE_UP)\n")
    (package / "b.py").write_text("from workflows import ids\nworkflow.patched(ids.MADE_UP)\n")
    assert patch_ids(package) == {"made-up": ["workflows/a.py:2", "workflows/b.py:2"]}
