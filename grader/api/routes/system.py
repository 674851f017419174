"""Health and identity: what load balancers and scripts ask first."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from grader.api.deps import CurrentUser, DatabaseRoute, DispatcherDep, SessionDep, SettingsDep
from grader.api.schemas import UserPublic
from grader.services.health import readiness

router = APIRouter(tags=["system"], route_class=DatabaseRoute)


@router.get("/health")
def read_health(session: SessionDep) -> dict[str, str]:
    session.execute(text("SELECT 1"))
    return {"status": "ok", "database": "ok"}


@router.get(
    "/ready",
    responses={
        503: {"description": "Not ready: `problems` says what is missing (database, broker, a queue's worker)."}
    },
)
def read_ready(session: SessionDep, settings: SettingsDep, dispatcher: DispatcherDep) -> Any:
    """Database and broker reachable and at least one live worker (by heartbeat) per queue; queue depths and the
    oldest waiting job's age. 200 when ready, 503 with the problems otherwise."""
    answer = readiness(session, settings=settings, dispatcher=dispatcher)
    return JSONResponse(answer, status_code=200 if answer["ready"] else 503)


@router.get("/me", response_model=UserPublic)
def read_me(user: CurrentUser) -> UserPublic:
    return UserPublic(username=user.username, role=user.role)
