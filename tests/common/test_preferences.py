"""The decision point (common/preferences.py): the rules in order, and quiet hours in local wall time,
daylight-saving changes included (Europe/Berlin: the clocks go forward on the last Sunday of March and
back on the last Sunday of October)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from common.models import DeliveryCheck, DigestPreference, QuietHours, UserProfile
from common.preferences import decide, digest_due, quiet_until

NIGHT = QuietHours(start="22:00", end="07:00")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def check(**changes) -> DeliveryCheck:
    return DeliveryCheck(
        **{"user_id": "ada", "scope": "", "channel": "email", "topic": None, "critical": False, "now": ""} | changes
    )


@pytest.mark.parametrize(
    ("now", "until"),
    [
        ("2026-12-05T23:00:00+00:00", "2026-12-06T07:00:00+00:00"),  # spanning midnight, before it
        ("2026-12-06T03:00:00+00:00", "2026-12-06T07:00:00+00:00"),  # after it
        ("2026-12-05T22:00:00+00:00", "2026-12-06T07:00:00+00:00"),  # the start is inside
        ("2026-12-06T07:00:00+00:00", None),  # the end is not
        ("2026-12-05T12:00:00+00:00", None),
    ],
)
def test_quiet_hours_spanning_midnight_in_utc(now, until):
    end = quiet_until(NIGHT, None, at(now))
    assert (end.isoformat() if end else None) == until


def test_quiet_hours_within_a_day_and_an_empty_window():
    lunch = QuietHours(start="12:00", end="13:30")
    assert quiet_until(lunch, "UTC", at("2026-12-05T12:10:00+00:00")) == at("2026-12-05T13:30:00+00:00")
    assert quiet_until(lunch, "UTC", at("2026-12-05T23:10:00+00:00")) is None
    assert quiet_until(QuietHours(start="08:00", end="08:00"), "UTC", at("2026-12-05T08:00:00+00:00")) is None


def test_spring_forward_in_berlin_makes_the_night_an_hour_shorter():
    # Saturday 2027-03-27 23:00 CET (22:00 UTC); at 02:00 on Sunday the clocks jump to 03:00 CEST.
    now = at("2027-03-27T22:00:00+00:00")
    end = quiet_until(NIGHT, "Europe/Berlin", now)
    assert end == at("2027-03-28T07:00:00+02:00") == at("2027-03-28T05:00:00+00:00")
    assert end - now == timedelta(hours=7)  # 23:00 to 07:00 local is 7 hours that night, not 8


def test_fall_back_in_berlin_makes_the_night_an_hour_longer():
    # Saturday 2027-10-30 23:00 CEST (21:00 UTC); at 03:00 on Sunday the clocks go back to 02:00 CET.
    now = at("2027-10-30T21:00:00+00:00")
    end = quiet_until(NIGHT, "Europe/Berlin", now)
    assert end == at("2027-10-31T07:00:00+01:00") == at("2027-10-31T06:00:00+00:00")
    assert end - now == timedelta(hours=9)
    # During the repeated hour (02:30 CET, the second time), still quiet, still until 07:00 CET.
    assert quiet_until(NIGHT, "Europe/Berlin", at("2027-10-31T01:30:00+00:00")) == end


def test_a_window_ending_in_the_skipped_hour_ends_by_the_clock_before_the_jump():
    # 02:30 does not exist in Berlin on 2027-03-28: read as 02:30 CET, i.e. 03:30 CEST (01:30 UTC).
    short = QuietHours(start="22:00", end="02:30")
    assert quiet_until(short, "Europe/Berlin", at("2027-03-27T23:00:00+00:00")) == at("2027-03-28T01:30:00+00:00")


def test_the_rules_in_order():
    user = UserProfile(
        user_id="ada",
        email="ada@example.com",
        opt_out=["sms"],
        topics={"marketing": False, "orders": True},
        quiet_hours=NIGHT,
    )
    night, day = at("2026-12-05T23:00:00+00:00"), at("2026-12-05T12:00:00+00:00")
    # channel: suppressed, critical or not.
    for critical in (False, True):
        verdict = decide(user, check(channel="sms", critical=critical), day)
        assert (verdict.outcome, verdict.rule, verdict.reason) == ("suppress", "channel", "channel_opt_out")
    # topic: suppressed unless critical.
    verdict = decide(user, check(topic="marketing"), day)
    assert (verdict.outcome, verdict.rule, verdict.reason) == ("suppress", "topic", "topic_opt_out")
    assert decide(user, check(topic="marketing", critical=True), day).outcome == "send"
    # quiet hours: deferred until their end, unless critical or released.
    verdict = decide(user, check(topic="orders"), night)
    assert (verdict.outcome, verdict.rule, verdict.until) == ("defer", "quiet_hours", "2026-12-06T07:00:00+00:00")
    assert decide(user, check(critical=True), night).outcome == "send"
    assert decide(user, check(released=True), night).outcome == "send"
    # passed: sent, naming the last rule checked.
    assert decide(user, check(topic="orders"), day).rule == "quiet_hours"
    assert decide(UserProfile(user_id="ada", topics={"orders": True}), check(topic="orders"), day).rule == "topic"
    assert decide(None, check(), night).outcome == "send"  # no such user: nothing decides against it


def test_times_are_compared_in_utc_whatever_zone_now_is_given_in():
    now = at("2027-03-27T23:00:00+01:00")
    assert quiet_until(NIGHT, "Europe/Berlin", now) == datetime(2027, 3, 28, 5, tzinfo=UTC)


# ---- digests ------------------------------------------------------------------------------------------
DAILY = DigestPreference(topics=["orders"], at="09:00")


@pytest.mark.parametrize(
    ("now", "due"),
    [
        ("2026-12-05T07:59:00+00:00", "2026-12-05T08:00:00+00:00"),  # 08:59 in Berlin (CET): today's
        ("2026-12-05T08:00:00+00:00", "2026-12-06T08:00:00+00:00"),  # 09:00 itself: tomorrow's
        ("2026-03-28T12:00:00+00:00", "2026-03-29T07:00:00+00:00"),  # CEST from the 29th: 09:00 is 07:00 UTC
    ],
)
def test_a_daily_digest_goes_at_the_next_local_time(now, due):
    assert digest_due(DAILY, "Europe/Berlin", at(now)).isoformat() == due


def test_an_every_digest_goes_that_many_seconds_later():
    every = DigestPreference(topics=["orders"], every=600)
    assert digest_due(every, None, at("2026-12-05T12:00:00+00:00")) == at("2026-12-05T12:10:00+00:00")


def test_the_digest_rule_comes_after_quiet_hours_and_spares_critical_sms_and_other_topics():
    now = at("2026-12-05T12:00:00+00:00")
    profile = UserProfile(user_id="ada", email="a@x", digest=DAILY, timezone="Europe/Berlin")
    verdict = decide(profile, check(topic="orders", digests=True), now)
    assert (verdict.outcome, verdict.rule, verdict.until) == ("digest", "digest", "2026-12-06T08:00:00+00:00")
    assert decide(profile, check(topic="orders"), now).outcome == "send"  # a run from before the patch
    assert decide(profile, check(topic="news", digests=True), now).outcome == "send"
    assert decide(profile, check(topic="orders", critical=True, digests=True), now).outcome == "send"
    assert decide(profile, check(topic="orders", channel="sms", digests=True), now).outcome == "send"
    released = decide(profile, check(topic="orders", released=True, digests=True), now)
    assert (released.outcome, released.rule) == ("send", "digest")
    quiet = replace(profile, quiet_hours=QuietHours(start="11:00", end="14:00"), timezone="UTC")
    assert decide(quiet, check(topic="orders", digests=True), now).outcome == "defer"
    opted_out = replace(profile, topics={"orders": False})
    assert decide(opted_out, check(topic="orders", digests=True), now).outcome == "suppress"
