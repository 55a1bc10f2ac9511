"""Herald's dev SMTP sink in a process of its own, telling the benchmark about every message.

`python -m bench.sink_proc '{"port": P, "outbox": DIR, "save": true}'`

This is devstack.smtp_sink.SmtpSink as `make run` starts it (aiosmtpd, the same controller
settings and recipient rules), with one change: after accepting a message it prints one JSON
line, {"t": arrival (Unix time), "subject": ..., "message_id": ...}, so the driver can count
deliveries per job and time them. With "save": false it only counts (no .eml file is written):
still the whole SMTP exchange, without the sink's disk work.

Prints {"event": "ready"} once listening; stops on EOF on stdin, SIGTERM or SIGINT.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from pathlib import Path

from devstack import smtp_sink

_HEADER = re.compile(rb"^(subject|message-id):[ \t]*(.*?)\r?$", re.IGNORECASE | re.MULTILINE)
_out_lock = threading.Lock()


def say(**fields: object) -> None:
    line = json.dumps(fields, separators=(",", ":")) + "\n"
    with _out_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def headers_of(content: bytes) -> dict[str, str]:
    head = content.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    return {m.group(1).decode().lower(): m.group(2).decode(errors="replace") for m in _HEADER.finditer(head)}


class _RecordingHandler(smtp_sink._OutboxHandler):
    """The real sink's handler (recipient rules, .eml files), reporting each accepted message."""

    save = True

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.save:
            answer = await super().handle_DATA(server, session, envelope)
        else:
            answer = "250 OK: message counted"
        h = headers_of(envelope.original_content or envelope.content or b"")
        say(t=time.time(), subject=h.get("subject", ""), message_id=h.get("message-id", ""))
        return answer


def main(config: dict) -> None:
    _RecordingHandler.save = bool(config.get("save", True))
    # SmtpSink.start() builds its controller around the module's handler class: the same server
    # settings as `make run`, with our handler in place of the plain one.
    smtp_sink._OutboxHandler = _RecordingHandler  # type: ignore[misc]
    sink = smtp_sink.SmtpSink(Path(config["outbox"]), "127.0.0.1", int(config["port"]))
    sink.start()
    stop = threading.Event()
    say(event="ready", port=sink.port, save=_RecordingHandler.save)

    def stop_at_eof() -> None:  # the driver closes our stdin when it is done (or gone)
        sys.stdin.read()
        stop.set()

    threading.Thread(target=stop_at_eof, daemon=True).start()
    smtp_sink.serve_until_stopped(sink, stop)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
