"""Read models: what a submission looks like to a user of the API (and later the dashboard)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from grader.db.models import GradingJob, Submission, as_utc, utcnow
from grader.domain.status import JobStatus, Role
from grader.rubric.disclosure import is_released, part_view, visible_score
from grader.rubric.model import Rubric, Visibility
from grader.services.policy import describe_lateness, lateness
from grader.services.reviews import current_reviews, effective_parts


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
        "provenance": job.score.provenance if job.score else None,
    }


def released(submission: Submission, rubric: Rubric | None) -> bool:
    """Whether students see full feedback for this submission's assignment now."""
    released_at = submission.assignment.released_at
    return is_released(
        released_at=as_utc(released_at) if released_at else None,
        release_at=rubric.release_at if rubric else None,
        now=utcnow(),
    )


def describe_submission(submission: Submission, *, viewer_role: Role, rubric: Rubric | None) -> dict[str, Any]:
    """The submission with its current job's phases and the newest graded result, as `viewer_role` may see it:
    before release a student sees each part per its visibility (grader/rubric/disclosure.py), and a score over
    the parts whose points are shown."""
    current = submission.jobs[-1]
    graded = [job for job in submission.jobs if job.status == JobStatus.GRADED]
    latest = graded[-1] if graded else None
    view = describe_job(current)
    is_released = released(submission, rubric)
    disclosed = viewer_role.is_staff or is_released
    parts = _parts(submission, latest, rubric, disclosed=disclosed) if latest else []
    # reviewed points count; before release a student's score covers only the parts they see
    score = visible_score(parts) if latest and latest.score else None
    late = describe_lateness(submission, rubric) if rubric else None
    penalised = lateness(submission, rubric).apply(score) if rubric else score
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
        "score": penalised,
        "score_before_penalty": score,
        "late": late,
        "max_score": latest.score.max_score if latest and latest.score else None,
        "rubric_version": latest.score.rubric_version if latest and latest.score else None,
        "graded_by_job": latest.number if latest else None,
        "released": is_released,
        "parts": parts,
        "history": [describe_job(job) for job in submission.jobs] if viewer_role.is_staff else None,
        "status_url": f"/api/v1/submissions/{submission.id}",
    }


def _parts(submission: Submission, job: GradingJob, rubric: Rubric | None, *, disclosed: bool) -> list[dict[str, Any]]:
    visibility = {part.id: part.visibility for part in rubric.parts} if rubric else {}
    return [
        # a part the rubric no longer lists: shown at the most careful level that still shows points
        part_view(part, visibility=visibility.get(part["id"], Visibility.SCORE_ONLY), disclosed=disclosed)
        for part in effective_parts(job, current_reviews(submission))
    ]
