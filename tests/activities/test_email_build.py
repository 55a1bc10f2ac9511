"""build_message takes set_content's output, the parsed From and the header classes from caches
(activities/email.py, for batches): the message must be byte for byte the one the email package
builds the plain way."""

from __future__ import annotations

from email.message import EmailMessage as MimeMessage

import pytest

from activities.email import _EncodedSubject, build_message, message_id
from common.models import EmailMessage
from common.settings import Settings

BODIES = [
    "Hello\n",
    "ünïcødé body ✓\r\nline 2",
    "x" * 5000,
    "a\n" * 300 + "é",
    "line " * 400,
    "\t tab\n\n",
    "日本語のテキスト" * 50,
    "=?utf-8?q?x?=",
    ".",
]
SUBJECTS = ["Hi", "Ünïcode subject", "=?utf-8?q?hi?= there"]


def plain(settings: Settings, email: EmailMessage, date: str) -> bytes:
    mime = MimeMessage()
    mime["From"] = settings.email_from
    mime["To"] = email.to
    mime["Subject"] = _EncodedSubject(email.subject) if "=?" in email.subject else email.subject
    mime["Date"] = date
    mime["Message-ID"] = message_id(email.idempotency_key)
    mime.set_content(email.body)
    return mime.as_bytes()


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("subject", SUBJECTS)
def test_the_cached_build_is_the_plain_build(body, subject):
    settings = Settings(email_from="Herald Ünï <herald@localhost>")
    email = EmailMessage(to="ada@example.com", subject=subject, body=body, idempotency_key="batch-x-1")
    for _ in range(2):  # the second time from the caches
        built = build_message(settings, email)
        assert built.as_bytes() == plain(settings, email, built["Date"])
