"""Idempotency-Key: what the API (api/core/idempotency.py) and the key's workflow
(workflows/idempotency.py) tell each other.

Each (tenant or admin token, Idempotency-Key) pair is one small Temporal workflow, `idem-<digest>`: it holds
the first request's fingerprint and, once that request has been answered, its answer, for
HERALD_IDEMPOTENCY_KEEP_HOURS. Its id is a digest, so neither the key nor the credential shows
in Temporal; the answer itself is a payload, encrypted by the codec like every other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

ID_PREFIX = "idem-"
# The ids of the workflow's update and signal (pinned: tests/replay/test_names.py).
CLAIM_UPDATE = "claim"
COMPLETE_SIGNAL = "complete"


def key_workflow_id(credential: str, key: str) -> str:
    """The key's workflow id: scoped to the credential (a client key, or the admin token)."""
    digest = hashlib.sha256(f"{credential}\n{key}".encode()).hexdigest()
    return f"{ID_PREFIX}{digest}"


def job_seed(credential: str, key: str, key_run_id: str) -> str:
    """What the jobs a keyed request creates are named after (`email-<seed>`, `batch-<seed>`: 20 hex
    digits, as in every job id): a retry of the request finds the job its first try started, even when
    that try's answer was lost. The key's run is in it, so a key used again after it expired (a new
    run) names new jobs."""
    return hashlib.sha256(f"{credential}\n{key}\n{key_run_id}".encode()).hexdigest()[:20]


@dataclass
class StoredAnswer:
    """An HTTP answer as it is replayed: status, headers (without Content-Length), body."""

    status: int
    headers: list[list[str]] = field(default_factory=list)
    body: str = ""  # the body's bytes as latin-1 text: any bytes, and plain JSON stays readable


@dataclass
class KeyState:
    """What a key's workflow holds (and carries over a continue-as-new)."""

    fingerprint: str | None = None
    # The request that holds the key (between its claim and its answer) and until when.
    holder: str | None = None
    lease_until: str | None = None
    answer: StoredAnswer | None = None


@dataclass
class KeyStart:
    """The key's workflow input: it lives `keep_s` from its first start (or until `until`)."""

    keep_s: float
    until: str | None = None
    state: KeyState | None = None


@dataclass
class Claim:
    """One request under the key: its fingerprint (method, path, body), an id of its own, and how
    long it may hold the key before another request with the same fingerprint takes over."""

    fingerprint: str
    request_id: str
    lease_s: float


@dataclass
class ClaimOutcome:
    # proceed: run the request and then complete; replay: answer `answer`; conflict: 409.
    outcome: Literal["proceed", "replay", "conflict"]
    answer: StoredAnswer | None = None


@dataclass
class Completion:
    """The holder's answer (None: the answer is not kept, the key is free again, e.g. after a 503)."""

    request_id: str
    answer: StoredAnswer | None = None
