"""Odd input: header injection, control characters, Unicode, over-long fields, deep and huge JSON.

What Herald sends carries client text in three places that have headers: an email (`to`,
`subject`; the body follows the header block), an SMS gateway call (`Idempotency-Key`, derived
from the job id) and a webhook (`webhook-id`, the job id; the URL's path and query). No field
may add a header anywhere, and what a field may hold is refused at the API (a 400 naming the
field) rather than accepted into a job that can never be sent:

- the subject is one line: no CR, LF or other character Python's email package (and so the
  SMTP activity) treats as a line break (VT, FF, FS, GS, RS, NEL, U+2028, U+2029);
- subject, body and SMS message hold no control characters (tab everywhere; CR and LF in the
  body and the message) and no unpaired surrogates (nor does webhook `data`, keys included);
- Unicode text (accents, CJK, emoji, right-to-left and zero-width marks) is accepted and arrives
  exactly as sent; an email subject is encoded per RFC 2047, even when it looks encoded already.
"""

from __future__ import annotations

import email.policy
import json
import re
from email.parser import BytesParser

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from activities.email import build_message
from api.jobs.models import EmailJob
from common.models import EmailMessage
from common.settings import Settings
from tests.api.helpers import api_client, assert_error, mail_for, until_final
from tests.support.http_receiver import Answer, HttpReceiver

EMAIL = {"to": "ada@example.com", "subject": "Hello", "body": "Text"}
SMS = {"phone": "+14155550100", "message": "Text"}
SCHEDULE = {"cron": "0 0 1 1 *"}
JOB_ID = re.compile(r"^(email|sms|webhook|cleanup)-[0-9a-f]{20}$")
# Python's email package (str.splitlines) breaks a header at each of these.
LINE_BREAKS = ["\r", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
CONTROLS = ["\x00", "\x01", "\x08", "\x1b", "\x1f", "\x7f", "\x80", "\x9b", "\x9f"]
UNICODE = "Grüße, café — 日本語 ✓ 🎉 \u202eevil\u202c \u200bzero\u200dwidth \ufeff\u00ad עברית"
EMAIL_HEADERS = {
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Content-Type",
    "Content-Transfer-Encoding",
    "MIME-Version",
}


def _field_errors(response) -> list[str]:
    body = assert_error(response, 400, "validation_error")
    return [d["field"] for d in body["details"]]


async def _email_routes(api, fields: dict) -> list:
    """The same email fields through every route that takes them."""
    return [
        await api.post("/jobs/email", json={**EMAIL, **fields}),
        await api.post("/notify/email", json={**EMAIL, **fields}),
        await api.post("/schedules", json={**SCHEDULE, "job": {"type": "email", **EMAIL, **fields}}),
    ]


# ---- refused at the door -----------------------------------------------------------------------
@pytest.mark.parametrize("brk", LINE_BREAKS, ids=[f"U+{ord(c[-1]):04X}" for c in LINE_BREAKS])
async def test_a_line_break_in_the_subject_is_a_400(api, dev_env, brk):
    jobs, notify, schedule = await _email_routes(api, {"subject": f"Hi{brk}Bcc: evil@example.com"})
    assert _field_errors(jobs) == _field_errors(notify) == ["subject"]
    assert _field_errors(schedule) == ["job.subject"]
    assert "one line" in jobs.json()["details"][0]["message"]


@pytest.mark.parametrize("char", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
async def test_control_characters_are_a_400_on_their_field(api, dev_env, char):
    for path, body, field in [
        ("/jobs/email", {**EMAIL, "subject": f"a{char}b"}, "subject"),
        ("/notify/email", {**EMAIL, "body": f"line{char}"}, "body"),
        ("/jobs/sms", {**SMS, "message": f"code{char}123"}, "message"),
        ("/notify/sms", {**SMS, "message": char}, "message"),
    ]:
        response = await api.post(path, json=body)
        assert _field_errors(response) == [field], (path, response.text)
        assert f"U+{ord(char):04X}" in response.json()["details"][0]["message"]


async def test_tab_cr_and_lf_are_text_where_lines_are(api, dev_env):
    assert (
        await api.post("/jobs/email", json={**EMAIL, "subject": "a\tb", "body": "a\r\n\tb\nc\r"})
    ).status_code == 202
    assert (await api.post("/jobs/sms", json={**SMS, "message": "a\r\n\tb"})).status_code == 202


@pytest.mark.parametrize(
    ("path", "raw", "field"),
    [
        ("/jobs/email", '{"to": "ada@example.com", "subject": "\\ud800", "body": "x"}', "subject"),
        ("/jobs/email", '{"to": "ada@example.com", "subject": "x", "body": "a\\udfffb"}', "body"),
        ("/notify/sms", '{"phone": "+14155550100", "message": "\\ud83d"}', "message"),
        ("/notify/webhook", '{"url": "https://hooks.example.invalid/", "data": {"a": ["\\ud800"]}}', "data"),
        ("/notify/webhook", '{"url": "https://hooks.example.invalid/", "data": {"\\udc00": 1}}', "data"),
        ("/notify/webhook", '{"url": "https://hooks.example.invalid/", "data": "\\ud800"}', "data"),
    ],
)
async def test_an_unpaired_surrogate_is_a_400(api, dev_env, path, raw, field):
    """JSON's \\uD800 escapes make a Python string no UTF-8 encoder can send."""
    response = await api.post(path, content=raw.encode(), headers={"content-type": "application/json"})
    assert _field_errors(response) == [field], response.text


async def test_a_surrogate_pair_is_one_character(api, dev_env):
    raw = '{"phone": "+14155550100", "message": "party \\ud83c\\udf89"}'
    response = await api.post("/notify/sms", content=raw.encode(), headers={"content-type": "application/json"})
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    "to",
    [
        "ada@example.com\r\nBcc: evil@example.com",
        "ada@example.com\nBcc: evil@example.com",
        "Ada\r\n <ada@example.com>",
        "ada@example.com\r",
        "ada\x00@example.com",
        "ada@exa\u2028mple.com",
        "ada@example.com, evil@example.com",
        "ada@example.com\tBcc: evil@example.com",
    ],
)
async def test_to_is_one_address_with_nothing_around_it(api, dev_env, to):
    for response in await _email_routes(api, {"to": to}):
        assert _field_errors(response) in (["to"], ["job.to"]), response.text


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.invalid/a\r\nX-Injected: 1",
        "https://hooks.example.invalid/a\nX: 1",
        "https://hooks.example.invalid/\x00",
        "https://hooks.example.invalid/\t",
        "https://hooks.example.invalid\r\n/",
    ],
)
async def test_control_characters_in_a_url_are_a_400(api, dev_env, url):
    response = await api.post("/notify/webhook", json={"url": url, "data": {}})
    assert _field_errors(response) == ["url"], response.text
    response = await api.post("/jobs/cleanup", json={"task": "delete_temp", "webhookUrl": url})
    assert _field_errors(response) == ["webhookUrl"], response.text


@pytest.mark.parametrize("port", ["99999", "65536", "0", "-1"])
async def test_a_port_out_of_range_is_a_400_not_a_500(api, dev_env, port):
    """It was a 500: the Web UI summary read the port with urllib, which raises on it."""
    url = f"https://hooks.example.invalid:{port}/x"
    response = await api.post("/notify/webhook", json={"url": url, "data": 1})
    assert _field_errors(response) == ["url"], response.text
    assert "1-65535" in response.json()["details"][0]["message"]
    response = await api.post("/jobs/sms", json={**SMS, "webhookUrl": url})
    assert _field_errors(response) == ["webhookUrl"], response.text
    response = await api.post("/schedules", json={**SCHEDULE, "job": {"type": "webhook", "url": url, "data": 1}})
    assert _field_errors(response) == ["job.url"], response.text


@pytest.mark.parametrize(
    ("path", "body", "field", "limit"),
    [
        ("/jobs/email", {**EMAIL, "subject": "s" * 999}, "subject", 998),
        ("/notify/email", {**EMAIL, "body": "b" * 100_001}, "body", 100_000),
        ("/jobs/sms", {**SMS, "message": "m" * 1601}, "message", 1600),
        ("/notify/sms", {**SMS, "phone": "+1" + "4" * 31}, "phone", 32),
        ("/notify/webhook", {"url": "https://hooks.example.invalid/" + "u" * 2020, "data": 1}, "url", 2048),
        ("/jobs/cleanup", {"task": "delete_temp", "webhookUrl": "https://x.invalid/" + "w" * 2040}, "webhookUrl", 2048),
        (
            "/schedules",
            {"cron": "0 0 1 1 " + " " * 250 + "*", "job": {"type": "cleanup", "task": "delete_temp"}},
            "cron",
            256,
        ),
        (
            "/schedules",
            {**SCHEDULE, "timezone": "Europe/" + "B" * 60, "job": {"type": "cleanup", "task": "delete_temp"}},
            "timezone",
            64,
        ),
    ],
)
async def test_an_over_long_field_is_a_400_naming_it_and_its_limit(api, dev_env, path, body, field, limit):
    response = await api.post(path, json=body)
    details = assert_error(response, 400, "validation_error")["details"]
    assert [d["field"] for d in details] == [field], details
    assert f"at most {limit} characters" in details[0]["message"], details


async def test_fields_at_their_limit_are_accepted(api, dev_env):
    assert (
        await api.post("/jobs/email", json={**EMAIL, "subject": "s" * 998, "body": "b" * 100_000})
    ).status_code == 202
    assert (await api.post("/notify/sms", json={**SMS, "message": "m" * 1600})).status_code == 202


@pytest.mark.parametrize(
    "raw",
    [
        b'{"to": "ada@example.com", "subject": "\xff\xfe", "body": "x"}',
        b'{"to": "ada@example.com", "subject": "caf\xe9", "body": "x"}',
        b"\xef\xbb\xbf\xff",
    ],
)
async def test_a_body_that_is_not_utf8_is_invalid_json(api, app, raw):
    body = assert_error(
        await api.post("/jobs/email", content=raw, headers={"content-type": "application/json"}), 400, "invalid_json"
    )
    assert body["details"] == []
    # ...and without a key it is still the key that is missing (the credential is checked first).
    async with api_client(app) as anon:
        response = await anon.post("/jobs/email", content=raw, headers={"content-type": "application/json"})
        assert_error(response, 401, "unauthorized")


def _nested(depth: int) -> list:
    return json.loads("[" * depth + "]" * depth)


@pytest.mark.parametrize("depth", [101, 500, 900])
async def test_data_nested_deeper_than_100_levels_is_a_400(api, dev_env, depth):
    """500 levels were a 500: Temporal's payload converter walks the input recursively."""
    response = await api.post("/notify/webhook", json={"url": "https://hooks.example.invalid/", "data": _nested(depth)})
    assert _field_errors(response) == ["data"], response.text
    assert "deeper than 100 levels" in response.json()["details"][0]["message"]
    response = await api.post(
        "/schedules",
        json={
            **SCHEDULE,
            "job": {"type": "webhook", "url": "https://hooks.example.invalid/", "data": {"a": _nested(depth)}},
        },
    )
    assert _field_errors(response) == ["job.data"], response.text


async def test_json_nested_deeper_than_the_parser_goes_is_invalid_json_not_a_500(api, app):
    deep = b'{"url": "https://hooks.example.invalid/", "data": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    assert len(deep) < 256 * 1024
    body = assert_error(
        await api.post("/notify/webhook", content=deep, headers={"content-type": "application/json"}),
        400,
        "invalid_json",
    )
    assert "deep" in body["message"]
    async with api_client(app) as anon:
        response = await anon.post("/notify/webhook", content=deep, headers={"content-type": "application/json"})
        assert_error(response, 401, "unauthorized")


# ---- accepted, and delivered exactly -------------------------------------------------------------
async def test_a_unicode_email_arrives_intact_and_encoded_per_rfc_2047(api, smtp_sink):
    subject = f"{UNICODE} \t=?utf-8?q?Bcc:_evil@example.com?= =?"
    body = f"{UNICODE}\nline 2\r\n.\nFrom the start of a line\nBcc: evil@example.com\n\n\x20trailing "
    response = await api.post(
        "/jobs/email", json={"to": "Ada Lovelace <ada@example.com>", "subject": subject, "body": body}
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["jobId"]
    assert JOB_ID.match(job_id)
    assert (await until_final(api, job_id))["status"] == "completed"
    [mail] = mail_for(smtp_sink.outbox, job_id)
    assert set(mail.keys()) - {"X-Envelope-From", "X-Envelope-To"} == EMAIL_HEADERS
    assert mail["Subject"] == subject
    assert mail["To"] == "ada@example.com"
    assert mail.get_content().rstrip("\n") == body.replace("\r\n", "\n").rstrip("\n")
    # On the wire the subject is ASCII: RFC 2047 encoded words only, the look-alike one encoded too.
    raw = _raw_headers(smtp_sink, job_id)
    subject_line = re.search(rb"^Subject: (.*(?:\n[ \t].*)*)", raw, re.M).group(1)
    assert subject_line.isascii()
    assert re.fullmatch(rb"(=\?utf-8\?[bq]\?[^?\s]*\?=\s*)+", subject_line), subject_line


def _raw_headers(smtp_sink, job_id: str) -> bytes:
    for path in sorted(smtp_sink.outbox.glob("*.eml")):
        data = path.read_bytes()
        if f"<{job_id}@herald>".encode() in data:
            return data.split(b"\n\n", 1)[0]
    raise AssertionError(f"no mail for {job_id}")


async def test_sms_text_reaches_the_gateway_as_sent_and_adds_no_header(api, sms_gateway):
    message = f"{UNICODE}\r\nIdempotency-Key: forged\r\nX-Injected: 1"
    response = await api.post("/notify/sms", json={"phone": "+14155550100", "message": message})
    assert response.status_code == 202, response.text
    job_id = response.json()["notificationId"]
    assert JOB_ID.match(job_id)
    assert (await until_final(api, job_id))["status"] == "completed"
    [record] = [r for r in sms_gateway.recorded() if r["idempotencyKey"] == job_id]
    assert record["body"] == message
    [call] = [c for c in sms_gateway.calls if c.idempotency_key == job_id]
    assert call.header_key == job_id  # the header is the job's id, whatever the message says


async def test_webhook_data_and_url_reach_the_receiver_as_sent_and_add_no_header(api):
    data = {
        "text": UNICODE,
        "crlf": "a\r\nX-Injected: 1\r\n\r\nbody",
        f"key\r\nX-Key: {UNICODE}": [None, 1.5, True],
        "deep": _nested(99),
    }  # 100 levels with `data` itself: the most there may be
    with HttpReceiver([Answer(200, {"ok": True})]) as receiver:
        url = f"{receiver.url}/hooks/%0D%0AX-Injected:%201?q=%0D%0AX-Other:%202&r=\u00fc"
        response = await api.post("/notify/webhook", json={"url": url, "data": data})
        assert response.status_code == 202, response.text
        job_id = response.json()["notificationId"]
        assert JOB_ID.match(job_id)
        assert (await until_final(api, job_id))["status"] == "completed"
        [hit] = receiver.received
    assert hit.json() == data
    assert hit.headers["webhook-id"] == job_id
    assert not {name for name in hit.headers if name.startswith("x-")}, hit.headers
    assert hit.path == "/hooks/%0D%0AX-Injected:%201?q=%0D%0AX-Other:%202&r=%C3%BC"


async def test_a_big_array_within_the_body_limit_is_delivered(api):
    data = list(range(40_000))  # ~230 KB of JSON
    with HttpReceiver([Answer(204)]) as receiver:
        response = await api.post("/notify/webhook", json={"url": f"{receiver.url}/big", "data": data})
        assert response.status_code == 202, response.text
        assert (await until_final(api, response.json()["notificationId"]))["status"] == "completed"
        assert receiver.received[0].json() == data


# ---- the email the activity builds, for any text the API accepts ----------------------------------
# Any character, with the ones that matter to headers and encoded words drawn more often.
TEXT = st.one_of(
    st.characters(),
    st.sampled_from(
        [*"".join(LINE_BREAKS), *CONTROLS, "\t", " ", "=", "?", ":", "_", "\u202e", "\u200b", "é", "日", "🎉"]
    ),
)
# Text around something a reader would decode as an RFC 2047 encoded word.
LOOKS_ENCODED = st.builds(
    "{}{}{}".format,
    st.text(TEXT, max_size=20),
    st.from_regex(r"=\?(utf-8|iso-8859-1|x)\?[bqBQ]\?[A-Za-z0-9_=+/:]*\?=", fullmatch=True),
    st.text(TEXT, max_size=20),
)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(
    subject=st.one_of(st.text(TEXT, min_size=1, max_size=120), LOOKS_ENCODED),
    body=st.text(TEXT, min_size=1, max_size=300),
)
@example(subject="=?utf-8?q?Bcc:_evil@example.com?=", body="x")
@example(subject="Re: =?iso-8859-1?q?caf=E9?= =?", body="x")
def test_any_accepted_subject_and_body_build_a_message_that_reads_back_the_same(subject, body):
    try:
        EmailJob.model_validate({**EMAIL, "subject": subject, "body": body})
    except ValidationError:
        return  # refused at the API: never reaches the activity
    mime = build_message(
        Settings(),
        EmailMessage(to="ada@example.com", subject=subject, body=body, idempotency_key="email-0123456789abcdef0123"),
    )
    raw = mime.as_bytes(policy=mime.policy.clone(linesep="\r\n"))
    back = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert set(back.keys()) == EMAIL_HEADERS
    assert back["Subject"] == subject
    assert back.get_content().replace("\r\n", "\n").rstrip("\n") == (
        body.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")
    )
