"""Health and identity: what load balancers and scripts ask first."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from grader.api.deps import CurrentUser, SessionDep
from grader.api.schemas import UserPublic

router = APIRouter(tags=["system"])


@router.get("/health")
def read_health(session: SessionDep) -> dict[str, str]:
    session.execute(text("SELECT 1"))
    return {"status": "ok", "database": "ok"}


@router.get("/me", response_model=UserPublic)
def read_me(user: CurrentUser) -> UserPublic:
    return UserPublic(username=user.username, role=user.role)
