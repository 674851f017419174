"""Course policy applied to people: extensions, whether a student may submit now, and late penalties on read.

The rules themselves are in grader/rubric/policy.py (pure); this module brings the database and the clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from grader.db.models import Extension, GradingJob, Submission, User, as_utc, utcnow
from grader.domain.status import JobStatus, Role
from grader.errors import InputError, NotFound, RubricError, SubmissionClosed, TooManyRequests
from grader.rubric.model import Rubric
from grader.rubric.policy import Deadline, Lateness, parse_moment
from grader.services.users import get_user_by_username


def current_extension(extensions: list[Extension]) -> Extension | None:
    """The newest grant counts (earlier ones stay as history)."""
    return extensions[-1] if extensions else None


def deadline_for(rubric: Rubric, extension: Extension | None) -> Deadline:
    if extension is None:
        return rubric.policy.deadline()
    return rubric.policy.deadline(
        due=as_utc(extension.due) if extension.due else None,
        hard_close=as_utc(extension.hard_close) if extension.hard_close else None,
    )


def lateness(submission: Submission, rubric: Rubric) -> Lateness:
    deadline = deadline_for(rubric, current_extension(submission.extensions))
    return rubric.policy.lateness(as_utc(submission.received_at), deadline)


def describe_lateness(submission: Submission, rubric: Rubric) -> dict[str, Any] | None:
    """What the API and dashboard show next to a score: None when on time or the assignment has no due date."""
    deadline = deadline_for(rubric, current_extension(submission.extensions))
    if deadline.due is None:
        return None
    late = rubric.policy.lateness(as_utc(submission.received_at), deadline)
    return {
        "due": deadline.due.isoformat(),
        "due_local": rubric.policy.local(deadline.due),
        "extended": deadline.extended,
        "minutes_late": late.minutes_late,
        "penalty_percent": late.penalty_percent,
    }


def check_can_submit(session: Session, *, rubric: Rubric, user: User, now: datetime | None = None) -> None:
    """Refuse before anything is stored: past the hard close, out of attempts, or within the cooldown.

    Staff are not limited (they submit to try the assignment out)."""
    if Role(user.role).is_staff:
        return
    now = now or utcnow()
    policy = rubric.policy
    if policy.attempts.graded is not None or policy.attempts.uploads is not None or policy.attempts.cooldown_s:
        # one student's concurrent uploads are counted one after the other (PostgreSQL; SQLite writes in turn)
        session.execute(select(User.id).where(User.id == user.id).with_for_update())
    extension = current_extension(_extensions(session, rubric.assignment, user.id))
    deadline = deadline_for(rubric, extension)
    if deadline.hard_close is not None and now > deadline.hard_close:
        raise SubmissionClosed(
            f"{rubric.assignment} closed at {policy.local(deadline.hard_close)}; ask the course staff for an "
            "extension if you need one"
        )
    limits = policy.attempts
    extra = extension.extra_attempts if extension else 0
    mine = (Submission.assignment_id == rubric.assignment, Submission.user_id == user.id)
    if limits.cooldown_s:
        last = session.scalar(select(func.max(Submission.received_at)).where(*mine))
        if last is not None:
            wait = as_utc(last) + timedelta(seconds=limits.cooldown_s) - now
            if wait > timedelta(0):
                seconds = int(wait.total_seconds()) + 1
                raise TooManyRequests(
                    f"one submission every {limits.cooldown_s} s: the next is possible in {seconds} s "
                    f"(at {policy.local(now + wait)})",
                    retry_after_s=seconds,
                )
    if limits.uploads is not None:
        uploads = session.scalar(select(func.count()).select_from(Submission).where(*mine)) or 0
        if uploads >= limits.uploads + extra:
            raise TooManyRequests(f"all {limits.uploads + extra} uploads of {rubric.assignment} are used")
    if limits.graded is not None:
        graded = graded_attempts(session, assignment_id=rubric.assignment, user_id=user.id)
        if graded >= limits.graded + extra:
            raise TooManyRequests(
                f"all {limits.graded + extra} graded attempts of {rubric.assignment} are used (submissions the "
                "grader could not grade do not count)"
            )


def graded_attempts(session: Session, *, assignment_id: str, user_id: int) -> int:
    """Submissions that count against the student: every one except those whose newest job failed (a grader
    failure is not the student's attempt). Waiting and running ones count, so a burst cannot overrun the limit."""
    mine = (Submission.assignment_id == assignment_id, Submission.user_id == user_id)
    newest = (  # of this student's submissions only: every submission checked it, and the class's jobs are many
        select(GradingJob.submission_id, func.max(GradingJob.number).label("number"))
        .join(Submission, Submission.id == GradingJob.submission_id)
        .where(*mine)
        .group_by(GradingJob.submission_id)
        .subquery()
    )
    query = (
        select(func.count())
        .select_from(newest)
        .join(
            GradingJob,
            (GradingJob.submission_id == newest.c.submission_id) & (GradingJob.number == newest.c.number),
        )
        .where(GradingJob.status != str(JobStatus.FAILED))
    )
    return int(session.scalar(query) or 0)


def grant_extension(
    session: Session,
    *,
    rubric: Rubric,
    user: User,
    granted_by: User | None,
    due: datetime | None,
    hard_close: datetime | None = None,
    extra_attempts: int = 0,
    reason: str = "",
) -> Extension:
    if due is None and hard_close is None and not extra_attempts:
        raise InputError("give a new due date, a new hard close or extra attempts", field="due")
    if Role(user.role).is_staff:
        raise InputError(f"{user.username} is staff: extensions are for students", field="user")
    if extra_attempts < 0:
        raise InputError("extra_attempts must not be negative", field="extra_attempts")
    for name, moment in (("due", due), ("hard_close", hard_close)):
        if moment is not None and moment.tzinfo is None:
            raise InputError(f"{name} needs a time zone (e.g. 2026-12-15T23:59:00-06:00)", field=name)
    effective_due = due or rubric.policy.due
    if hard_close is not None and effective_due is not None and hard_close < effective_due:
        raise InputError("hard_close is before the due date", field="hard_close")
    if due is not None and hard_close is None and rubric.policy.hard_close and due > rubric.policy.hard_close:
        hard_close = due  # a due date after the class's hard close also moves this student's close
    row = Extension(
        assignment_id=rubric.assignment,
        user_id=user.id,
        due=due,
        hard_close=hard_close,
        extra_attempts=extra_attempts,
        reason=reason,
        granted_by_id=granted_by.id if granted_by else None,
    )
    session.add(row)
    session.commit()
    return row


def grant_typed_extension(
    session: Session,
    *,
    rubric: Rubric,
    username: str,
    granted_by: User | None,
    due: str | None,
    hard_close: str | None = None,
    extra_attempts: int = 0,
    reason: str = "",
) -> dict:
    """An extension as staff type it (the API's body, the CLI's options): the student by username, the dates as text
    read by `parse_when`; the grant as `describe_extension` gives it."""
    student = get_user_by_username(session, username=username)
    if student is None:
        raise NotFound(f"no user {username!r}", field="user")
    row = grant_extension(
        session,
        rubric=rubric,
        user=student,
        granted_by=granted_by,
        due=parse_when(rubric, due, field="due"),
        hard_close=parse_when(rubric, hard_close, field="hard_close"),
        extra_attempts=extra_attempts,
        reason=reason,
    )
    return describe_extension(row)


def parse_when(rubric: Rubric, text: str | None, *, field: str) -> datetime | None:
    """A date-time typed by staff; without an offset it is read in the assignment's time zone."""
    if text is None or not str(text).strip():
        return None
    try:
        return parse_moment(str(text).strip(), ZoneInfo(rubric.policy.timezone), field)
    except RubricError as exc:
        raise InputError(str(exc), field=field) from exc


def list_extensions(session: Session, *, assignment_id: str) -> list[dict[str, Any]]:
    """Every grant, oldest first, with who granted it and when (the newest per student counts)."""
    rows = session.scalars(
        select(Extension).where(Extension.assignment_id == assignment_id).order_by(Extension.id)
    ).all()
    return [describe_extension(row) for row in rows]


def describe_extension(row: Extension) -> dict[str, Any]:
    return {
        "id": row.id,
        "user": row.user.username,
        "due": as_utc(row.due).isoformat() if row.due else None,
        "hard_close": as_utc(row.hard_close).isoformat() if row.hard_close else None,
        "extra_attempts": row.extra_attempts,
        "reason": row.reason,
        "granted_by": row.granted_by.username if row.granted_by else None,
        "granted_at": as_utc(row.created_at).isoformat(),
    }


def _extensions(session: Session, assignment_id: str, user_id: int) -> list[Extension]:
    query = select(Extension).where(Extension.assignment_id == assignment_id, Extension.user_id == user_id)
    return list(session.scalars(query.order_by(Extension.id)))
