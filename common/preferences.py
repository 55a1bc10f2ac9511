"""A user's preferences, decided for one notification just before it is sent (DESIGN.md, "Preferences,
quiet hours and digests").

`decide` is the one decision point: the rules in their order, each of which may end the chain.

1. `channel`: opted out of the notification's channel → suppressed (`channel_opt_out`), critical or not;
2. `topic`: opted out of its topic → suppressed (`topic_opt_out`), unless critical;
3. `quiet_hours`: inside the user's quiet hours → deferred until they end, unless critical;
4. `digest`: an email whose topic the user digests → joins the user's open digest for the topic
   (workflows/digest.py), unless critical or released; `until` is when a digest opened now goes out:
   the next `at` (local wall time), or `every` seconds from now. SMS are never digested.

A notification that passes every rule is sent; the verdict names the last rule it was checked against.
Times are wall-clock times in the user's IANA zone (zoneinfo), so daylight-saving changes are honoured:
the quiet hours of the night the clocks change are an hour shorter or longer. A wall time that does not
exist that night (02:30 when the clocks jump from 02:00 to 03:00) is read with the offset before the
jump, so it falls an hour later by the new clock; one that exists twice is its first occurrence.
Runs in the preferences activity (activities/preferences.py), never in a workflow: zoneinfo reads files.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from common.models import DeliveryCheck, DigestPreference, QuietHours, UserProfile, Verdict

HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
DEFAULT_TIMEZONE = "UTC"
# A digest's `every`, in seconds.
MIN_DIGEST_EVERY_S, MAX_DIGEST_EVERY_S = 60, 86_400


def parse_hhmm(value: str) -> time:
    match = HHMM.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a time of day as HH:MM (00:00 to 23:59)")
    return time(int(match.group(1)), int(match.group(2)))


def zone(name: str | None) -> ZoneInfo:
    """The IANA zone `name` (None: UTC); ValueError for a name zoneinfo does not know."""
    name = name or DEFAULT_TIMEZONE
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}: give an IANA name such as Europe/Berlin") from exc


def _at(day: date, wall: time, tz: ZoneInfo) -> datetime:
    # fold=0: the first of a repeated wall time; a skipped one reads with the offset before the gap.
    return datetime.combine(day, wall, tzinfo=tz).astimezone(UTC)


def quiet_until(quiet: QuietHours | None, timezone: str | None, now: datetime) -> datetime | None:
    """When the quiet hours around `now` end (UTC), or None when `now` is outside them. The window is
    [start, end) in local wall time; start == end is no window at all."""
    if quiet is None:
        return None
    start, end = parse_hhmm(quiet.start), parse_hhmm(quiet.end)
    if start == end:
        return None
    tz = zone(timezone)
    now = now.astimezone(UTC)
    today = now.astimezone(tz).date()
    # The window that began yesterday (one spanning midnight) or today.
    for day in (today - timedelta(days=1), today):
        begins = _at(day, start, tz)
        ends = _at(day + timedelta(days=1) if end < start else day, end, tz)
        if begins <= now < ends:
            return ends
    return None


def digest_due(digest: DigestPreference, timezone: str | None, now: datetime) -> datetime:
    """When a digest opened at `now` goes out (UTC): the next `at` in the user's zone after `now`, or
    `every` seconds after it."""
    now = now.astimezone(UTC)
    if digest.at is None:
        return now + timedelta(seconds=digest.every or MIN_DIGEST_EVERY_S)
    wall, tz = parse_hhmm(digest.at), zone(timezone)
    today = now.astimezone(tz).date()
    for day in (today, today + timedelta(days=1), today + timedelta(days=2)):
        at = _at(day, wall, tz)
        if at > now:
            return at
    raise AssertionError("a wall time recurs within two days")  # pragma: no cover


def decide(profile: UserProfile | None, check: DeliveryCheck, now: datetime) -> Verdict:
    """The verdict of the user's preferences on one notification at `now` (a user never PUT: send)."""
    if profile is None:
        return Verdict(outcome="send", rule="channel")
    if check.channel in profile.opt_out:
        return Verdict(outcome="suppress", rule="channel", reason="channel_opt_out")
    rule = "channel"
    if check.topic is not None and check.topic in profile.topics:
        rule = "topic"
        if profile.topics[check.topic] is False and not check.critical:
            return Verdict(outcome="suppress", rule="topic", reason="topic_opt_out")
    if profile.quiet_hours is not None and not check.critical:
        rule = "quiet_hours"
        if not check.released:
            until = quiet_until(profile.quiet_hours, profile.timezone, now)
            if until is not None:
                return Verdict(outcome="defer", rule="quiet_hours", until=until.isoformat())
    digest = profile.digest
    digested = digest is not None and check.topic in digest.topics and check.channel == "email"
    if check.digests and digest is not None and digested and not check.critical:
        rule = "digest"
        if not check.released:
            until = digest_due(digest, profile.timezone, now)
            return Verdict(outcome="digest", rule="digest", until=until.isoformat())
    return Verdict(outcome="send", rule=rule)
