"""User administration for instructors: create users and tokens, list them, revoke tokens."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, Field, WithJsonSchema

from grader.api.deps import DatabaseRoute, InstructorUser, SessionDep, only_query
from grader.api.schemas import ErrorResponse
from grader.domain.status import Role
from grader.services.users import (
    USERNAME_PATTERN,
    active_tokens,
    create_user,
    issue_token,
    list_users,
    require_user,
    revoke_tokens,
)

router = APIRouter(tags=["users"], route_class=DatabaseRoute)
ERRORS: dict[int | str, dict[str, object]] = {code: {"model": ErrorResponse} for code in (401, 403, 404, 422)}


class UserRow(BaseModel):
    username: str
    role: str
    name: str | None
    section: str | None
    sis_user_id: str | None
    sis_login_id: str | None
    active_tokens: int


class UserIn(BaseModel):
    model_config = {"extra": "forbid"}

    # Documented as the service checks it (which refuses with its own message, naming the allowed characters).
    username: Annotated[str, WithJsonSchema({"type": "string", "pattern": USERNAME_PATTERN.pattern, "maxLength": 64})]
    role: Literal["student", "ta", "instructor"] = "student"


class IssuedToken(BaseModel):
    username: str
    role: str
    token: str = Field(description="shown once: only its sha256 is stored")


class Revoked(BaseModel):
    username: str
    revoked: int = Field(description="how many tokens were revoked (they answer 401 from now on)")


@router.get("/users", response_model=list[UserRow], responses=ERRORS, dependencies=[only_query("role")])
def read_users(
    _: InstructorUser, session: SessionDep, role: Literal["student", "ta", "instructor"] | None = None
) -> list[UserRow]:
    return [
        UserRow(
            username=user.username,
            role=user.role,
            name=user.full_name,
            section=user.section,
            sis_user_id=user.sis_user_id,
            sis_login_id=user.sis_login_id,
            active_tokens=active_tokens(session, user=user),
        )
        for user in list_users(session, role=Role(role) if role else None)
    ]


@router.post("/users", response_model=IssuedToken, status_code=status.HTTP_201_CREATED, responses=ERRORS)
def post_user(body: UserIn, _: InstructorUser, session: SessionDep) -> IssuedToken:
    user = create_user(session, username=body.username, role=Role(body.role))
    token = issue_token(session, user=user)
    session.commit()
    return IssuedToken(username=user.username, role=user.role, token=token)


@router.post(
    "/users/{username}/tokens", response_model=IssuedToken, status_code=status.HTTP_201_CREATED, responses=ERRORS
)
def post_token(username: str, _: InstructorUser, session: SessionDep) -> IssuedToken:
    user = require_user(session, username=username)
    token = issue_token(session, user=user)
    session.commit()
    return IssuedToken(username=user.username, role=user.role, token=token)


@router.delete("/users/{username}/tokens", response_model=Revoked, responses=ERRORS)
def delete_tokens(username: str, _: InstructorUser, session: SessionDep) -> Revoked:
    user = require_user(session, username=username)
    count = revoke_tokens(session, user=user)
    session.commit()
    return Revoked(username=user.username, revoked=count)
