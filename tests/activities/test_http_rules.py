"""How an HTTP answer becomes success, a retry (maybe after Retry-After) or a final failure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.http_rules import raise_for_answer, retry_after
from common.models import FailureDetail

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", timedelta(seconds=3)),
        (" 120 ", timedelta(seconds=120)),
        ("Sun, 22 Nov 2026 12:00:30 GMT", timedelta(seconds=30)),
        ("Sun, 22 Nov 2026 11:00:00 GMT", timedelta(0)),  # a date in the past: retry now
        ("999999", timedelta(seconds=3600)),  # capped
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(header, expected):
    assert retry_after(header, cap_seconds=3600, now=NOW) == expected


def answer(status: int, headers: dict | None = None, body: bytes = b"") -> ApplicationError | None:
    try:
        raise_for_answer("Receiver", status, httpx.Headers(headers or {}), body, retry_after_cap=600)
    except ApplicationError as err:
        return err
    return None


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_delivered(status):
    assert answer(status) is None


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_408_429_and_5xx_are_retried(status):
    err = answer(status, body=b'{"error":"busy"}')
    assert not err.non_retryable and err.next_retry_delay is None
    assert err.details[0] == FailureDetail(status_code=status, response_excerpt='{"error":"busy"}')


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_on_429_and_503_sets_the_next_delay(status):
    assert answer(status, {"Retry-After": "7"}).next_retry_delay == timedelta(seconds=7)


def test_retry_after_on_other_statuses_is_ignored():
    assert answer(500, {"Retry-After": "7"}).next_retry_delay is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 413, 422])
def test_other_4xx_fail_at_once(status):
    err = answer(status)
    assert err.non_retryable and err.message == f"Receiver answered HTTP {status}"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_fails_at_once_and_names_its_target(status):
    err = answer(status, {"Location": "http://169.254.169.254/"})
    assert err.non_retryable and "169.254.169.254" in err.message and "not followed" in err.message


def test_the_excerpt_is_bounded():
    err = answer(500, body=b"x" * 100_000)
    assert len(err.details[0].response_excerpt) == 512
