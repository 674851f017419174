"""Resending work that no worker is doing any more, so that no job stays stuck in a phase.

A worker killed mid-task (out of memory, machine lost) may take its message with it: the embedded broker keeps no
unacknowledged copies. Each worker sweeps periodically:

- a job still `received` after `requeue_after_s` never reached the queue: it is queued now;
- work a worker claimed is resent once its lease has lapsed (grader.services.leases), never while it is live: a
  resend of work that is still running would run it twice at once;
- work nobody holds (queued and not started, or a job waiting for its evaluations) that nothing touched for
  `resolved_stuck_after_s` is resent, its message presumed lost;
- a job waiting for evaluations that have all finished, that nothing touched since, is woken after `requeue_after_s`:
  the wake-up sent when the last one finished was lost.

Every task is idempotent and a delivery of held work does nothing, so a resend that turns out unnecessary costs a
quick no-op.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from grader.db.models import CheckpointEvaluation, GradingJob, JobEvaluation, Regrade, as_utc, utcnow
from grader.domain.status import EvaluationStatus, JobStatus
from grader.services import leases
from grader.services.dispatch import Dispatcher
from grader.services.evaluations import needs_gpu
from grader.services.jobs import queue_job, stale_jobs
from grader.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    queued: list[str] = field(default_factory=list)
    """Jobs that had never reached the queue."""
    resent_jobs: list[str] = field(default_factory=list)
    resent_evaluations: list[str] = field(default_factory=list)
    resent_regrades: list[str] = field(default_factory=list)
    """Batch regrades whose next chunk never reached the queue, or whose worker went silent."""
    resumed_jobs: list[str] = field(default_factory=list)
    """Jobs whose evaluations had all finished but whose wake-up was lost."""


@dataclass(frozen=True)
class _Clock:
    now: datetime
    stuck: datetime
    """Unheld work untouched since before this is presumed lost."""
    requeue: datetime


def sweep(session: Session, *, settings: Settings, dispatcher: Dispatcher, now: datetime | None = None) -> SweepReport:
    report = SweepReport()
    now = now or utcnow()
    clock = _Clock(
        now=now,
        stuck=now - timedelta(seconds=settings.resolved_stuck_after_s),
        requeue=now - timedelta(seconds=settings.requeue_after_s),
    )
    for job in stale_jobs(session, older_than=timedelta(seconds=settings.requeue_after_s)):
        if queue_job(session, job=job, dispatcher=dispatcher, in_flight_limit=settings.jobs_in_flight_per_student):
            report.queued.append(job.id)
    for job in _candidate_jobs(session, clock):
        if _resend_job(session, job=job, clock=clock, dispatcher=dispatcher, report=report):
            job.updated_at = now
        session.commit()
    for regrade in _unheld_regrades(session, now):
        lapsed = leases.has_lapsed(regrade, now)
        cutoff = clock.requeue if regrade.status == "queued" else clock.stuck
        if lapsed or as_utc(regrade.updated_at) < cutoff:
            dispatcher.run_regrade(regrade.id)
            leases.release(regrade)
            regrade.updated_at = now
            report.resent_regrades.append(regrade.id)
        session.commit()
    if any(vars(report).values()):
        log.warning("sweep resent work: %s", report)
    return report


def _unheld_regrades(session: Session, now: datetime) -> list[Regrade]:
    """Unfinished regrades no live lease covers: never claimed, between chunks, or held by a worker gone silent."""
    query = select(Regrade).where(
        Regrade.status.in_(("queued", "running")),
        or_(Regrade.lease_expires_at.is_(None), Regrade.lease_expires_at <= now),
    )
    return list(session.scalars(query))


def _candidate_jobs(session: Session, clock: _Clock) -> list[GradingJob]:
    """Unheld unfinished jobs that `_resend_job` may act on: narrowed in the database, since jobs waiting behind a
    long evaluation queue are many and need nothing."""
    linked = select(JobEvaluation.job_id).join(
        CheckpointEvaluation, CheckpointEvaluation.id == JobEvaluation.evaluation_id
    )
    unfinished = [str(status) for status in EvaluationStatus if not status.is_final]
    query = select(GradingJob).where(
        GradingJob.status.in_((str(JobStatus.QUEUED), str(JobStatus.RUNNING))),
        or_(GradingJob.lease_expires_at.is_(None), GradingJob.lease_expires_at <= clock.now),
        or_(
            GradingJob.lease_owner.is_not(None),  # held by a worker that went silent
            GradingJob.updated_at < clock.stuck,
            GradingJob.id.in_(
                linked.where(
                    CheckpointEvaluation.lease_owner.is_not(None), CheckpointEvaluation.lease_expires_at <= clock.now
                )
            ),
            and_(  # perhaps a lost wake-up
                GradingJob.id.in_(linked.where(CheckpointEvaluation.finished_at < clock.requeue)),
                GradingJob.id.not_in(linked.where(CheckpointEvaluation.status.in_(unfinished))),
            ),
        ),
    )
    return list(session.scalars(query))


def _resend_job(
    session: Session, *, job: GradingJob, clock: _Clock, dispatcher: Dispatcher, report: SweepReport
) -> bool:
    """Resend what the job needs now; True when something was sent."""
    if leases.has_lapsed(job, clock.now):
        # Its worker died while grading it (the job is held only while a worker runs it): a new attempt.
        leases.release(job)
        dispatcher.grade_job(job.id)
        report.resent_jobs.append(job.id)
        return True
    evaluations = list(
        session.scalars(
            select(CheckpointEvaluation)
            .join(JobEvaluation, JobEvaluation.evaluation_id == CheckpointEvaluation.id)
            .where(JobEvaluation.job_id == job.id)
        )
    )
    touched = as_utc(job.updated_at)
    unfinished = [row for row in evaluations if not EvaluationStatus(row.status).is_final]
    if not unfinished:
        finished = max((as_utc(row.finished_at) for row in evaluations if row.finished_at is not None), default=None)
        lost_wake_up = finished is not None and finished < clock.requeue and touched <= finished
        if touched < clock.stuck or lost_wake_up:
            # Either the job's own message was lost, or the wake-up after its evaluations was.
            dispatcher.grade_job(job.id, resumed=bool(evaluations))
            (report.resumed_jobs if evaluations else report.resent_jobs).append(job.id)
            return True
        return False
    sent = False
    for row in unfinished:
        if leases.is_live(row, clock.now) or row.id in report.resent_evaluations:
            continue  # a worker is evaluating it right now, or another job waiting on it had it resent
        last_seen = as_utc(row.started_at or row.queued_at or row.created_at)
        if leases.has_lapsed(row, clock.now) or (touched < clock.stuck and last_seen < clock.stuck):
            leases.release(row)
            dispatcher.evaluate_checkpoint(row.id, job.id, gpu=needs_gpu(row))
            report.resent_evaluations.append(row.id)
            sent = True
    return sent
