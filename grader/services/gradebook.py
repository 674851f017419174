"""The gradebook: one row per student for the submission that counts, with reviewed points; its LMS export.

Which submission counts is the rubric policy's `counts` (HW3: the latest); `best` takes the highest score among graded
ones. Scores are after the late penalty, computed now from each student's current deadline (never stored).
Students on the roster (every user with the student role) who submitted nothing appear as `missing`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from grader.db.models import GradingJob, Submission, User, as_utc
from grader.domain.status import Role
from grader.errors import InputError
from grader.rubric.model import Rubric
from grader.services.policy import describe_lateness, lateness
from grader.services.reviews import current_reviews, effective_parts, latest_graded_job

COUNTING = ("latest", "best")
SORTS = ("user", "-user", "score", "-score", "status", "-status", "submitted", "-submitted")
CANVAS_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
MISSING = "missing"


@dataclass(frozen=True, slots=True)
class Filters:
    user: str | None = None
    status: str | None = None
    part: str | None = None
    part_status: str | None = None
    min_score: float | None = None
    max_score: float | None = None

    def keeps(self, row: dict[str, Any]) -> bool:
        score = row["score"]
        if self.user is not None and row["user"] != self.user:
            return False
        if self.status is not None and row["status"] != self.status:
            return False
        if self.part is not None:
            part = row["parts"].get(self.part)
            if part is None or (self.part_status is not None and part["status"] != self.part_status):
                return False
        if self.min_score is not None and (score is None or score < self.min_score):
            return False
        return not (self.max_score is not None and (score is None or score > self.max_score))


def load_submissions(session: Session, assignment_id: str) -> list[Submission]:
    """Every submission of the assignment with what a gradebook row reads, in a few queries."""
    query = (
        select(Submission)
        .where(Submission.assignment_id == assignment_id)
        .options(
            selectinload(Submission.user),
            selectinload(Submission.jobs).selectinload(GradingJob.results),
            selectinload(Submission.jobs).selectinload(GradingJob.score),
            selectinload(Submission.reviews),
            selectinload(Submission.extensions),
        )
        .order_by(Submission.received_at)
    )
    return list(session.scalars(query))


def counting_submissions(
    session: Session, assignment_id: str, counting: str = "latest", rubric: Rubric | None = None
) -> list[Submission]:
    """Each student's submission that counts: the latest, or with `best` the highest-scored graded one (after the
    late penalty when `rubric` is given)."""
    if counting not in COUNTING:
        raise InputError(f"counting must be one of {', '.join(COUNTING)}", field="counting")
    by_user: dict[int, list[Submission]] = {}
    for submission in load_submissions(session, assignment_id):
        by_user.setdefault(submission.user_id, []).append(submission)
    return [_counting(submissions, counting, rubric) for submissions in by_user.values()]


def gradebook_rows(session: Session, *, rubric: Rubric, counting: str | None = None) -> list[dict[str, Any]]:
    """One row per student; `counting` defaults to the rubric policy's."""
    counted = counting_submissions(session, rubric.assignment, counting or rubric.policy.counts, rubric)
    rows = [_row(submission, rubric) for submission in counted]
    submitted = {submission.user_id for submission in counted}
    roster = session.scalars(select(User).where(User.role == str(Role.STUDENT)))
    rows += [_missing(user, rubric) for user in roster if user.id not in submitted]
    return rows


def query_rows(
    rows: list[dict[str, Any]], filters: Filters, *, sort: str = "user", limit: int = 100, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    if sort not in SORTS:
        raise InputError(f"sort must be one of {', '.join(SORTS)}", field="sort")
    kept = [row for row in rows if filters.keeps(row)]
    key = sort.lstrip("-")
    field = {"user": "user", "score": "score", "status": "status", "submitted": "received_at"}[key]
    # rows without a value (no score, no submission) sort last either way
    present = sorted((r for r in kept if r[field] is not None), key=lambda r: r[field], reverse=sort.startswith("-"))
    ordered = present + [r for r in kept if r[field] is None]
    return ordered[offset : offset + limit], len(kept)


def _counting(submissions: Sequence[Submission], counting: str, rubric: Rubric | None) -> Submission:
    if counting == "best":
        graded = [(score, s) for s in submissions if (score := _score(s, rubric)) is not None]
        if graded:
            return max(graded, key=lambda pair: pair[0])[1]
    return submissions[-1]


def _score(submission: Submission, rubric: Rubric | None) -> float | None:
    job = latest_graded_job(submission)
    if job is None:
        return None
    score = round(sum(part["points"] for part in effective_parts(job, current_reviews(submission))), 4)
    return lateness(submission, rubric).apply(score) if rubric else score


def _identity(user: User) -> dict[str, Any]:
    return {
        "user": user.username,
        "name": user.full_name,
        "lms_id": user.lms_id,
        "sis_user_id": user.sis_user_id,
        "sis_login_id": user.sis_login_id,
        "section": user.section,
    }


def _row(submission: Submission, rubric: Rubric) -> dict[str, Any]:
    job = latest_graded_job(submission)
    parts = effective_parts(job, current_reviews(submission)) if job else []
    late = describe_lateness(submission, rubric)
    return {
        **_identity(submission.user),
        "submission_id": submission.id,
        "received_at": as_utc(submission.received_at).isoformat().replace("+00:00", "Z"),
        "status": submission.jobs[-1].status,
        "score": _score(submission, rubric),
        "minutes_late": late["minutes_late"] if late else None,
        "late_penalty_percent": late["penalty_percent"] if late else None,
        "max_score": rubric.max_score,
        "parts": {
            part["id"]: {"points": part["points"], "status": part["status"], "reviewed": part["reviewed"]}
            for part in parts
        },
    }


def _missing(user: User, rubric: Rubric) -> dict[str, Any]:
    return {
        **_identity(user),
        "submission_id": None,
        "received_at": None,
        "status": MISSING,
        "score": None,
        "minutes_late": None,
        "late_penalty_percent": None,
        "max_score": rubric.max_score,
        "parts": {},
    }


def canvas_csv(rows: Iterable[dict[str, Any]], rubric: Rubric, *, per_part: bool, column: str | None) -> str:
    """Canvas's gradebook import format: Student, ID, SIS User ID, SIS Login ID, Section, then the assignment's
    column (or one column per part), with Canvas's "Points Possible" row second. Students without a score get
    an empty cell (Canvas leaves those grades alone)."""
    titles = [part.id for part in rubric.parts] if per_part else [column or rubric.gradebook_column]
    possible = [_number(part.points) for part in rubric.parts] if per_part else [_number(rubric.max_score)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([*CANVAS_COLUMNS, *titles])
    writer.writerow(["    Points Possible", "", "", "", "", *possible])
    for row in sorted(rows, key=lambda r: (r["name"] or r["user"]).lower()):
        identity = [
            row["name"] or row["user"],
            row["lms_id"] or "",
            row["sis_user_id"] or "",
            row["sis_login_id"] or row["user"],
            row["section"] or "",
        ]
        if per_part:
            cells = [_number(row["parts"].get(part.id, {}).get("points")) for part in rubric.parts]
        else:
            cells = [_number(row["score"])]
        writer.writerow([*identity, *cells])
    return out.getvalue()


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:g}" if value == round(value, 4) else f"{round(value, 4)}"
