"""Grading jobs: queueing them, running them in the worker, and recording every phase.

A job reads the stored answer sheet, makes sure each uploaded checkpoint has an evaluation (queued on the
`gpu` queue and cached by checkpoint, preprocessing and evaluator version), and once every evaluation is
final, scores the sheet with the same core as `grader grade` and stores the report.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from grader import __version__
from grader.db.models import CheckpointEvaluation, GradingJob, JobEvaluation, PartResultRow, Score, Submission, utcnow
from grader.domain.results import GradeReport
from grader.domain.status import EvaluationStatus, JobStatus
from grader.rubric.engine import grade_sheet
from grader.rubric.model import Rubric, RubricCatalog
from grader.services import leases
from grader.services.dispatch import Dispatcher
from grader.services.evaluations import EvaluationPlan, needs_gpu, plan_evaluations
from grader.services.submissions import stored_sheet
from grader.settings import Settings
from grader.storage import ArtifactStore

log = logging.getLogger(__name__)


def mark_queued(session: Session, *, job_id: str) -> None:
    """Record that the job's message is on the queue (unless a worker already picked it up)."""
    session.execute(
        update(GradingJob)
        .where(GradingJob.id == job_id, GradingJob.status == str(JobStatus.RECEIVED))
        .values(status=str(JobStatus.QUEUED), queued_at=utcnow())
    )


FAIR_SHARE_WAIT = (
    "waiting for your earlier submission to finish grading first (each student's jobs take turns with everyone "
    "else's, so one student's burst never holds up the class); nothing to do, it starts on its own"
)


def queue_job(session: Session, *, job: GradingJob, dispatcher: Dispatcher, in_flight_limit: int | None = None) -> bool:
    """Send a committed job to the queue and record it; a broker failure leaves it `received` for requeue.

    `in_flight_limit`: fair share. A student with that many jobs queued or running already keeps this one
    `received` (stored, with a note) until one of theirs finishes and `queue_next_waiting` sends it, so another
    student's job waits behind at most that many of this student's, however many they submit."""
    session.commit()
    if in_flight_limit is not None:
        user_id = job.submission.user_id
        if _in_flight(session, user_id=user_id) >= in_flight_limit:
            job.detail = FAIR_SHARE_WAIT
            session.commit()
            return False
        oldest = _oldest_waiting(session, user_id=user_id)
        if oldest is not None and oldest.id != job.id and oldest.created_at <= job.created_at:
            # an earlier submission of the student's still waits: it goes first, this one waits its turn
            job.detail = FAIR_SHARE_WAIT
            job = oldest
    session.commit()  # no connection is held while the broker takes the message
    try:
        dispatcher.grade_job(job.id)
    except Exception as exc:  # any broker failure: the submission is stored, so say so instead of failing
        log.warning("could not queue job %s: %s", job.id, exc)
        job.detail = "stored; the queue is unreachable right now, the job will be queued when it is back"
        session.commit()
        return False
    mark_queued(session, job_id=job.id)
    session.commit()
    return True


def _oldest_waiting(session: Session, *, user_id: int) -> GradingJob | None:
    return session.scalar(
        select(GradingJob)
        .join(Submission, Submission.id == GradingJob.submission_id)
        .where(Submission.user_id == user_id, GradingJob.status == str(JobStatus.RECEIVED))
        .order_by(GradingJob.created_at, GradingJob.id)
        .limit(1)
    )


def _in_flight(session: Session, *, user_id: int) -> int:
    active = (str(JobStatus.QUEUED), str(JobStatus.RUNNING))
    query = (
        select(func.count())
        .select_from(GradingJob)
        .join(Submission, Submission.id == GradingJob.submission_id)
        .where(Submission.user_id == user_id, GradingJob.status.in_(active))
    )
    return int(session.scalar(query) or 0)


def queue_next_waiting(session: Session, *, job_id: str, dispatcher: Dispatcher, in_flight_limit: int) -> str | None:
    """After a job ends: queue its student's oldest job held back for fair share, if any (its id)."""
    finished = session.get(GradingJob, job_id)
    if finished is None or not JobStatus(finished.status).is_final:
        return None
    waiting = _oldest_waiting(session, user_id=finished.submission.user_id)
    if waiting is None:
        return None
    queued = queue_job(session, job=waiting, dispatcher=dispatcher, in_flight_limit=in_flight_limit)
    return waiting.id if queued else None


def start_regrade(session: Session, *, submission: Submission, reason: str = "regrade") -> GradingJob:
    """Add a new job to a submission; earlier jobs and their results stay as history."""
    number = max((job.number for job in submission.jobs), default=0) + 1
    job = GradingJob(submission_id=submission.id, number=number, reason=reason, status=str(JobStatus.RECEIVED))
    session.add(job)
    session.flush()
    return job


def run_job(
    session: Session,
    *,
    job_id: str,
    settings: Settings,
    dispatcher: Dispatcher,
    max_attempts: int,
    resumed: bool = False,
    worker: str | None = None,
) -> JobStatus:
    """Advance one job as far as it can go now; safe to call again with the same id (idempotent).

    `resumed` is set when a finished checkpoint evaluation wakes the job: that is not a new attempt. `worker`: the
    lease owner (the Celery node name); while another worker holds the job under a live lease this does nothing.
    """
    job = session.get(GradingJob, job_id)
    if job is None:
        # Not ours: a message from another deployment sharing the broker, or a database that was reset.
        log.warning("job %s is not in this worker's database; check that API and workers share one", job_id)
        return JobStatus.FAILED
    status = JobStatus(job.status)
    if status.is_final:
        return status
    owner = worker or leases.default_owner()
    if not leases.claim(session, GradingJob, job.id, owner=owner, lease_s=settings.resolved_lease_s):
        log.info("job %s is held by %s; this delivery does nothing", job.id, job.lease_owner)
        session.rollback()
        return JobStatus(job.status)
    if not resumed:
        job.attempts += 1
    if job.attempts > max_attempts:
        return fail_job(session, job=job, detail=f"gave up after {max_attempts} attempts: {job.detail}")
    _mark_running(job)
    session.commit()

    rubric = RubricCatalog(settings.rubrics_dir).get(job.submission.assignment_id)
    sheet = stored_sheet(job.submission, ArtifactStore(settings.resolved_storage_dir))
    plan = plan_evaluations(session, submission=job.submission, sheet=sheet, since=job.started_at, settings=settings)
    if not plan.ready:
        _wait_for(session, job=job, plan=plan, dispatcher=dispatcher)
        return JobStatus.RUNNING
    report = grade_sheet(sheet, rubric, plan.results)
    if not leases.still_held(session, GradingJob, job.id, owner=owner):
        # Our lease lapsed (the database was out of reach for longer than a lease) and another worker took the job.
        session.rollback()
        log.warning("job %s: lost its lease while grading; the result of the worker that holds it counts", job.id)
        return JobStatus(job.status)
    store_report(session, job=job, report=report, rubric=rubric, evaluations=plan.results)
    return JobStatus.GRADED


def _mark_running(job: GradingJob) -> None:
    now = utcnow()
    job.status = str(JobStatus.RUNNING)
    job.queued_at = job.queued_at or now
    job.started_at = job.started_at or now
    job.worker = socket.gethostname()
    job.detail = "checking answers"


def _wait_for(session: Session, *, job: GradingJob, plan: EvaluationPlan, dispatcher: Dispatcher) -> None:
    """Record what the job waits for and let go of it: the evaluation that finishes last wakes it."""
    job.detail = "waiting for checkpoint evaluation: " + ", ".join(
        f"{label} ({evaluation.status})" for label, evaluation in plan.pending.items()
    )
    for evaluation in plan.pending.values():
        if session.get(JobEvaluation, (job.id, evaluation.id)) is None:
            session.add(JobEvaluation(job_id=job.id, evaluation_id=evaluation.id))
    to_send = [evaluation for evaluation in plan.pending.values() if evaluation.status == "pending"]
    for evaluation in to_send:
        evaluation.status = "queued"
        evaluation.queued_at = utcnow()
    leases.release(job)
    session.commit()
    for evaluation in to_send:
        dispatcher.evaluate_checkpoint(evaluation.id, job.id, gpu=needs_gpu(evaluation))
    # An evaluation that finished while this worker held the job sent its wake-up to a held job, which did nothing;
    # from the commit above on, a finishing evaluation sees the job waiting and unheld. So look once more.
    ids = [evaluation.id for evaluation in plan.pending.values()]
    statuses = session.scalars(select(CheckpointEvaluation.status).where(CheckpointEvaluation.id.in_(ids)))
    if all(EvaluationStatus(status).is_final for status in statuses):
        dispatcher.grade_job(job.id, resumed=True)


def jobs_waiting_on(session: Session, *, evaluation_id: str) -> list[str]:
    """Ids of unfinished jobs that wait for this evaluation (several students may upload the same file)."""
    query = (
        select(GradingJob.id)
        .join(JobEvaluation, JobEvaluation.job_id == GradingJob.id)
        .where(JobEvaluation.evaluation_id == evaluation_id, GradingJob.status == str(JobStatus.RUNNING))
    )
    return list(session.scalars(query))


EVALUATIONS_DONE = "checkpoint evaluation finished; grading continues as soon as a grading worker takes it"


def wake_waiting_jobs(session: Session, *, evaluation_id: str, job_id: str, dispatcher: Dispatcher) -> list[str]:
    """After an evaluation is final: wake every job waiting on it (and `job_id`, the one that asked for it).

    A job none of whose evaluations is unfinished any longer says so at once, rather than still "waiting for
    checkpoint evaluation" until a grading worker takes it (none may be running). That note leaves `updated_at` as it
    was: the sweeper reads `updated_at` as the job's own progress, and resumes a job that nothing touched since its
    evaluations finished (a wake-up lost with a killed worker)."""
    waiting = sorted(set(jobs_waiting_on(session, evaluation_id=evaluation_id)) | {job_id})
    unfinished = [str(status) for status in EvaluationStatus if not status.is_final]
    still_waiting = select(JobEvaluation.job_id).join(
        CheckpointEvaluation, CheckpointEvaluation.id == JobEvaluation.evaluation_id
    )
    session.execute(
        update(GradingJob)
        .where(
            GradingJob.id.in_(waiting),
            GradingJob.status == str(JobStatus.RUNNING),
            GradingJob.lease_owner.is_(None),  # a job a worker holds says what that worker does
            GradingJob.id.not_in(still_waiting.where(CheckpointEvaluation.status.in_(unfinished))),
        )
        .values(detail=EVALUATIONS_DONE, updated_at=GradingJob.updated_at)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    for waiting_job in waiting:
        dispatcher.grade_job(waiting_job, resumed=True)
    return waiting


PROVENANCE_KEYS = (
    "status",
    "checkpoint_sha256",
    "code_sha256",
    "mode",
    "isolation",
    "evaluator_version",
    "torch_version",
    "device",
)


def store_report(
    session: Session,
    *,
    job: GradingJob,
    report: GradeReport,
    rubric: Rubric,
    evaluations: Mapping[str, Mapping[str, Any]] | None,
    commit: bool = True,
) -> None:
    session.execute(PartResultRow.__table__.delete().where(PartResultRow.job_id == job.id))
    for position, part in enumerate(report.parts):
        session.add(
            PartResultRow(
                job_id=job.id,
                position=position,
                part_id=part.id,
                status=str(part.status),
                points=part.points,
                max_points=part.max_points,
                feedback=part.feedback,
                evidence=part.evidence,
                public_feedback=part.public_feedback,
            )
        )
    session.add(
        Score(
            job_id=job.id,
            score=report.score,
            max_score=report.max_score,
            rubric_version=report.rubric_version,
            rubric_sha256=rubric.sha256,
            provenance=score_provenance(job, rubric, evaluations),
        )
    )
    job.status = str(JobStatus.GRADED)
    job.finished_at = utcnow()
    job.detail = ""
    leases.release(job)
    if commit:
        session.commit()


def score_provenance(
    job: GradingJob, rubric: Rubric, evaluations: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, Any]:
    """What produced a score, stored with it: which grader, rubric, files, and per checkpoint which evaluator,
    torch, device, mode and test set. `evaluations`: the results the score used (None: no checkpoint part was
    checked again, so the previous score's checkpoint provenance still holds)."""
    checkpoints: dict[str, Any] = {}
    if evaluations is None:
        earlier = [j for j in job.submission.jobs if j.id != job.id and j.score and j.score.provenance]
        checkpoints = dict(earlier[-1].score.provenance.get("checkpoints", {})) if earlier else {}  # type: ignore[union-attr]
    else:
        for label, result in sorted(evaluations.items()):
            checkpoints[label] = {key: result.get(key) for key in PROVENANCE_KEYS}
    provenance: dict[str, Any] = {
        "grader_version": __version__,
        "rubric_version": rubric.version,
        "rubric_sha256": rubric.sha256,
        "files": {file.field: file.artifact_sha256 for file in job.submission.files},
        "checkpoints": checkpoints,
    }
    if any(entry.get("status") == "evaluated" for entry in checkpoints.values()):
        # an evaluation refuses any other copy of the test set, so these are the hashes every result above used
        from grader.evaluation.cifar import TEST_LABELS_SHA256, TEST_PIXELS_SHA256

        provenance["test_set"] = {"pixels_sha256": TEST_PIXELS_SHA256, "labels_sha256": TEST_LABELS_SHA256}
    return provenance


def fail_job(session: Session, *, job: GradingJob, detail: str) -> JobStatus:
    job.status = str(JobStatus.FAILED)
    job.finished_at = utcnow()
    job.detail = detail
    leases.release(job)
    session.commit()
    return JobStatus.FAILED


def stale_jobs(session: Session, *, older_than: timedelta) -> list[GradingJob]:
    """Jobs that never reached the queue (the broker was down when they were received)."""
    cutoff = utcnow() - older_than
    query = select(GradingJob).where(GradingJob.status == str(JobStatus.RECEIVED), GradingJob.created_at < cutoff)
    return list(session.scalars(query))


def fail_job_by_id(session: Session, *, job_id: str, detail: str) -> None:
    job = session.get(GradingJob, job_id)
    if job is not None and not JobStatus(job.status).is_final:
        fail_job(session, job=job, detail=detail)


def note_problem(session: Session, *, job_id: str, detail: str) -> None:
    """Show a transient problem on the job (it will be retried) so that it never looks silently stuck, and let go of
    it: the retry may be delivered to another worker."""
    job = session.get(GradingJob, job_id)
    if job is not None and not JobStatus(job.status).is_final:
        job.detail = f"retrying after a grader problem: {detail}"
        leases.release(job)
        session.commit()


def submission_id_of(session: Session, *, job_id: str) -> str | None:
    """The submission a job grades (for the worker's log lines), None for a job not in this database."""
    return session.scalar(select(GradingJob.submission_id).where(GradingJob.id == job_id))
