"""Human scores for parts: written and code parts a checker leaves to a person, and overrides of automatic parts.

A review is stored apart from the automatic results (append-only; the newest per part counts), so a regrade
never erases it. An override of an automatic part needs a reason; it remembers the automatic result it was made
over, and when a regrade changes that result the part is flagged (`stale`) for another look.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from grader.db.models import GradingJob, PartResultRow, PartReview, Submission, User, as_utc
from grader.domain.results import PartStatus
from grader.domain.status import JobStatus
from grader.errors import InputError, NotFound
from grader.rubric.model import Rubric
from grader.rubric.registry import MISSING, lookup
from grader.services.submissions import stored_sheet
from grader.storage import ArtifactStore

MAX_COMMENT = 20_000


def latest_graded_job(submission: Submission) -> GradingJob | None:
    graded = [job for job in submission.jobs if job.status == JobStatus.GRADED]
    return graded[-1] if graded else None


def current_reviews(submission: Submission) -> dict[str, PartReview]:
    """The newest review of each part."""
    return {review.part_id: review for review in submission.reviews}


def review_part(
    session: Session,
    *,
    submission: Submission,
    part_id: str,
    points: float,
    comment: str,
    reason: str | None,
    reviewer: User,
    rubric: Rubric,
) -> PartReview:
    try:
        spec = rubric.part(part_id)
    except KeyError:
        raise NotFound(f"assignment {rubric.assignment} has no part {part_id!r}", field="part") from None
    if isinstance(points, bool) or not math.isfinite(points) or not 0 <= points <= spec.points:
        raise InputError(f"points must be a number from 0 to {spec.points:g} for {part_id}", field="points")
    if len(comment) > MAX_COMMENT:
        raise InputError(f"the comment is longer than {MAX_COMMENT} characters", field="comment")
    job = latest_graded_job(submission)
    row = _row(job, part_id)
    if row is None:
        raise InputError("the submission has not been graded yet; review it once it is", field="submission_id")
    automatic = row.status != PartStatus.NEEDS_REVIEW
    reason = (reason or "").strip() or None
    if automatic and reason is None:
        raise InputError(
            f"{part_id} was scored automatically ({row.status}, {row.points:g} points): an override needs a reason",
            field="reason",
        )
    review = PartReview(
        submission_id=submission.id,
        part_id=part_id,
        points=float(points),
        comment=comment,
        reason=reason,
        reviewer_id=reviewer.id,
        auto_status=row.status,
        auto_points=row.points,
    )
    session.add(review)
    session.commit()
    session.refresh(submission)
    return review


def _row(job: GradingJob | None, part_id: str) -> PartResultRow | None:
    if job is None:
        return None
    return next((row for row in job.results if row.part_id == part_id), None)


def effective_parts(job: GradingJob, reviews: dict[str, PartReview]) -> list[dict[str, Any]]:
    """Every part of `job` with reviews applied: a reviewed part's points are the reviewer's and its status
    follows from them (all points: correct, none: incorrect, else partial)."""
    parts = []
    for row in job.results:
        part: dict[str, Any] = {
            "id": row.part_id,
            "status": row.status,
            "points": row.points,
            "max_points": row.max_points,
            "feedback": row.feedback,
            "evidence": row.evidence,
            "public_feedback": row.public_feedback,
            "reviewed": False,
            "review": None,
        }
        review = reviews.get(row.part_id)
        if review is not None:
            stale = review.auto_status != row.status or review.auto_points != row.points
            part.update(
                {
                    "status": _status(review.points, row.max_points),
                    "points": review.points,
                    "reviewed": True,
                    "review": {
                        "points": review.points,
                        "comment": review.comment,
                        "reason": review.reason,
                        "by": review.reviewer.username,
                        "at": as_utc(review.created_at).isoformat().replace("+00:00", "Z"),
                        "automatic": {"status": row.status, "points": row.points},
                        "stale": stale,
                    },
                }
            )
        parts.append(part)
    return parts


def _status(points: float, max_points: float) -> str:
    if points >= max_points:
        return str(PartStatus.CORRECT)
    return str(PartStatus.INCORRECT) if points <= 0 else str(PartStatus.PARTIAL)


def suggested_points(part: Mapping[str, Any]) -> float | None:
    """The points a checker suggests for a part left to a person (evidence `suggested_points`), if any."""
    evidence = part.get("evidence")
    value = evidence.get("suggested_points") if isinstance(evidence, Mapping) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def review_queue(
    submissions: Sequence[Submission], *, rubric: Rubric, store: ArtifactStore, part: str | None = None
) -> list[dict[str, Any]]:
    """Parts waiting for a person, oldest submission first: unreviewed `needs_review` parts and overrides whose
    automatic result changed since (stale), of each student's latest submission; with the student's written
    answer (from their sheet) or, for parts graded from files, the submission's file list."""
    if part is not None and part not in {spec.id for spec in rubric.parts}:
        raise NotFound(f"assignment {rubric.assignment} has no part {part!r}", field="part")
    latest: dict[int, Submission] = {}
    for submission in submissions:
        latest[submission.user_id] = submission  # in order received: the last one stays
    queue = []
    for submission in sorted(latest.values(), key=lambda s: s.received_at):
        job = latest_graded_job(submission)
        if job is None:
            continue
        waiting = [
            p
            for p in effective_parts(job, current_reviews(submission))
            if (part is None or p["id"] == part)
            and ((p["status"] == PartStatus.NEEDS_REVIEW and not p["reviewed"]) or (p["review"] or {}).get("stale"))
        ]
        sheet: dict[str, Any] | None = None
        for item in waiting:
            spec = rubric.part(item["id"])
            if spec.answer is not None and sheet is None:
                sheet = stored_sheet(submission, store)
            answer = lookup(sheet, spec.answer) if spec.answer is not None and sheet is not None else MISSING
            queue.append(
                {
                    "submission_id": submission.id,
                    "user": submission.user.username,
                    "received_at": as_utc(submission.received_at).isoformat().replace("+00:00", "Z"),
                    "part": item["id"],
                    "title": spec.title,
                    "max_points": item["max_points"],
                    "status": item["status"],
                    "stale": bool((item["review"] or {}).get("stale")),
                    "answer": None if answer is MISSING else answer,
                    "files": [{"field": f.field, "name": f.original_name, "size": f.size} for f in submission.files],
                    # What the automatic checks found (the code parts' verdicts), and the points they suggest.
                    "feedback": item["feedback"],
                    "suggested_points": suggested_points(item),
                }
            )
    return queue
