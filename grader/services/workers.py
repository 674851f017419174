"""Which workers are alive and which queues they serve, from the heartbeats each worker writes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from grader.db.models import CheckpointEvaluation, GradingJob, JobEvaluation, WorkerHeartbeat, as_utc, utcnow
from grader.domain.status import EvaluationStatus, JobStatus
from grader.settings import Settings

QUEUES = ("cpu", "gpu", "regrade")
"""The queues a deployment needs served (the Celery app in `worker` declares the same three)."""
FORGET_AFTER = timedelta(days=1)
"""Rows of workers silent this long are deleted (each worker process start makes a new row)."""


@dataclass(frozen=True)
class LiveWorker:
    name: str
    host: str
    queues: tuple[str, ...]
    started_at: datetime
    last_seen_at: datetime


def beat(session: Session, *, name: str, host: str, pid: int, queues: list[str]) -> None:
    """Record that this worker is alive now (insert on its first beat; a restarted worker reuses its row)."""
    now = utcnow()
    row = session.get(WorkerHeartbeat, name)
    if row is None or row.pid != pid or row.stopped_at is not None:
        if row is None:
            row = WorkerHeartbeat(name=name)
            session.add(row)
        row.started_at, row.stopped_at = now, None
    row.host, row.pid, row.queues, row.last_seen_at = host, pid, ",".join(sorted(queues)), now
    session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.last_seen_at < now - FORGET_AFTER))
    session.commit()


def stopped(session: Session, *, name: str) -> None:
    """A clean shutdown: the worker stops counting as alive at once rather than after its heartbeats lapse."""
    row = session.get(WorkerHeartbeat, name)
    if row is not None:
        row.stopped_at = utcnow()
        session.commit()


def live_workers(session: Session, *, settings: Settings) -> list[LiveWorker]:
    cutoff = utcnow() - timedelta(seconds=settings.resolved_worker_dead_after_s)
    rows = session.scalars(
        select(WorkerHeartbeat)
        .where(WorkerHeartbeat.last_seen_at >= cutoff, WorkerHeartbeat.stopped_at.is_(None))
        .order_by(WorkerHeartbeat.name)
    )
    return [
        LiveWorker(
            name=row.name,
            host=row.host,
            queues=tuple(q for q in row.queues.split(",") if q),
            started_at=as_utc(row.started_at),
            last_seen_at=as_utc(row.last_seen_at),
        )
        for row in rows
    ]


def alive_by_queue(session: Session, *, settings: Settings) -> dict[str, int]:
    """Live workers per queue, every queue named (0 where none serves it)."""
    counts = dict.fromkeys(QUEUES, 0)
    for worker in live_workers(session, settings=settings):
        for queue in worker.queues:
            counts[queue] = counts.get(queue, 0) + 1
    return counts


def stall_note(session: Session, *, settings: Settings, job: GradingJob) -> str | None:
    """What an unfinished job waits for when no live worker serves that queue, in words for the student."""
    status = JobStatus(job.status)
    if status.is_final:
        return None
    queue = "cpu"
    if status is JobStatus.RUNNING:
        unfinished = [str(s) for s in EvaluationStatus if not s.is_final]
        waits_for_evaluation = session.scalar(
            select(CheckpointEvaluation.id)
            .join(JobEvaluation, JobEvaluation.evaluation_id == CheckpointEvaluation.id)
            .where(JobEvaluation.job_id == job.id, CheckpointEvaluation.status.in_(unfinished))
            .limit(1)
        )
        if waits_for_evaluation is not None:
            queue = "gpu"
        # Otherwise a grading worker checks the answers now, or will once its evaluations woke it: with none alive, the
        # job waits for one, even though an evaluation has just finished.
    if alive_by_queue(session, settings=settings)[queue]:
        return None
    work = "checkpoint evaluations" if queue == "gpu" else "grading"
    return f"no worker is running {work} right now; it continues as soon as one starts, and nothing is lost"
