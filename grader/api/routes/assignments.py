"""Assignments the service grades (one per rubric file), and releasing their grades."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter

from grader.answers.fields import sheet_schema
from grader.api.deps import CurrentUser, DatabaseRoute, InstructorUser, SessionDep, SettingsDep
from grader.api.schemas import AssignmentPublic, ErrorResponse
from grader.db.models import Assignment, as_utc, utcnow
from grader.errors import RubricError
from grader.rubric.disclosure import is_released
from grader.rubric.model import RubricCatalog
from grader.services.assignments import get_assignment, list_assignments, set_release
from grader.settings import Settings

router = APIRouter(tags=["assignments"], route_class=DatabaseRoute)
ERRORS: dict[int | str, dict[str, object]] = {code: {"model": ErrorResponse} for code in (401, 403, 404)}


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else as_utc(moment).isoformat().replace("+00:00", "Z")


def _public(assignment: Assignment, settings: Settings) -> AssignmentPublic:
    try:
        release_at = RubricCatalog(settings.rubrics_dir).get(assignment.id).release_at
    except RubricError:
        release_at = None
    released_at = as_utc(assignment.released_at) if assignment.released_at else None
    return AssignmentPublic(
        id=assignment.id,
        title=assignment.title,
        rubric_version=assignment.rubric_version,
        max_score=assignment.max_score,
        released=is_released(released_at=released_at, release_at=release_at, now=utcnow()),
        released_at=_iso(released_at),
        release_at=_iso(release_at),
    )


@router.get("/assignments", response_model=list[AssignmentPublic], responses=ERRORS)
def read_assignments(_: CurrentUser, session: SessionDep, settings: SettingsDep) -> list[AssignmentPublic]:
    return [_public(row, settings) for row in list_assignments(session)]


@router.get("/assignments/{assignment_id}", response_model=AssignmentPublic, responses=ERRORS)
def read_assignment(assignment_id: str, _: CurrentUser, session: SessionDep, settings: SettingsDep) -> AssignmentPublic:
    return _public(get_assignment(session, assignment_id=assignment_id), settings)


@router.post("/assignments/{assignment_id}/release", response_model=AssignmentPublic, responses=ERRORS)
def release_grades(
    assignment_id: str, _: InstructorUser, session: SessionDep, settings: SettingsDep
) -> AssignmentPublic:
    """Students see full feedback from now on (instructors only)."""
    return _public(set_release(session, assignment_id=assignment_id, released=True), settings)


@router.delete("/assignments/{assignment_id}/release", response_model=AssignmentPublic, responses=ERRORS)
def withdraw_release(
    assignment_id: str, _: InstructorUser, session: SessionDep, settings: SettingsDep
) -> AssignmentPublic:
    """Back to the pre-release view for students (a rubric's past `release_at` still releases)."""
    return _public(set_release(session, assignment_id=assignment_id, released=False), settings)


@router.get("/assignments/{assignment_id}/sheet-schema", responses=ERRORS)
def read_sheet_schema(assignment_id: str, _: CurrentUser, session: SessionDep, settings: SettingsDep) -> dict:
    """The answer sheet's JSON Schema (editors validate against it): every field, no other key."""
    get_assignment(session, assignment_id=assignment_id)
    return sheet_schema(RubricCatalog(settings.rubrics_dir).get(assignment_id))
