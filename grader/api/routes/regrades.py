"""Batch regrades: start one over an assignment (instructors), watch its progress and diff, cancel it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, status
from pydantic import BaseModel, Field, WithJsonSchema

from grader.api.deps import DatabaseRoute, DispatcherDep, InstructorUser, SessionDep, SettingsDep, StaffUser, only_query
from grader.api.schemas import ErrorResponse
from grader.rubric.model import RubricCatalog
from grader.services import regrades
from grader.services.assignments import get_assignment

router = APIRouter(tags=["regrades"], route_class=DatabaseRoute)
ERRORS: dict[int | str, dict[str, object]] = {code: {"model": ErrorResponse} for code in (401, 403, 404, 422)}


def _one_list(key: str, what: str) -> dict[str, Any]:
    items = {"type": "array", "items": {"type": "string"}, "minItems": 1, "description": what}
    return {"type": "object", "properties": {key: items}, "required": [key], "additionalProperties": False}


SCOPE_SCHEMA = {
    "anyOf": [
        {"const": "all"},
        _one_list("users", "usernames"),
        _one_list("parts", "part ids of the assignment's rubric"),
    ]
}


class RegradeIn(BaseModel):
    model_config = {"extra": "forbid"}

    # Documented exactly; checked by the service (which names the forms in its refusal and knows the rubric's parts).
    scope: Annotated[Any, WithJsonSchema(SCOPE_SCHEMA)] = Field(
        default="all",
        description='"all", {"users": [usernames]} or {"parts": [part ids]} (only those parts are checked again)',
    )
    dry_run: bool = Field(default=True, description="true: compute the diff and write no result")


class RegradeStarted(BaseModel):
    id: str
    status: str
    total: int
    status_url: str


@router.post(
    "/assignments/{assignment_id}/regrades",
    response_model=RegradeStarted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=ERRORS,
)
def post_regrade(
    assignment_id: str,
    body: RegradeIn,
    user: InstructorUser,
    session: SessionDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
) -> RegradeStarted:
    """Regrade the assignment's graded submissions with the current rubric (checkpoint evaluations come from the
    cache); on its own queue, in chunks, so new submissions are not held up."""
    get_assignment(session, assignment_id=assignment_id)
    rubric = RubricCatalog(settings.rubrics_dir).get(assignment_id)
    scope = regrades.parse_scope(body.scope, rubric)
    regrade = regrades.create_regrade(session, rubric=rubric, scope=scope, dry_run=body.dry_run, user=user)
    regrades.send_regrade(session, regrade=regrade, dispatcher=dispatcher)
    return RegradeStarted(
        id=regrade.id, status=regrade.status, total=regrade.total, status_url=f"/api/v1/regrades/{regrade.id}"
    )


@router.get("/assignments/{assignment_id}/regrades", responses=ERRORS, dependencies=[only_query()])
def read_regrades(assignment_id: str, _: StaffUser, session: SessionDep) -> dict:
    """The assignment's regrades, newest first (without their items)."""
    get_assignment(session, assignment_id=assignment_id)
    rows = regrades.list_regrades(session, assignment_id=assignment_id)
    return {"items": [regrades.describe_regrade(row, with_items=False) for row in rows], "total": len(rows)}


@router.get("/regrades/{regrade_id}", responses=ERRORS, dependencies=[only_query("items")])
def read_regrade(regrade_id: str, _: StaffUser, session: SessionDep, items: bool = True) -> dict:
    """Progress (`total`, `done`, `failed`), who started it, the rubric version before → after, and the diff: per
    submission old → new score and the parts whose points change (`items=false`: progress only, for polling)."""
    return regrades.describe_regrade(regrades.get_regrade(session, regrade_id), with_items=items)


@router.post("/regrades/{regrade_id}/cancel", responses=ERRORS)
def cancel_regrade(regrade_id: str, _: InstructorUser, session: SessionDep) -> dict:
    """Stop at the next submission; every submission already regraded stays complete."""
    regrade = regrades.request_cancel(session, regrade=regrades.get_regrade(session, regrade_id))
    return regrades.describe_regrade(regrade, with_items=False)
