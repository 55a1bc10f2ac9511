"""Herald's logs: one JSON object per line, on stderr, and one line per stage of a job.

Stages (`log_event`): `job.added` (API), `attempt.picked` / `attempt.failed` / `attempt.succeeded`
(activities), `job.completed` / `job.failed` / `job.cancelled` (workflow), `dead_lettered`,
`redriven`, `discarded` (DLQ). An event line is `{"ts", "level", "logger", "event", ...fields}`;
every other line (uvicorn, the Temporal SDK, Herald's own messages) is
`{"ts", "level", "logger", "message"}`, with `exc` when there is a traceback.

Secrets never belong in a log line: nothing logs settings, headers or credentials, and as a last
guard the formatter masks every secret of the settings in use (`redact_secrets_of`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from common.settings import Settings

logger = logging.getLogger("herald")

# The record attribute that carries an event's fields (log_event's `extra`).
EVENT_ATTRIBUTE = "herald_event"
# What the Temporal SDK's loggers add as `extra`: the workflow's or activity's identity.
TEMPORAL_CONTEXT = ("temporal_workflow", "temporal_activity")
REDACTED = "[redacted]"
# Settings whose values are secrets: client keys, tokens, passwords, signing and encryption keys.
SECRET_SETTING = re.compile(r"(^|_)(keys?|token|password|secret)$")
# Shorter values are not masked (they would mask ordinary words); no real secret is this short.
MIN_SECRET_LENGTH = 6

_secrets: set[str] = set()
# What redact looks for: each secret as written and JSON-escaped, longest first (so a secret that
# contains another is masked whole); made again only when a secret is added, not per line.
_masked: tuple[str, ...] = ()


def log_event(
    event: str, *, log: logging.Logger | logging.LoggerAdapter[logging.Logger] = logger, **fields: Any
) -> None:
    """One stage of a job, as one JSON line. Inside a workflow pass `log=workflow.logger`
    (silent during replay)."""
    payload = {"event": event, **fields}
    # The message is the same JSON, for handlers that do not use JsonFormatter (pytest's caplog);
    # written only if such a handler asks for it (JsonFormatter reads the fields).
    log.info(_EventMessage(payload), extra={EVENT_ATTRIBUTE: payload})


class _EventMessage:
    __slots__ = ("payload",)

    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload

    def __str__(self) -> str:
        return _dumps(self.payload)


class JsonFormatter(logging.Formatter):
    """A record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        event = getattr(record, EVENT_ATTRIBUTE, None)
        if isinstance(event, dict):
            line.update((k, v) for k, v in event.items() if k not in ("ts", "level", "logger"))
        else:
            line["message"] = record.getMessage()
            for name in TEMPORAL_CONTEXT:
                context = getattr(record, name, None)
                if isinstance(context, dict):
                    line[name.removeprefix("temporal_")] = context
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return redact(_dumps(line))


def configure_logging(level: int = logging.INFO, settings: Settings | None = None) -> None:
    """JSON lines on stderr for every logger of the process (Herald's, uvicorn's, the SDK's)."""
    if settings is not None:
        redact_secrets_of(settings)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # One line per request to an SMS gateway or webhook receiver is noise, and a client's webhook
    # URL may carry a token of its own in the query string.
    logging.getLogger("httpx").setLevel(logging.WARNING)


# ---- secrets ---------------------------------------------------------------------------------
def secret_values(settings: Settings) -> set[str]:
    """The secrets among the settings' values (every setting named *_key(s), *_token, *_password,
    *_secret), each of several comma- or space-separated ones on its own."""
    found: set[str] = set()
    for name in type(settings).model_fields:
        if not SECRET_SETTING.search(name):
            continue
        value = getattr(settings, name, None)
        values = value if isinstance(value, (list, tuple, set)) else [value]
        for item in values:
            if item is None:
                continue
            text = item.get_secret_value() if hasattr(item, "get_secret_value") else str(item)
            for part in re.split(r"[\s,]+", text):
                found.add(part)
                if part.startswith("whsec_"):
                    found.add(part.removeprefix("whsec_"))
                if ":" in part:  # an encryption key given as ID:BASE64: the key itself
                    found.add(part.rpartition(":")[2])
                if "=" in part.rstrip("="):  # a client key given as TENANT=KEY: the key itself
                    found.add(part.partition("=")[2])
    return {s for s in found if len(s) >= MIN_SECRET_LENGTH}


def redact_secrets_of(settings: Settings) -> None:
    """From now on, mask these settings' secrets wherever JsonFormatter writes a line."""
    add_secrets(secret_values(settings))


def add_secrets(values: Iterable[str]) -> None:
    global _masked
    _secrets.update(v for v in values if len(v) >= MIN_SECRET_LENGTH)
    forms = {form for secret in _secrets for form in (secret, json.dumps(secret, ensure_ascii=False)[1:-1])}
    _masked = tuple(sorted(forms, key=len, reverse=True))


def redact(text: str) -> str:
    for form in _masked:
        if form in text:
            text = text.replace(form, REDACTED)
    return text


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, default=str, separators=(",", ":"), ensure_ascii=False)
