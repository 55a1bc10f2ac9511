"""Every recorded history replays on today's workflow code, or a deploy would break running jobs.

A Herald job can wait hours on a durable timer; the worker that wakes it up runs whatever code
was deployed since. Replaying histories recorded by earlier versions (tests/replay/histories/vN,
see README.md there) fails on any nondeterminism: a command added, removed, reordered or changed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from common.settings import Settings
from common.temporal import data_converter
from tests.support.temporal import ENCRYPTION_KEY
from worker import WORKFLOWS

HISTORIES_DIR = Path(__file__).parent / "histories"
HISTORIES = sorted(HISTORIES_DIR.glob("**/*.json"))


def load(path: Path) -> WorkflowHistory:
    data = json.loads(path.read_text())
    # recording.py writes the workflow id into the start event (to_json() itself leaves it out).
    workflow_id = data["events"][0]["workflowExecutionStartedEventAttributes"]["workflowId"]
    return WorkflowHistory.from_json(workflow_id, data)


def test_there_are_histories_to_replay():
    assert HISTORIES, f"no recorded histories under {HISTORIES_DIR}"


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.relative_to(HISTORIES_DIR).with_suffix("").as_posix())
async def test_history_replays_on_current_code(path: Path):
    # The client's converter: histories recorded before the codec pass through it as they are. The SDK's
    # full sandbox (its default runner; the workers run without one, common/temporal.py): Herald's modules
    # are imported into it, so a workflow that reads the clock, randomness or the environment fails here.
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=data_converter(Settings(encryption_key=ENCRYPTION_KEY)),
        workflow_runner=SandboxedWorkflowRunner(),
    )
    # Raises on a nondeterminism error or any other failed workflow task.
    result = await replayer.replay_workflow(load(path))
    assert result.replay_failure is None
