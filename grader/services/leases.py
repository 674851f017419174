"""Leases: which worker runs a job, a checkpoint evaluation or a regrade chunk right now, and until when.

A worker claims a row before it runs it (`lease_owner` = its Celery node name, `lease_expires_at` = now + the lease),
every heartbeat of that worker renews the leases it holds, and the lease is cleared when the task step ends (the job
then waits for its evaluations, or is final). A delivery of work that another worker holds under a live lease does
nothing: a message resent by a sweep, or delivered twice by the broker, never runs the same work twice at once. The
sweeper resends claimed work only once its lease has lapsed: its worker was killed, or lost the database.

Renewal stops once the task time limit has passed since the claim, so work whose run hung or was killed inside a
worker process that still beats (Celery replaces a pool child killed at the hard time limit) lapses all the same.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from sqlalchemy import CursorResult, or_, update
from sqlalchemy.orm import Session

from grader.db.models import CheckpointEvaluation, GradingJob, Leased, Regrade, as_utc, utcnow
from grader.domain.status import EvaluationStatus, JobStatus

LeasedModel = type[GradingJob] | type[CheckpointEvaluation] | type[Regrade]
RUNNING: dict[LeasedModel, str] = {
    GradingJob: str(JobStatus.RUNNING),
    CheckpointEvaluation: str(EvaluationStatus.RUNNING),
    Regrade: "running",
}
"""The status of each leased table's rows while a worker runs them (the rows a heartbeat renews)."""
FINAL: dict[LeasedModel, tuple[str, ...]] = {
    GradingJob: tuple(str(s) for s in JobStatus if s.is_final),
    CheckpointEvaluation: tuple(str(s) for s in EvaluationStatus if s.is_final),
    Regrade: ("finished", "cancelled", "failed"),
}


def default_owner() -> str:
    """The owner name of a process that is not a Celery worker (`grader regrade`, a script): unique per process."""
    return f"{os.getpid()}@{socket.gethostname()}"


def claim(
    session: Session, model: LeasedModel, row_id: str, *, owner: str, lease_s: int, now: datetime | None = None
) -> bool:
    """Take the lease on an unfinished row unless another owner's lease is live; True when `owner` holds it now.

    One conditional UPDATE, so of two workers claiming at once exactly one wins (PostgreSQL re-reads the row after
    the other's commit; SQLite runs one writer at a time). The claim is part of the session's transaction: the caller
    commits it with whatever it records on the row. Claiming a row one already holds starts a new claim."""
    now = now or utcnow()
    result = session.execute(
        update(model)
        .where(
            model.id == row_id,
            model.status.not_in(FINAL[model]),
            or_(model.lease_owner.is_(None), model.lease_owner == owner, model.lease_expires_at < now),
        )
        .values(lease_owner=owner, lease_claimed_at=now, lease_expires_at=now + timedelta(seconds=lease_s))
        .execution_options(synchronize_session=False)
    )
    claimed = _rowcount(result) == 1
    row = session.get(model, row_id)
    if row is not None:
        session.refresh(row)
    return claimed


def still_held(session: Session, model: LeasedModel, row_id: str, *, owner: str) -> bool:
    """Whether `owner` still holds the row's lease, checked with an UPDATE that keeps the row locked until the caller
    commits (PostgreSQL): a result is stored only by the worker that holds the work, never over another's."""
    result = session.execute(
        update(model)
        .where(model.id == row_id, model.lease_owner == owner)
        .values(lease_owner=owner)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


def release(row: Leased) -> None:
    """Clear the lease (committed by the caller with the row's new state)."""
    row.lease_owner = row.lease_claimed_at = row.lease_expires_at = None


def renew(session: Session, *, owner: str, lease_s: int, max_hold_s: int, now: datetime | None = None) -> int:
    """Extend every lease `owner` holds on running work (one UPDATE per table), except claims older than `max_hold_s`
    (the task time limit: no task of theirs runs longer); how many were renewed. Commits."""
    now = now or utcnow()
    renewed = 0
    for model, running in RUNNING.items():
        result = session.execute(
            update(model)
            .where(
                model.lease_owner == owner,
                model.status == running,
                model.lease_claimed_at > now - timedelta(seconds=max_hold_s),
            )
            .values(lease_expires_at=now + timedelta(seconds=lease_s))
            .execution_options(synchronize_session=False)
        )
        renewed += _rowcount(result)
    session.commit()
    return renewed


def is_live(row: Leased, now: datetime | None = None) -> bool:
    """Someone holds the row and their lease has not lapsed."""
    return (
        row.lease_owner is not None
        and row.lease_expires_at is not None
        and as_utc(row.lease_expires_at) > (now or utcnow())
    )


def has_lapsed(row: Leased, now: datetime | None = None) -> bool:
    """The row was claimed, and its holder let the lease lapse without finishing (killed, or cut off)."""
    return row.lease_owner is not None and not is_live(row, now)


def _rowcount(result: object) -> int:
    return result.rowcount if isinstance(result, CursorResult) else 0
