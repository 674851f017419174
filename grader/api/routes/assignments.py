"""Assignments the service grades (one per rubric file)."""

from __future__ import annotations

from fastapi import APIRouter

from grader.api.deps import CurrentUser, SessionDep
from grader.api.schemas import AssignmentPublic
from grader.db.models import Assignment
from grader.services.assignments import get_assignment, list_assignments

router = APIRouter(tags=["assignments"])


def _public(assignment: Assignment) -> AssignmentPublic:
    return AssignmentPublic(
        id=assignment.id,
        title=assignment.title,
        rubric_version=assignment.rubric_version,
        max_score=assignment.max_score,
    )


@router.get("/assignments", response_model=list[AssignmentPublic])
def read_assignments(_: CurrentUser, session: SessionDep) -> list[AssignmentPublic]:
    return [_public(row) for row in list_assignments(session)]


@router.get("/assignments/{assignment_id}", response_model=AssignmentPublic)
def read_assignment(assignment_id: str, _: CurrentUser, session: SessionDep) -> AssignmentPublic:
    return _public(get_assignment(session, assignment_id=assignment_id))
