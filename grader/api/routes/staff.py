"""What course staff do: the gradebook and its LMS export, the manual review queue and reviews, a student's
history. Instructors and TAs; students get 403 (and may read only their own history)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from grader.api import downloads
from grader.api.deps import CurrentUser, DatabaseRoute, SessionDep, SettingsDep, StaffUser, only_query
from grader.api.schemas import ErrorResponse, SubmissionList, SubmissionPublic
from grader.domain.status import Role
from grader.errors import PermissionDenied
from grader.rubric.model import RubricCatalog
from grader.services import gradebook, reviews, stats, submissions
from grader.services.assignments import assignment_rubric
from grader.services.users import require_user
from grader.services.views import describe_submission
from grader.storage import ArtifactStore

router = APIRouter(tags=["staff"], route_class=DatabaseRoute)
ERRORS: dict[int | str, dict[str, object]] = {code: {"model": ErrorResponse} for code in (401, 403, 404, 422)}
GRADEBOOK_QUERY = (
    "counting",
    "user",
    "status",
    "part",
    "part_status",
    "min_score",
    "max_score",
    "sort",
    "limit",
    "offset",
)


class GradebookPart(BaseModel):
    points: float
    status: str
    reviewed: bool


class GradebookRow(BaseModel):
    user: str
    name: str | None
    lms_id: str | None
    sis_user_id: str | None
    sis_login_id: str | None
    section: str | None
    submission_id: str | None
    received_at: str | None
    status: str = Field(description="the counting submission's job status, or `missing` (on the roster, nothing sent)")
    score: float | None = Field(description="with reviewed points, after any late penalty; null until graded")
    minutes_late: float | None = Field(description="null when the assignment has no due date")
    late_penalty_percent: float | None
    max_score: float
    parts: dict[str, GradebookPart]


class Gradebook(BaseModel):
    items: list[GradebookRow]
    total: int


class ReviewItem(BaseModel):
    submission_id: str
    user: str
    received_at: str
    part: str
    title: str
    max_points: float
    status: str
    stale: bool = Field(description="an override whose automatic result changed since it was made")
    answer: Any = Field(description="the student's written answer (null for parts graded from files)")
    files: list[dict[str, Any]]
    feedback: str = Field(default="", description="what the automatic checks found, e.g. the code checks' verdicts")
    suggested_points: float | None = Field(
        default=None, description="the points the automatic checks suggest (code parts); PUT them to confirm"
    )


class ReviewQueue(BaseModel):
    items: list[ReviewItem]
    total: int


class ReviewIn(BaseModel):
    model_config = {"extra": "forbid"}

    points: float = Field(description="0 to the part's maximum")
    comment: str = ""
    reason: str | None = Field(default=None, description="required when overriding an automatically scored part")


@router.get(
    "/assignments/{assignment_id}/gradebook",
    response_model=Gradebook,
    responses=ERRORS,
    dependencies=[only_query(*GRADEBOOK_QUERY)],
)
def read_gradebook(
    assignment_id: str,
    _: StaffUser,
    session: SessionDep,
    settings: SettingsDep,
    counting: Literal["latest", "best"] | None = None,
    user: str | None = None,
    status: str | None = None,
    part: str | None = None,
    part_status: str | None = None,
    min_score: Annotated[float | None, Query(ge=-1e9, le=1e9)] = None,
    max_score: Annotated[float | None, Query(ge=-1e9, le=1e9)] = None,
    sort: Literal["user", "-user", "score", "-score", "status", "-status", "submitted", "-submitted"] = "user",
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict:
    """One row per student for the submission that counts (the rubric policy's rule, or `counting=latest|best`), with
    reviewed points and after any late penalty."""
    rubric = assignment_rubric(session, catalog=RubricCatalog(settings.rubrics_dir), assignment_id=assignment_id)
    rows = gradebook.gradebook_rows(session, rubric=rubric, counting=counting)
    filters = gradebook.Filters(user, status, part, part_status, min_score, max_score)
    items, total = gradebook.query_rows(rows, filters, sort=sort, limit=limit, offset=offset)
    return {"items": items, "total": total}


@router.get(
    "/assignments/{assignment_id}/gradebook.csv",
    responses={**ERRORS, 200: {"content": {"text/csv": {}}, "description": "Canvas gradebook import CSV"}},
    dependencies=[only_query("format", "counting", "column")],
)
def read_gradebook_csv(
    assignment_id: str,
    _: StaffUser,
    session: SessionDep,
    settings: SettingsDep,
    format: Literal["canvas", "parts"] = "canvas",
    counting: Literal["latest", "best"] | None = None,
    column: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Canvas's gradebook import format; `format=parts` gives one column per part."""
    rubric = assignment_rubric(session, catalog=RubricCatalog(settings.rubrics_dir), assignment_id=assignment_id)
    return downloads.gradebook_csv(session, rubric, per_part=format == "parts", counting=counting, column=column)


@router.get("/assignments/{assignment_id}/stats", responses=ERRORS, dependencies=[only_query()])
def read_stats(assignment_id: str, _: StaffUser, session: SessionDep, settings: SettingsDep) -> dict:
    """How the class did (each student's latest submission, reviewed points counted): counts by status, the
    score distribution, per part mean points / status shares / most common feedback, Q1 accuracy buckets,
    submissions per hour. Computed by the database."""
    return stats.assignment_stats(
        session,
        rubric=assignment_rubric(session, catalog=RubricCatalog(settings.rubrics_dir), assignment_id=assignment_id),
    )


@router.get(
    "/assignments/{assignment_id}/review",
    response_model=ReviewQueue,
    responses=ERRORS,
    dependencies=[only_query("part")],
)
def read_review_queue(
    assignment_id: str, _: StaffUser, session: SessionDep, settings: SettingsDep, part: str | None = None
) -> dict:
    """Parts waiting for a person, oldest submission first, with the written answer or the file list."""
    rubric = assignment_rubric(session, catalog=RubricCatalog(settings.rubrics_dir), assignment_id=assignment_id)
    store = ArtifactStore(settings.resolved_storage_dir)
    queue = reviews.review_queue(
        gradebook.load_submissions(session, assignment_id), rubric=rubric, store=store, part=part
    )
    return {"items": queue, "total": len(queue)}


@router.put(
    "/submissions/{submission_id}/parts/{part_id}/review",
    response_model=SubmissionPublic,
    responses=ERRORS,
    dependencies=[only_query()],
)
def put_review(
    submission_id: str, part_id: str, body: ReviewIn, user: StaffUser, session: SessionDep, settings: SettingsDep
) -> dict:
    """Score a part by hand (an override of an automatic part needs a reason); returns the submission."""
    submission = submissions.get_submission_for(session, user=user, submission_id=submission_id)
    rubric = RubricCatalog(settings.rubrics_dir).get(submission.assignment_id)
    reviews.review_part(
        session,
        submission=submission,
        part_id=part_id,
        points=body.points,
        comment=body.comment,
        reason=body.reason,
        reviewer=user,
        rubric=rubric,
    )
    return describe_submission(submission, viewer_role=Role(user.role), rubric=rubric)


@router.get(
    "/users/{username}/submissions",
    response_model=SubmissionList,
    responses=ERRORS,
    dependencies=[only_query("assignment")],
)
def read_user_submissions(
    username: str, user: CurrentUser, session: SessionDep, settings: SettingsDep, assignment: str | None = None
) -> dict:
    """One student's whole history, newest first, each submission with every grading job's score (staff; a
    student may read their own)."""
    role = Role(user.role)
    if not role.is_staff and user.username != username:
        raise PermissionDenied("students may read only their own history")
    owner = require_user(session, username=username)
    rows, total = submissions.list_submissions_for(
        session, user=user, owner=owner, assignment_id=assignment, limit=10_000, offset=0
    )
    catalog = RubricCatalog(settings.rubrics_dir)
    items = [describe_submission(row, viewer_role=role, rubric=catalog.get(row.assignment_id)) for row in rows]
    return {"items": items, "total": total}
