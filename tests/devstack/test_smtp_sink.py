from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib
import pytest

from devstack.smtp_sink import SmtpSink, read_outbox


@pytest.fixture
def sink(tmp_path, free_port):
    with SmtpSink(tmp_path / "outbox", port=free_port()) as sink:
        yield sink


def message(to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Herald <herald@localhost>"
    msg["To"] = to
    msg["Subject"] = "Your order — confirmed ✓"
    msg["Message-ID"] = make_msgid(domain="herald.test")
    msg.set_content("Hello Alice,\n\nOrder 42 is confirmed.\n")
    return msg


async def send(sink: SmtpSink, msg: EmailMessage, **kwargs):
    return await aiosmtplib.send(msg, hostname=sink.host, port=sink.port, timeout=10, **kwargs)


async def test_accepted_message_is_saved_as_eml(sink):
    first, second = message("alice@example.com"), message("bob@example.com")
    errors, reply = await send(sink, first)
    assert errors == {} and reply.startswith("OK")
    await send(sink, second)

    saved = read_outbox(sink.outbox)
    assert [m["Message-ID"] for m in saved] == [first["Message-ID"], second["Message-ID"]]
    assert saved[0]["Subject"] == "Your order — confirmed ✓"
    assert saved[0].get_content() == "Hello Alice,\n\nOrder 42 is confirmed.\n"
    assert saved[0]["X-Envelope-To"] == "alice@example.com"
    assert len(list(sink.outbox.glob("*.eml"))) == 2


@pytest.mark.parametrize(
    ("to", "code", "reason"),
    [
        ("x@reject.test", 550, "5.1.1 mailbox unavailable"),  # permanently
        ("x@tempfail.test", 451, "4.3.0 try again later"),  # transiently
    ],
    ids=["reject", "tempfail"],
)
async def test_a_scripted_domain_is_refused(sink, to, code, reason):
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await send(sink, message(to))
    [error] = refused.value.recipients
    assert (error.code, error.message) == (code, reason)
    assert read_outbox(sink.outbox) == []


async def test_a_greylisted_address_is_refused_once_then_accepted(sink):
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await send(sink, message("grey@greylist.test"))
    [error] = refused.value.recipients
    assert (error.code, error.message) == (451, "4.7.1 greylisted, try again later")
    await send(sink, message("grey@greylist.test"))
    [saved] = read_outbox(sink.outbox)
    assert saved["X-Envelope-To"] == "grey@greylist.test"
    assert [address for _, address, _ in sink.handler.refusals] == ["grey@greylist.test"]


async def test_mixed_recipients_deliver_to_the_accepted_ones(sink):
    msg = message("ok@example.com")
    errors, _ = await send(sink, msg, recipients=["ok@example.com", "no@REJECT.test"])
    assert errors["no@REJECT.test"].code == 550
    [saved] = read_outbox(sink.outbox)
    assert saved["X-Envelope-To"] == "ok@example.com"


async def test_any_login_is_accepted(sink):
    errors, _ = await send(sink, message("alice@example.com"), username="u", password="p")
    assert errors == {}
    assert len(read_outbox(sink.outbox)) == 1
