"""Read models: what a submission looks like to a user of the API (and later the dashboard)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from grader.db.models import GradingJob, Submission, as_utc
from grader.domain.status import JobStatus, Role
from grader.rubric.model import Rubric, Visibility


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else as_utc(moment).isoformat().replace("+00:00", "Z")


def describe_job(job: GradingJob) -> dict[str, Any]:
    status = JobStatus(job.status)
    return {
        "number": job.number,
        "reason": job.reason,
        "status": str(status),
        "detail": job.detail,
        "attempts": job.attempts,
        "worker": job.worker,
        "phases": {
            "received": _iso(job.submission.received_at if job.number == 1 else job.created_at),
            "queued": _iso(job.queued_at),
            "running": _iso(job.started_at),
            "graded": _iso(job.finished_at) if status is JobStatus.GRADED else None,
            "failed": _iso(job.finished_at) if status is JobStatus.FAILED else None,
        },
        "score": job.score.score if job.score else None,
        "max_score": job.score.max_score if job.score else None,
        "rubric_version": job.score.rubric_version if job.score else None,
    }


def describe_submission(submission: Submission, *, viewer_role: Role, rubric: Rubric | None) -> dict[str, Any]:
    """The submission with its current job's phases and the newest graded result."""
    current = submission.jobs[-1]
    graded = [job for job in submission.jobs if job.status == JobStatus.GRADED]
    latest = graded[-1] if graded else None
    view = describe_job(current)
    return {
        "id": submission.id,
        "assignment": submission.assignment_id,
        "user": submission.user.username,
        "received_at": _iso(submission.received_at),
        "status": view["status"],
        "detail": view["detail"],
        "phases": view["phases"],
        "attempts": view["attempts"],
        "files": [
            {"field": f.field, "name": f.original_name, "size": f.size, "sha256": f.artifact_sha256}
            for f in submission.files
        ],
        "score": latest.score.score if latest and latest.score else None,
        "max_score": latest.score.max_score if latest and latest.score else None,
        "rubric_version": latest.score.rubric_version if latest and latest.score else None,
        "graded_by_job": latest.number if latest else None,
        "parts": _parts(latest, viewer_role, rubric) if latest else [],
        "history": [describe_job(job) for job in submission.jobs] if viewer_role.is_staff else None,
        "status_url": f"/api/v1/submissions/{submission.id}",
    }


def _parts(job: GradingJob, viewer_role: Role, rubric: Rubric | None) -> list[dict[str, Any]]:
    visibility = {part.id: part.visibility for part in rubric.parts} if rubric else {}
    parts = []
    for row in job.results:
        seen_as = Visibility.FULL if viewer_role.is_staff else visibility.get(row.part_id, Visibility.FULL)
        if seen_as is Visibility.HIDDEN:
            continue
        part: dict[str, Any] = {
            "id": row.part_id,
            "status": row.status,
            "points": row.points,
            "max_points": row.max_points,
            "feedback": row.feedback if seen_as is Visibility.FULL else "",
            "evidence": row.evidence if seen_as is Visibility.FULL else None,
        }
        parts.append(part)
    return parts
