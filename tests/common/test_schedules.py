"""Schedules without a server: the built-in definitions, cron and time zone checks, what an action starts."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from temporalio.client import ScheduleActionStartWorkflow, ScheduleOverlapPolicy

from api.schedules.models import ScheduleCreate
from api.schedules.service import job_body, job_request
from common.builtin_schedules import builtin_schedule, job_schedule
from common.models import JOB_STATUS_KEY, JOB_TYPE_KEY, STATE_MEMO_KEY, CleanupInput, NotificationInput
from common.schedules import (
    BUILTIN_SCHEDULES,
    CATCHUP_WINDOW,
    cron_of,
    next_run_after,
    schedule_spec,
    validate_cron,
    validate_timezone,
)
from common.settings import Settings
from common.tenants import TENANT_KEY, TENANT_MEMO_KEY, Tenant

EMAIL = {"type": "email", "to": "ada@example.com", "subject": "Digest", "body": "Your week"}


def test_the_builtin_schedules():
    assert [(b.id, b.cron, b.task) for b in BUILTIN_SCHEDULES] == [
        ("daily-cleanup", "0 0 * * *", "delete_temp"),
        ("daily-log-cleanup", "0 0 * * *", "remove_old_logs"),
        ("token-cleanup", "0 2 * * *", "expire_sessions"),
    ]


@pytest.mark.parametrize(
    "cron, normalised",
    [
        ("0 0 * * *", "0 0 * * *"),
        ("  30   9 * *  1-5 ", "30 9 * * 1-5"),
        ("*/15 8-18 1,15 * MON-FRI", "*/15 8-18 1,15 * MON-FRI"),
        ("0 12 * jan,jul sun", "0 12 * jan,jul sun"),
        ("59 23 31 12 6", "59 23 31 12 6"),
    ],
)
def test_standard_cron_expressions_pass(cron, normalised):
    assert validate_cron(cron) == normalised


@pytest.mark.parametrize(
    "cron, says",
    [
        ("* * * *", "5 fields"),
        ("0 0 * * * *", "5 fields"),
        ("@daily", "5 fields"),
        ("", "5 fields"),
        ("60 * * * *", "not a valid cron"),
        ("0 24 * * *", "not a valid cron"),
        ("0 0 32 * *", "not a valid cron"),
        ("0 0 * 13 *", "not a valid cron"),
        ("*/0 * * * *", "not a valid cron"),
        ("0 0 31 2 *", "not a valid cron"),  # never due
        ("0 0 L * *", "day-of-month"),
        ("0 0 * * 5#3", "day-of-week"),
        ("0 0 ? * *", "day-of-month"),
        ("0 0 * * FOO", "day-of-week"),
        ("H * * * *", "minute"),
    ],
)
def test_other_cron_expressions_are_refused_saying_why(cron, says):
    with pytest.raises(ValueError, match=says):
        validate_cron(cron)


@pytest.mark.parametrize("name", ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
def test_iana_time_zones_pass(name):
    assert validate_timezone(name) == name


@pytest.mark.parametrize(
    "name", ["", "Mars/Olympus_Mons", "utc ", "Europe/", "../../etc/passwd", "localtime", "+02:00"]
)
def test_other_time_zones_are_refused(name):
    with pytest.raises(ValueError, match="IANA"):
        validate_timezone(name)


def test_the_setting_is_an_iana_zone(monkeypatch):
    assert Settings().schedule_timezone == "UTC"
    monkeypatch.setenv("HERALD_SCHEDULE_TIMEZONE", "Europe/Berlin")
    assert Settings().schedule_timezone == "Europe/Berlin"
    monkeypatch.setenv("HERALD_SCHEDULE_TIMEZONE", "Berlin")
    with pytest.raises(ValidationError, match="schedule_timezone"):
        Settings()


def test_the_spec_keeps_the_cron_as_given():
    spec = schedule_spec("30 9 * * 1-5", "Europe/Berlin")
    assert spec.cron_expressions == ["30 9 * * 1-5 # 30 9 * * 1-5"] and spec.time_zone_name == "Europe/Berlin"
    assert cron_of(spec) == "30 9 * * 1-5"


def test_next_run_is_read_in_the_time_zone():
    moment = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)  # a Saturday; Berlin moves to summer time on Sunday
    due = next_run_after("0 2 * * *", "Europe/Berlin", moment)
    assert due.astimezone(ZoneInfo("Europe/Berlin")).hour in (2, 3)
    assert next_run_after("30 9 * * 1-5", "UTC", moment) == datetime(2026, 3, 30, 9, 30, tzinfo=UTC)


# ---- the request body -------------------------------------------------------------------------
def _fields(body: dict) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        ScheduleCreate.model_validate(body)
    return [".".join(str(p) for p in e["loc"]) for e in caught.value.errors()]


def test_a_schedule_body_of_every_job_type():
    for job in (
        EMAIL,
        {"type": "sms", "phone": "+1 415 555 0100", "message": "hi"},
        {"type": "webhook", "url": "https://example.com/hook", "data": None},
        {"type": "cleanup", "task": "expire_sessions", "attempts": 5, "priority": 1},
    ):
        body = ScheduleCreate.model_validate({"cron": "0 9 * * *", "job": job})
        assert body.timezone == "UTC" and body.job.type == job["type"]
    sms = ScheduleCreate.model_validate(
        {"cron": "0 9 * * *", "job": {"type": "sms", "phone": "+1 415 555 0100", "message": "hi"}}
    )
    assert job_body(sms.job) == {"type": "sms", "phone": "+14155550100", "message": "hi"}


def test_a_bad_job_names_its_field_under_job():
    assert _fields({"cron": "0 9 * * *", "job": EMAIL | {"to": "nobody"}}) == ["job.to"]
    assert _fields({"cron": "0 9 * * *", "job": EMAIL | {"backoff": {"type": "linear"}}}) == ["job.backoff.type"]
    assert _fields({"cron": "0 9 * * *", "job": {"type": "pigeon"}}) == ["job.type"]
    assert _fields({"cron": "0 9 * * *", "job": {"subject": "no type"}}) == ["job.type"]
    assert _fields({"cron": "0 9 * * *", "job": "email"}) == ["job"]
    assert _fields({"cron": "0 9 * * *", "job": EMAIL | {"delay": 0}}) == ["job.delay"]
    assert _fields({"cron": "0 9 * * *", "job": EMAIL | {"deliverAt": "2030-01-01T00:00:00Z"}}) == ["job.deliverAt"]
    assert _fields({"cron": "0 9 * *", "timezone": "Nowhere", "job": EMAIL, "extra": 1}) == [
        "cron",
        "timezone",
        "extra",
    ]


# ---- what a schedule's action starts ----------------------------------------------------------
def test_a_builtin_schedule_starts_a_cleanup_job_named_by_its_run():
    settings = Settings(schedule_timezone="Asia/Tokyo")
    token = next(b for b in BUILTIN_SCHEDULES if b.id == "token-cleanup")
    schedule = builtin_schedule(token, settings)
    action = schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == "CleanupWorkflow" and action.id == "token-cleanup"
    assert action.task_queue == "herald-maintenance"
    [request] = action.args
    assert isinstance(request, CleanupInput) and request.cleanup.task == "expire_sessions"
    # An empty job id: each run takes its own workflow id (`token-cleanup-<time>`) as job id.
    assert request.job.job_id == "" and request.job.family == "jobs" and request.job.retry.max_attempts == 3
    assert action.memo[STATE_MEMO_KEY].kind == "cleanup" and action.memo[STATE_MEMO_KEY].phase == "queued"
    assert action.typed_search_attributes.get(JOB_TYPE_KEY) == "cleanup"
    assert action.typed_search_attributes.get(JOB_STATUS_KEY) == "queued"
    assert schedule.spec.time_zone_name == "Asia/Tokyo" and cron_of(schedule.spec) == "0 2 * * *"
    assert schedule.policy.overlap == ScheduleOverlapPolicy.SKIP and schedule.policy.catchup_window == CATCHUP_WINDOW


def test_a_client_schedule_starts_what_the_api_would():
    settings = Settings()
    body = ScheduleCreate.model_validate(
        {"cron": "0 9 * * *", "job": EMAIL | {"attempts": 4, "priority": 2, "webhookUrl": "https://example.com/cb"}}
    )
    request = job_request(body.job, settings, Tenant("globex"))
    assert isinstance(request, NotificationInput) and request.email is not None
    assert request.email.to == "ada@example.com" and request.email.idempotency_key == ""
    assert request.job.recipient == "ada@example.com" and request.job.callback_url == "https://example.com/cb"
    schedule = job_schedule(
        "schedule-x", request, body.job.priority, body.cron, body.timezone, ScheduleOverlapPolicy.ALLOW_ALL
    )
    action = schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == "NotificationWorkflow" and action.task_queue == "herald-email"
    assert action.priority.priority_key == 2
    assert action.memo[STATE_MEMO_KEY].max_attempts == 4 and action.memo[STATE_MEMO_KEY].callback.url == (
        "https://example.com/cb"
    )
    # Every run is the schedule's tenant's: its memo and its HeraldTenant say so.
    assert action.memo[TENANT_MEMO_KEY] == "globex"
    assert action.typed_search_attributes.get(TENANT_KEY) == "globex"


def test_each_run_shows_the_redacted_summary_the_api_gives_its_jobs():
    schedule = builtin_schedule(BUILTIN_SCHEDULES[0], Settings())
    action = schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.static_summary and "delete_temp" in action.static_summary
    assert action.static_details and "each scheduled run its own" in action.static_details
