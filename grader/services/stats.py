"""How the class did on an assignment. Per-part results and accuracies are aggregated by the database over each
student's latest submission and its newest graded job, with reviewed points in place of automatic ones; the score
histogram is the gradebook's (the policy's counting rule, late penalties applied on read), so the two never differ.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from sqlalchemy import Float, and_, case, func, select
from sqlalchemy.orm import Session

from grader.db.models import (
    CheckpointEvaluation,
    GradingJob,
    PartResultRow,
    PartReview,
    Submission,
    User,
    as_utc,
    utcnow,
)
from grader.domain.status import EvaluationStatus, JobStatus, Role
from grader.rubric.model import Rubric
from grader.services import workers
from grader.services.gradebook import gradebook_rows
from grader.settings import Settings

BINS = 10
TOP_FEEDBACK = 3
ACCURACY_CHECKER = "cifar10_accuracy"


def assignment_stats(session: Session, *, rubric: Rubric) -> dict[str, Any]:
    counting = _counting_submissions(rubric.assignment)
    newest = (
        select(GradingJob.submission_id, func.max(GradingJob.number).label("number"))
        .group_by(GradingJob.submission_id)
        .subquery()
    )
    status_rows = session.execute(
        select(GradingJob.status, func.count())
        .join(newest, and_(newest.c.submission_id == GradingJob.submission_id, newest.c.number == GradingJob.number))
        .join(counting, counting.c.id == GradingJob.submission_id)
        .group_by(GradingJob.status)
    ).all()
    submitters = select(counting.c.user_id)
    missing = session.scalar(
        select(func.count()).select_from(User).where(User.role == str(Role.STUDENT), User.id.not_in(submitters))
    )
    parts = _effective_parts(counting)
    # the score histogram is the gradebook's (policy's counting rule, late penalties applied on read)
    scores = [float(row["score"]) for row in gradebook_rows(session, rubric=rubric) if row["score"] is not None]
    return {
        "assignment": rubric.assignment,
        "students": sum(count for _, count in status_rows) + (missing or 0),
        "status_counts": {**{status: count for status, count in status_rows}, "missing": missing or 0},
        "scores": _distribution(scores, rubric.max_score),
        "parts": _part_stats(session, parts, rubric),
        "accuracy": _accuracy(session, parts, rubric),
        "submissions_per_hour": _per_hour(session, rubric.assignment),
    }


def _counting_submissions(assignment_id: str) -> Any:
    """Each student's latest submission of the assignment (id, user_id)."""
    latest = (
        select(Submission.user_id, func.max(Submission.received_at).label("received_at"))
        .where(Submission.assignment_id == assignment_id)
        .group_by(Submission.user_id)
        .subquery()
    )
    return (
        select(Submission.id, Submission.user_id)
        .join(latest, and_(latest.c.user_id == Submission.user_id, latest.c.received_at == Submission.received_at))
        .where(Submission.assignment_id == assignment_id)
        .subquery()
    )


def _effective_parts(counting: Any) -> Any:
    """(job_id, part_id, status, points, max_points, feedback, evidence) of each counting submission's newest
    graded job, a reviewed part's points and status from its newest review."""
    graded = (
        select(GradingJob.submission_id, func.max(GradingJob.number).label("number"))
        .where(GradingJob.status == str(JobStatus.GRADED))
        .group_by(GradingJob.submission_id)
        .subquery()
    )
    newest_review = (
        select(PartReview.submission_id, PartReview.part_id, func.max(PartReview.id).label("id"))
        .group_by(PartReview.submission_id, PartReview.part_id)
        .subquery()
    )
    review = PartReview.__table__.alias("review")
    reviewed_status = case(
        (review.c.points >= PartResultRow.max_points, "correct"),
        (review.c.points <= 0, "incorrect"),
        else_="partial",
    )
    return (
        select(
            PartResultRow.job_id,
            PartResultRow.part_id,
            case((review.c.id.is_(None), PartResultRow.status), else_=reviewed_status).label("status"),
            func.coalesce(review.c.points, PartResultRow.points).cast(Float).label("points"),
            PartResultRow.feedback,
            PartResultRow.evidence,
        )
        .join(GradingJob, GradingJob.id == PartResultRow.job_id)
        .join(graded, and_(graded.c.submission_id == GradingJob.submission_id, graded.c.number == GradingJob.number))
        .join(counting, counting.c.id == GradingJob.submission_id)
        .outerjoin(
            newest_review,
            and_(
                newest_review.c.submission_id == GradingJob.submission_id,
                newest_review.c.part_id == PartResultRow.part_id,
            ),
        )
        .outerjoin(review, review.c.id == newest_review.c.id)
        .subquery()
    )


def _distribution(scores: list[float], max_score: float) -> dict[str, Any]:
    width = max_score / BINS if max_score > 0 else 1.0
    counts = [0] * BINS
    for score in scores:
        counts[min(int(score // width), BINS - 1) if score > 0 else 0] += 1
    quartiles = statistics.quantiles(scores, n=4, method="inclusive") if len(scores) >= 2 else scores * 3
    return {
        "count": len(scores),
        "max_score": max_score,
        "mean": round(statistics.fmean(scores), 4) if scores else None,
        "median": round(statistics.median(scores), 4) if scores else None,
        "quartiles": [round(q, 4) for q in quartiles] if scores else None,
        "bins": [
            {"from": round(i * width, 4), "to": round((i + 1) * width, 4), "count": counts[i]} for i in range(BINS)
        ],
    }


def _part_stats(session: Session, parts: Any, rubric: Rubric) -> dict[str, Any]:
    by_status = session.execute(
        select(parts.c.part_id, parts.c.status, func.count(), func.avg(parts.c.points)).group_by(
            parts.c.part_id, parts.c.status
        )
    ).all()
    feedback = session.execute(
        select(parts.c.part_id, parts.c.feedback, func.count().label("n"))
        .where(parts.c.status != "correct")
        .group_by(parts.c.part_id, parts.c.feedback)
        .order_by(parts.c.part_id, func.count().desc())
    ).all()
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    sums: dict[str, float] = defaultdict(float)
    for part_id, status, count, average in by_status:
        counts[part_id][status] = count
        sums[part_id] += float(average or 0) * count
    common: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for part_id, text, count in feedback:
        if len(common[part_id]) < TOP_FEEDBACK:
            common[part_id].append({"feedback": text, "count": count})
    result = {}
    for spec in rubric.parts:
        total = sum(counts[spec.id].values())
        shares = {
            status: round(counts[spec.id].get(status, 0) / total, 4) if total else 0.0
            for status in ("correct", "partial", "incorrect", "invalid", "missing", "needs_review", "error")
        }
        result[spec.id] = {
            "title": spec.title,
            "max_points": spec.points,
            "count": total,
            "mean_points": round(sums[spec.id] / total, 4) if total else None,
            "share": shares,
            "common_feedback": common[spec.id],
        }
    return result


def _accuracy(session: Session, parts: Any, rubric: Rubric) -> dict[str, Any]:
    """Q1 test accuracy per checkpoint label: how many at ≥ 90 %, 80–90 %, < 80 %, and a 10-point histogram."""
    found = {}
    for spec in rubric.parts:
        if spec.checker != ACCURACY_CHECKER:
            continue
        accuracy = parts.c.evidence["accuracy_percent"].as_float()
        bins = [
            func.sum(
                case((and_(accuracy >= 10 * i, accuracy < 10 * (i + 1) if i < 9 else accuracy <= 100), 1), else_=0)
            )
            for i in range(10)
        ]
        row = session.execute(
            select(
                func.count(accuracy),
                func.sum(case((accuracy >= 90, 1), else_=0)),
                func.sum(case((and_(accuracy >= 80, accuracy < 90), 1), else_=0)),
                func.sum(case((accuracy < 80, 1), else_=0)),
                func.avg(accuracy),
                *bins,
            ).where(parts.c.part_id == spec.id)
        ).one()
        found[str(spec.params.get("checkpoint", spec.id))] = {
            "part": spec.id,
            "evaluated": int(row[0] or 0),
            "at_least_90": int(row[1] or 0),
            "from_80_to_90": int(row[2] or 0),
            "below_80": int(row[3] or 0),
            "mean_percent": round(float(row[4]), 4) if row[4] is not None else None,
            "bins": [{"from": 10 * i, "to": 10 * (i + 1), "count": int(row[5 + i] or 0)} for i in range(10)],
        }
    return found


def _per_hour(session: Session, assignment_id: str) -> list[dict[str, Any]]:
    """Submissions received per hour (UTC), oldest first."""
    if session.get_bind().dialect.name == "postgresql":
        hour = func.to_char(func.date_trunc("hour", Submission.received_at), 'YYYY-MM-DD"T"HH24:00:00Z')
    else:
        hour = func.strftime("%Y-%m-%dT%H:00:00Z", Submission.received_at)
    rows = session.execute(
        select(hour, func.count()).where(Submission.assignment_id == assignment_id).group_by(hour).order_by(hour)
    ).all()
    return [{"hour": moment, "count": count} for moment, count in rows]


def queue_snapshot(session: Session, *, settings: Settings) -> dict[str, Any]:
    """Grading jobs waiting, running and failed right now, how long the oldest waiting one has waited, checkpoint
    evaluations waiting, and the live workers per queue (from their heartbeats)."""
    waiting = (str(JobStatus.RECEIVED), str(JobStatus.QUEUED))
    counts = dict(
        session.execute(
            select(GradingJob.status, func.count())
            .where(GradingJob.status.in_([*waiting, str(JobStatus.RUNNING), str(JobStatus.FAILED)]))
            .group_by(GradingJob.status)
        ).all()
    )
    oldest = session.scalar(select(func.min(GradingJob.created_at)).where(GradingJob.status.in_(waiting)))
    age = (utcnow() - as_utc(oldest)).total_seconds() if oldest is not None else None
    evaluations_waiting = session.scalar(
        select(func.count())
        .select_from(CheckpointEvaluation)
        .where(CheckpointEvaluation.status.in_([str(EvaluationStatus.PENDING), str(EvaluationStatus.QUEUED)]))
    )
    return {
        "waiting": sum(counts.get(status, 0) for status in waiting),
        "running": counts.get(str(JobStatus.RUNNING), 0),
        "failed": counts.get(str(JobStatus.FAILED), 0),
        "oldest_waiting_seconds": round(age, 1) if age is not None else None,
        "evaluations_waiting": int(evaluations_waiting or 0),
        "workers_alive": workers.alive_by_queue(session, settings=settings),
    }
