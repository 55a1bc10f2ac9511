"""SMTP sessions kept open between a worker's emails (activities/email.py SmtpSessions), against the dev
SMTP sink (real SMTP): which connection each message went over, by its client port as the sink saw it."""

from __future__ import annotations

import asyncio
import time
import types
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from temporalio.exceptions import ApplicationError

import activities.email
from activities.email import EmailActivities
from common.models import EmailMessage
from devstack.smtp_sink import SmtpSink, read_outbox
from tests.support.temporal import free_port, local_settings


class Connections:
    """The sink's client port for every message it accepted; `drop` closes each connection after its
    message; `closing` answers the next MAIL on a connection that already carried a message with 421
    and closes it (a server ending a session it kept idle), in `closing_at` ("MAIL" or "RCPT")."""

    def __init__(self, sink: SmtpSink) -> None:
        self.ports: list[int] = []
        self.drop = False
        self.closing = False
        self.closing_at = "MAIL"
        self.refused_with_421 = 0
        store = sink.handler.handle_DATA
        rcpt = sink.handler.handle_RCPT

        def closing(server: SMTP, session: Session) -> str | None:
            if self.closing and session.peer[1] in self.ports:
                self.refused_with_421 += 1
                asyncio.get_running_loop().call_soon(server.transport.close)
                return "421 4.4.2 idle too long, closing connection"
            return None

        async def handle_mail(
            server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
        ) -> str:
            if self.closing_at == "MAIL" and (answer := closing(server, session)):
                return answer
            envelope.mail_from = address  # as aiosmtpd does without a handler of its own
            envelope.mail_options.extend(options)
            return "250 OK"

        async def handle_rcpt(
            server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
        ) -> str:
            if self.closing_at == "RCPT" and (answer := closing(server, session)):
                return answer
            return await rcpt(server, session, envelope, address, options)

        async def handle_data(server: SMTP, session: Session, envelope: Envelope) -> str:
            self.ports.append(session.peer[1])
            if self.drop:
                asyncio.get_running_loop().call_soon(server.transport.close)
            return await store(server, session, envelope)

        sink.handler.handle_DATA = handle_data  # type: ignore[method-assign]
        sink.handler.handle_MAIL = handle_mail  # type: ignore[attr-defined]
        sink.handler.handle_RCPT = handle_rcpt  # type: ignore[method-assign]

    def runs(self) -> list[int]:
        """How many messages went over each connection, in order."""
        counts: list[int] = []
        for i, port in enumerate(self.ports):
            if i and port == self.ports[i - 1]:
                counts[-1] += 1
            else:
                counts.append(1)
        return counts


@pytest.fixture
def sink(tmp_path):
    with SmtpSink(tmp_path / "outbox", port=free_port()) as sink:
        yield sink


@pytest.fixture
def clock(monkeypatch):
    """The sessions' monotonic clock, moved by hand."""
    now = types.SimpleNamespace(t=1000.0)
    monkeypatch.setattr(activities.email, "time", types.SimpleNamespace(monotonic=lambda: now.t, time=time.time))
    return now


def channel(tmp_path, sink: SmtpSink, **changes: Any) -> EmailActivities:
    return EmailActivities(local_settings(tmp_path, smtp_port=sink.port, **changes))


def message(n: int, to: str = "user@example.com") -> EmailMessage:
    return EmailMessage(to=to, subject=f"Message {n}", body=f"Body {n}", idempotency_key=f"email-{n}")


async def send(email: EmailActivities, *numbers: int) -> None:
    for n in numbers:
        receipt = await email.deliver(message(n))
        assert receipt.provider_id == f"<email-{n}@herald>"


def subjects(sink: SmtpSink) -> list[str]:
    return sorted(str(m["Subject"]) for m in read_outbox(sink.outbox))


async def test_one_workers_emails_go_over_one_connection(tmp_path, sink, clock):
    seen = Connections(sink)
    await send(channel(tmp_path, sink), 1, 2, 3, 4, 5)
    assert seen.runs() == [5]
    assert subjects(sink) == [f"Message {n}" for n in range(1, 6)]


async def test_emails_sent_at_once_each_take_a_session_and_later_ones_reuse_them(tmp_path, sink, clock):
    seen = Connections(sink)
    email = channel(tmp_path, sink)
    await asyncio.gather(*(send(email, n) for n in range(1, 5)))
    assert len(set(seen.ports)) == 4
    await send(email, 5, 6, 7, 8)
    assert len(set(seen.ports)) == 4
    assert len(subjects(sink)) == 8


async def test_a_session_the_server_closed_is_replaced_and_no_message_is_lost(tmp_path, sink, clock):
    seen = Connections(sink)
    seen.drop = True
    email = channel(tmp_path, sink)
    for n in range(1, 4):
        await send(email, n)
        await asyncio.sleep(0.05)  # the sink's close reaching the client (a real socket)
    assert seen.runs() == [1, 1, 1]
    assert subjects(sink) == ["Message 1", "Message 2", "Message 3"]


@pytest.mark.parametrize("at", ["MAIL", "RCPT"])
async def test_a_session_the_server_is_closing_with_421_is_replaced_and_no_message_is_lost(tmp_path, sink, clock, at):
    seen = Connections(sink)
    email = channel(tmp_path, sink)
    await send(email, 1)
    seen.closing, seen.closing_at = True, at
    await send(email, 2)  # answered 421 on the kept session: sent on a new one, not a failed attempt
    assert seen.refused_with_421 == 1
    assert seen.runs() == [1, 1]
    assert subjects(sink) == ["Message 1", "Message 2"]


async def test_a_refused_recipient_leaves_the_session_in_use(tmp_path, sink, clock):
    seen = Connections(sink)
    email = channel(tmp_path, sink)
    await send(email, 1)
    with pytest.raises(ApplicationError) as refused:
        await email.deliver(message(2, to="nobody@reject.test"))
    assert refused.value.non_retryable and "550" in str(refused.value)
    await send(email, 3)
    assert seen.runs() == [2]
    assert subjects(sink) == ["Message 1", "Message 3"]


async def test_a_session_idle_longer_than_the_setting_is_not_reused(tmp_path, sink, clock):
    seen = Connections(sink)
    email = channel(tmp_path, sink, smtp_session_idle_seconds=30)
    await send(email, 1)
    clock.t += 29
    await send(email, 2)
    clock.t += 31
    await send(email, 3)
    assert seen.runs() == [2, 1]


async def test_a_session_carries_at_most_the_settings_messages(tmp_path, sink, clock):
    seen = Connections(sink)
    await send(channel(tmp_path, sink, smtp_session_messages=2), 1, 2, 3, 4, 5)
    assert seen.runs() == [2, 2, 1]


async def test_idle_seconds_zero_is_a_connection_per_email(tmp_path, sink, clock):
    seen = Connections(sink)
    await send(channel(tmp_path, sink, smtp_session_idle_seconds=0), 1, 2, 3)
    assert seen.runs() == [1, 1, 1]
