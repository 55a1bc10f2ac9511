"""Herald's schedules, without any I/O: the built-in ones, and what a valid cron and time zone are.

Every schedule is a Temporal Schedule whose action starts one ordinary Herald job (common/builtin_schedules.py
builds them and ensures the built-in ones; api/schedules/service.py creates clients' and reads them). Its cron
expression is kept in the schedule's spec twice: Temporal parses `"<cron> # <cron>"` into calendar ranges
and keeps the text after `#` as the calendar's comment, so describe and list give the cron back exactly as it
was set (and the Web UI shows it).
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from croniter import croniter
from temporalio.client import ScheduleSpec

from common.models import CleanupTaskName

# The schedule's own memo key: {"owner": "builtin" | "client", "job": the job's body}.
SCHEDULE_MEMO_KEY = "heraldSchedule"
# A run that could not start while Temporal was down still starts if it is back within this long;
# older missed runs are dropped (no burst of a night's worth of emails after an outage).
CATCHUP_WINDOW = timedelta(hours=1)

DEFAULT_TIMEZONE = "UTC"
CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_NAMES = {
    "jan",
    "feb",
    "mar",
    "apr",
    "may",
    "jun",
    "jul",
    "aug",
    "sep",
    "oct",
    "nov",
    "dec",
    "sun",
    "mon",
    "tue",
    "wed",
    "thu",
    "fri",
    "sat",
}
_TOKEN = re.compile(r"[0-9]+|[a-zA-Z]{3}|\*")


@dataclass(frozen=True)
class BuiltinSchedule:
    """A schedule the worker creates at start: one cleanup task at a fixed time of day."""

    id: str
    cron: str
    task: CleanupTaskName
    summary: str


BUILTIN_SCHEDULES: tuple[BuiltinSchedule, ...] = (
    BuiltinSchedule(
        "daily-cleanup",
        "0 0 * * *",
        "delete_temp",
        "daily cleanup: temporary files older than HERALD_TEMP_MAX_AGE_HOURS",
    ),
    BuiltinSchedule(
        "daily-log-cleanup",
        "0 0 * * *",
        "remove_old_logs",
        "daily cleanup: log files older than HERALD_LOG_RETENTION_DAYS",
    ),
    BuiltinSchedule("token-cleanup", "0 2 * * *", "expire_sessions", "token cleanup: expired sessions and tokens"),
)


def validate_cron(text: str) -> str:
    """A standard five-field cron expression, whitespace normalised; ValueError says what is wrong.

    Only what both croniter and Temporal read the same way: numbers, `*`, lists, ranges, steps and
    three-letter month and weekday names (no `@daily`, seconds, `L`, `W`, `#` or `?`).
    """
    fields = text.split()
    if len(fields) != len(CRON_FIELDS):
        raise ValueError(f"must have 5 fields ({' '.join(CRON_FIELDS)}), got {len(fields)}")
    for name, value in zip(CRON_FIELDS, fields):
        for token in re.split(r"[,/-]", value):
            if not _TOKEN.fullmatch(token) or (token.isalpha() and token.lower() not in _NAMES):
                raise ValueError(f"{name} field {value!r} is not valid")
    cron = " ".join(fields)
    if not croniter.is_valid(cron):
        raise ValueError(f"{cron!r} is not a valid cron expression")
    try:  # is_valid accepts some ranges that iterating refuses (e.g. a step of 0)
        croniter(cron, datetime(2000, 1, 1)).get_next(datetime)
    except (ValueError, KeyError) as exc:
        raise ValueError(f"{cron!r} is not a valid cron expression: {exc}") from exc
    return cron


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    # Not zones but the tz database's own files: the machine's zone, a POSIX default, a placeholder.
    return (frozenset(zoneinfo.available_timezones()) - {"localtime", "posixrules", "Factory"}) | {DEFAULT_TIMEZONE}


def validate_timezone(name: str) -> str:
    """An IANA time zone name such as `Europe/Berlin` or `UTC`; ValueError otherwise."""
    if name not in _zones():
        raise ValueError(f"{name!r} is not an IANA time zone name (such as UTC or Europe/Berlin)")
    return name


def schedule_spec(cron: str, timezone: str) -> ScheduleSpec:
    """The spec for `cron` in `timezone`, with the cron kept as the calendar's comment."""
    return ScheduleSpec(cron_expressions=[f"{cron} # {cron}"], time_zone_name=timezone)


def cron_of(spec: ScheduleSpec) -> str | None:
    """The cron expression a spec was made from (schedule_spec), or None for another kind of spec."""
    for calendar in spec.calendars:
        if calendar.comment:
            return calendar.comment
    return spec.cron_expressions[0].partition("#")[0].strip() if spec.cron_expressions else None


def next_run_after(cron: str, timezone: str, moment: datetime) -> datetime:
    """When `cron` in `timezone` next fires after `moment` (aware), by croniter."""
    return croniter(cron, moment.astimezone(zoneinfo.ZoneInfo(timezone))).get_next(datetime)
