"""Resending work whose worker went silent, so that no job stays stuck in a phase.

A worker killed mid-task (out of memory, machine lost) may take its message with it: the embedded broker
keeps no unacknowledged copies. Each worker sweeps periodically; every task is idempotent, so a resend that
turns out unnecessary only costs a quick no-op.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from grader.db.models import CheckpointEvaluation, GradingJob, JobEvaluation, Regrade, as_utc, utcnow
from grader.domain.status import EvaluationStatus, JobStatus
from grader.services.dispatch import Dispatcher
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


def sweep(session: Session, *, settings: Settings, dispatcher: Dispatcher) -> SweepReport:
    report = SweepReport()
    for job in stale_jobs(session, older_than=timedelta(seconds=settings.requeue_after_s)):
        if queue_job(session, job=job, dispatcher=dispatcher, in_flight_limit=settings.jobs_in_flight_per_student):
            report.queued.append(job.id)
    cutoff = utcnow() - timedelta(seconds=settings.resolved_stuck_after_s)
    for job in _silent_jobs(session, cutoff):
        _resend(session, job=job, cutoff=cutoff, dispatcher=dispatcher, report=report)
        job.updated_at = utcnow()
        session.commit()
    for regrade in _silent_regrades(session, settings):
        dispatcher.run_regrade(regrade.id)
        regrade.updated_at = utcnow()
        session.commit()
        report.resent_regrades.append(regrade.id)
    if report.queued or report.resent_jobs or report.resent_evaluations or report.resent_regrades:
        log.warning("sweep resent work: %s", report)
    return report


def _silent_regrades(session: Session, settings: Settings) -> list[Regrade]:
    """Queued ones the queue never got (after `requeue_after_s`), running ones without progress for as long as
    a silent job (a chunk takes seconds, so a resend never doubles live work)."""
    queued_cutoff = utcnow() - timedelta(seconds=settings.requeue_after_s)
    running_cutoff = utcnow() - timedelta(seconds=settings.resolved_stuck_after_s)
    query = select(Regrade).where(
        ((Regrade.status == "queued") & (Regrade.updated_at < queued_cutoff))
        | ((Regrade.status == "running") & (Regrade.updated_at < running_cutoff))
    )
    return list(session.scalars(query))


def _silent_jobs(session: Session, cutoff: datetime) -> list[GradingJob]:
    active = (str(JobStatus.QUEUED), str(JobStatus.RUNNING))
    query = select(GradingJob).where(GradingJob.status.in_(active), GradingJob.updated_at < cutoff)
    return list(session.scalars(query))


def _resend(
    session: Session, *, job: GradingJob, cutoff: datetime, dispatcher: Dispatcher, report: SweepReport
) -> None:
    evaluations = list(
        session.scalars(
            select(CheckpointEvaluation)
            .join(JobEvaluation, JobEvaluation.evaluation_id == CheckpointEvaluation.id)
            .where(JobEvaluation.job_id == job.id)
        )
    )
    unfinished = [row for row in evaluations if not EvaluationStatus(row.status).is_final]
    if not unfinished:
        # Either the job's own run was lost, or the wake-up after its evaluations was.
        dispatcher.grade_job(job.id, resumed=bool(evaluations))
        report.resent_jobs.append(job.id)
        return
    for row in unfinished:
        last_seen = row.started_at or row.queued_at or row.created_at
        if as_utc(last_seen) < cutoff:
            dispatcher.evaluate_checkpoint(row.id, job.id)
            report.resent_evaluations.append(row.id)
