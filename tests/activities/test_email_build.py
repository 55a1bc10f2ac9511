"""build_message takes set_content's output, the parsed From and the header classes from caches
(activities/email.py, for batches): the message must be byte for byte the one the email package
builds the plain way."""

from __future__ import annotations

from email.message import EmailMessage as MimeMessage
from email.utils import formatdate, parsedate_to_datetime

import pytest
from aiosmtplib.email import flatten_message

from activities.email import _EncodedSubject, build_message, envelope_recipients, message_id
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
# Stored as given (a plain address) or parsed (the rest): the same bytes either way.
RECIPIENTS = [
    "ada@example.com",
    "o'brien+news/2026=x@mail.sub-domain.example.co.uk",
    "UPPER.Case@EXAMPLE.COM",
    "u" * 60 + "@example.com",  # 72: still on one line
    "u" * 64 + "@example.com",  # 76: the header folds, so it is parsed
    "ünï@exämple.com",
    "a..b@example.com",
    "Ada Lovelace <ada@example.com>",
]


def plain(settings: Settings, email: EmailMessage, date: str) -> bytes:
    return plain_message(settings, email, date).as_bytes()


def plain_message(settings: Settings, email: EmailMessage, date: str) -> MimeMessage:
    mime = MimeMessage()
    mime["From"] = settings.email_from
    mime["To"] = email.to
    mime["Subject"] = _EncodedSubject(email.subject) if "=?" in email.subject else email.subject
    mime["Date"] = date
    mime["Message-ID"] = message_id(email.idempotency_key)
    mime.set_content(email.body)
    return mime


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("subject", SUBJECTS)
def test_the_cached_build_is_the_plain_build(body, subject):
    settings = Settings(email_from="Herald Ünï <herald@localhost>")
    email = EmailMessage(to="ada@example.com", subject=subject, body=body, idempotency_key="batch-x-1")
    for _ in range(2):  # the second time from the caches
        built = build_message(settings, email)
        assert built.as_bytes() == plain(settings, email, built["Date"])
        # As aiosmtplib writes it for SMTP (email.policy.SMTP, SMTPUTF8), its headers' folds kept.
        for utf8, cte_type in ((False, "8bit"), (True, "8bit"), (False, "7bit")):
            expected = flatten_message(plain_message(settings, email, built["Date"]), utf8=utf8, cte_type=cte_type)
            assert flatten_message(built, utf8=utf8, cte_type=cte_type) == expected


@pytest.mark.parametrize("to", RECIPIENTS)
def test_a_recipient_stored_as_given_is_written_as_parsed(to):
    settings = Settings()
    email = EmailMessage(to=to, subject="Hi", body="Hello\n", idempotency_key="batch-x-" + "k" * 80)
    built = build_message(settings, email)
    reference = plain_message(settings, email, built["Date"])
    assert built.as_bytes() == reference.as_bytes()
    for utf8, cte_type in ((False, "8bit"), (True, "8bit"), (False, "7bit")):
        assert flatten_message(built, utf8=utf8, cte_type=cte_type) == flatten_message(
            reference, utf8=utf8, cte_type=cte_type
        )
    assert envelope_recipients(built) == [address.addr_spec for address in reference["To"].addresses]
    assert str(built["To"]) == str(reference["To"])


def test_the_date_is_the_second_the_message_was_built_in(monkeypatch):
    import activities.email

    settings = Settings()
    email = EmailMessage(to="ada@example.com", subject="Hi", body="Hello", idempotency_key="email-1")
    for now in (1_800_000_000.2, 1_800_000_000.9, 1_800_000_001.0, 1_800_003_600.5):
        monkeypatch.setattr(activities.email.time, "time", lambda now=now: now)
        built = build_message(settings, email)
        assert parsedate_to_datetime(built["Date"]).timestamp() == int(now)
        assert built["Date"] == formatdate(now, localtime=False)
