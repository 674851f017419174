"""The FastAPI application factory: routers under /api/v1, error handlers, assignments synced at start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from grader import __version__
from grader.api.errors import install_error_handlers
from grader.api.limits import BodySizeLimit
from grader.api.routes import assignments, regrades, staff, submissions, system, users
from grader.db.session import session_scope
from grader.rubric.model import RubricCatalog
from grader.services.assignments import sync_assignments
from grader.settings import get_settings

API_PREFIX = "/api/v1"


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    with session_scope() as session:
        sync_assignments(session, catalog=RubricCatalog(get_settings().rubrics_dir))
    yield


def create_app() -> FastAPI:
    app = FastAPI(
        title="grader",
        version=__version__,
        description="Automated homework grading for deep-learning courses. Authenticate with a Bearer token.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_body_bytes=get_settings().max_submission_bytes)
    for module in (system, assignments, submissions, staff, users, regrades):
        app.include_router(module.router, prefix=API_PREFIX)
    return app
