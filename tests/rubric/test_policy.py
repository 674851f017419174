"""The course policy's rules, table-driven: reading the `policy:` block, lateness and the penalty it costs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from grader.errors import RubricError
from grader.rubric.policy import parse_policy

DUE = datetime(2026, 12, 11, 23, 59, tzinfo=UTC)
POLICY = parse_policy(
    {
        "due": "2026-12-11T23:59:00+00:00",
        "hard_close": "2026-12-14T23:59:00+00:00",
        "late_penalty": {"percent_per_day": 10, "max_percent": 30, "grace_minutes": 5},
    },
    "test",
)


@pytest.mark.parametrize(
    ("late_by", "percent"),
    [
        (timedelta(seconds=-1), 0),
        (timedelta(0), 0),
        (timedelta(minutes=5), 0),  # within the grace period
        (timedelta(minutes=6), 10),  # a started day costs a day
        (timedelta(days=1), 10),
        (timedelta(days=1, seconds=1), 20),
        (timedelta(days=2, hours=3), 30),
        (timedelta(days=9), 30),  # capped at max_percent
    ],
)
def test_penalty_per_started_day_with_grace_and_cap(late_by: timedelta, percent: float) -> None:
    late = POLICY.lateness(DUE + late_by, POLICY.deadline())
    assert late.penalty_percent == percent
    assert late.apply(80.0) == pytest.approx(80.0 * (1 - percent / 100))


def test_an_extension_moves_the_due_date_and_the_hard_close_it_gives() -> None:
    extended = POLICY.deadline(due=DUE + timedelta(days=2))
    assert extended.extended and extended.hard_close == POLICY.hard_close
    assert POLICY.lateness(DUE + timedelta(days=1), extended).penalty_percent == 0
    assert POLICY.lateness(DUE + timedelta(days=2, minutes=10), extended).penalty_percent == 10


def test_times_without_an_offset_are_in_the_assignment_time_zone() -> None:
    policy = parse_policy({"timezone": "America/Chicago", "due": "2026-12-11T23:59:00"}, "test")
    assert policy.due == datetime(2026, 12, 12, 5, 59, tzinfo=UTC)  # CST is UTC-6
    assert policy.local(policy.due) == "2026-12-11 23:59 CST"


def test_per_hour_penalties() -> None:
    policy = parse_policy({"due": "2026-12-11T23:59:00+00:00", "late_penalty": {"percent_per_hour": 2}}, "t")
    assert policy.lateness(DUE + timedelta(minutes=61), policy.deadline()).penalty_percent == 4


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"due": "next friday"}, "ISO 8601"),
        ({"due": "2026-12-11T23:59:00", "hard_close": "2026-12-10T23:59:00"}, "hard_close is before due"),
        ({"counts": "first"}, "latest, best"),
        ({"late_penalty": {"max_percent": 30}}, "percent_per_day"),
        ({"late_penalty": {"percent_per_day": -5}}, "non-negative"),
        ({"attempts": {"graded": 3, "tries": 4}}, "graded, uploads and cooldown_s"),
        ({"deadline": "2026-12-11"}, "unknown keys ['deadline']"),
    ],
)
def test_a_malformed_policy_is_a_rubric_error_naming_the_key(raw: dict, message: str) -> None:
    with pytest.raises(RubricError, match="policy") as error:
        parse_policy(raw, "hw.yaml")
    assert message in str(error.value)
