"""Course policy of one assignment (the rubric's `policy:` block): due date, hard close, late penalty, which
submission counts, attempt limits. Pure: the services bring the clock, the student's extension and their counts.

The late penalty is computed when a score is read and never stored, so moving a deadline or granting an
extension re-prices every submission at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from grader.errors import RubricError

COUNTS = ("latest", "best")
UNITS = {"day": timedelta(days=1), "hour": timedelta(hours=1)}


@dataclass(frozen=True, slots=True)
class LatePenalty:
    percent_per_unit: float
    """Points off, in percent of the score, for each started day (or hour) after the due date."""
    unit: str = "day"
    max_percent: float = 100.0
    grace_minutes: float = 0.0
    """Lateness within this many minutes is forgiven (an upload that started before the due date)."""

    def percent(self, late: timedelta) -> float:
        if late <= timedelta(minutes=self.grace_minutes):
            return 0.0
        units = math.ceil(late / UNITS[self.unit])
        return min(units * self.percent_per_unit, self.max_percent)


@dataclass(frozen=True, slots=True)
class AttemptLimits:
    graded: int | None = None
    """Attempts graded (or being graded) that count against the student; refused and grader-failed ones do not."""
    uploads: int | None = None
    """Every stored submission, whatever became of it: protects the queue."""
    cooldown_s: int = 0
    """At least this long between two submissions of one student."""


@dataclass(frozen=True, slots=True)
class Deadline:
    """One student's due date and hard close: the assignment's, or their extension's."""

    due: datetime | None
    hard_close: datetime | None
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Lateness:
    late_by: timedelta
    penalty_percent: float

    @property
    def minutes_late(self) -> float:
        return round(self.late_by.total_seconds() / 60, 1)

    def apply(self, score: float | None) -> float | None:
        return None if score is None else round(score * (1 - self.penalty_percent / 100), 4)


@dataclass(frozen=True, slots=True)
class Policy:
    timezone: str = "UTC"
    due: datetime | None = None
    hard_close: datetime | None = None
    late_penalty: LatePenalty | None = None
    counts: str = "latest"
    attempts: AttemptLimits = field(default_factory=AttemptLimits)

    def deadline(self, *, due: datetime | None = None, hard_close: datetime | None = None) -> Deadline:
        """The student's deadline: an extension's dates where it gives them, the assignment's otherwise."""
        extended = due is not None or hard_close is not None
        return Deadline(due=due or self.due, hard_close=hard_close or self.hard_close, extended=extended)

    def lateness(self, received_at: datetime, deadline: Deadline) -> Lateness:
        if deadline.due is None or received_at <= deadline.due:
            return Lateness(timedelta(0), 0.0)
        late = received_at - deadline.due
        return Lateness(late, self.late_penalty.percent(late) if self.late_penalty else 0.0)

    def local(self, moment: datetime) -> str:
        """A moment as the course's students read it: in the assignment's time zone."""
        return moment.astimezone(ZoneInfo(self.timezone)).strftime("%Y-%m-%d %H:%M %Z")


def parse_policy(raw: Any, source: str) -> Policy:
    if raw is None:
        return Policy()
    where = f"{source}: policy"
    if not isinstance(raw, Mapping):
        raise RubricError(f"{where}: expected a mapping")
    unknown = set(raw) - {"timezone", "due", "hard_close", "late_penalty", "counts", "attempts"}
    if unknown:
        raise RubricError(f"{where}: unknown keys {sorted(unknown)}")
    zone_name = str(raw.get("timezone", "UTC"))
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise RubricError(f"{where}.timezone: unknown time zone {zone_name!r} (e.g. America/Chicago)") from exc
    due = parse_moment(raw.get("due"), zone, f"{where}.due")
    hard_close = parse_moment(raw.get("hard_close"), zone, f"{where}.hard_close")
    if due and hard_close and hard_close < due:
        raise RubricError(f"{where}: hard_close is before due")
    counts = str(raw.get("counts", "latest"))
    if counts not in COUNTS:
        raise RubricError(f"{where}.counts: must be one of {', '.join(COUNTS)}")
    return Policy(
        timezone=zone_name,
        due=due,
        hard_close=hard_close,
        late_penalty=_late_penalty(raw.get("late_penalty"), f"{where}.late_penalty"),
        counts=counts,
        attempts=_attempts(raw.get("attempts"), f"{where}.attempts"),
    )


def parse_moment(raw: Any, zone: tzinfo, where: str) -> datetime | None:
    """An ISO 8601 date-time; without an offset it is read in the assignment's time zone."""
    if raw is None:
        return None
    try:
        moment = raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw))
    except ValueError as exc:
        raise RubricError(f"{where}: expected an ISO 8601 date-time like 2026-12-15T23:59:00") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def _late_penalty(raw: Any, where: str) -> LatePenalty | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not ({"percent_per_day", "percent_per_hour"} & set(raw)):
        raise RubricError(f"{where}: give percent_per_day or percent_per_hour (and optionally max_percent)")
    unknown = set(raw) - {"percent_per_day", "percent_per_hour", "max_percent", "grace_minutes"}
    if unknown:
        raise RubricError(f"{where}: unknown keys {sorted(unknown)}")
    unit = "day" if "percent_per_day" in raw else "hour"
    values = {key: _number(raw.get(key), f"{where}.{key}") for key in raw}
    return LatePenalty(
        percent_per_unit=values[f"percent_per_{unit}"],
        unit=unit,
        max_percent=min(values.get("max_percent", 100.0), 100.0),
        grace_minutes=values.get("grace_minutes", 0.0),
    )


def _attempts(raw: Any, where: str) -> AttemptLimits:
    if raw is None:
        return AttemptLimits()
    if not isinstance(raw, Mapping) or set(raw) - {"graded", "uploads", "cooldown_s"}:
        raise RubricError(f"{where}: a mapping of graded, uploads and cooldown_s")
    counts = {key: int(_number(value, f"{where}.{key}")) for key, value in raw.items() if value is not None}
    return AttemptLimits(
        graded=counts.get("graded"), uploads=counts.get("uploads"), cooldown_s=counts.get("cooldown_s", 0)
    )


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise RubricError(f"{where}: expected a non-negative number, got {value!r}")
    return float(value)
