"""Per-student extensions of an assignment's deadline and attempts (staff), with who granted what and when."""

from __future__ import annotations

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from grader.api.deps import DatabaseRoute, SessionDep, SettingsDep, StaffUser, only_query
from grader.api.schemas import ErrorResponse
from grader.rubric.model import RubricCatalog
from grader.services import policy
from grader.services.assignments import assignment_rubric

router = APIRouter(tags=["staff"], route_class=DatabaseRoute)
ERRORS: dict[int | str, dict[str, object]] = {code: {"model": ErrorResponse} for code in (401, 403, 404, 422)}


class ExtensionRequest(BaseModel):
    model_config = {"extra": "forbid"}

    user: str = Field(description="the student's username")
    due: str | None = Field(
        None, description="new due date, ISO 8601; without an offset it is read in the assignment's time zone"
    )
    hard_close: str | None = Field(None, description="new hard close (default: the class's, or the new due date)")
    extra_attempts: int = Field(0, ge=0, le=1000, description="attempts (graded and uploads) on top of the limits")
    reason: str = Field("", max_length=2000)


class ExtensionPublic(BaseModel):
    id: int
    user: str
    due: str | None
    hard_close: str | None
    extra_attempts: int
    reason: str
    granted_by: str | None = Field(description="who granted it (null: on the server's command line)")
    granted_at: str


class ExtensionList(BaseModel):
    items: list[ExtensionPublic] = Field(description="every grant, oldest first; the newest per student counts")


@router.post(
    "/assignments/{assignment_id}/extensions",
    status_code=status.HTTP_201_CREATED,
    response_model=ExtensionPublic,
    responses=ERRORS,
)
def grant_extension(
    assignment_id: str, body: ExtensionRequest, staff: StaffUser, session: SessionDep, settings: SettingsDep
) -> dict:
    """Grant a student a later due date / hard close and/or extra attempts. Scores are re-priced on read at once."""
    rubric = assignment_rubric(session, catalog=RubricCatalog(settings.rubrics_dir), assignment_id=assignment_id)
    return policy.grant_typed_extension(
        session,
        rubric=rubric,
        username=body.user,
        granted_by=staff,
        due=body.due,
        hard_close=body.hard_close,
        extra_attempts=body.extra_attempts,
        reason=body.reason,
    )


@router.get(
    "/assignments/{assignment_id}/extensions",
    response_model=ExtensionList,
    responses=ERRORS,
    dependencies=[only_query()],
)
def read_extensions(assignment_id: str, _: StaffUser, session: SessionDep, settings: SettingsDep) -> dict:
    assignment_rubric(session, catalog=RubricCatalog(settings.rubrics_dir), assignment_id=assignment_id)
    return {"items": policy.list_extensions(session, assignment_id=assignment_id)}
