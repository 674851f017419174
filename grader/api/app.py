"""The FastAPI application factory: routers under /api/v1, error handlers, assignments synced at start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from anyio import to_thread
from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from grader import __version__
from grader.api.errors import install_error_handlers
from grader.api.limits import BodyLimits, InFlightLimit
from grader.api.observability import install_observability
from grader.api.openapi import document_errors
from grader.api.routes import assignments, extensions, integrity, regrades, staff, submissions, system, users
from grader.db.session import session_scope
from grader.rubric.model import RubricCatalog
from grader.services.assignments import sync_assignments
from grader.settings import get_settings
from grader.web import pages

API_PREFIX = "/api/v1"
WEB = Path(pages.__file__).resolve().parent


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    # The routes' thread pool, per event loop (the default is 40 threads).
    to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
    with session_scope() as session:
        sync_assignments(session, catalog=RubricCatalog(settings.rubrics_dir))
    yield


def create_app() -> FastAPI:
    # Swagger UI and ReDoc from the package's own copies: /docs works on a server without internet.
    app = FastAPIOffline(
        title="grader",
        version=__version__,
        description="Automated homework grading for deep-learning courses. Authenticate with a Bearer token.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    settings = get_settings()
    app.add_middleware(
        BodyLimits,
        max_body_bytes=settings.max_submission_bytes,
        body_timeout_s=settings.body_timeout_s,
        idle_timeout_s=settings.body_idle_timeout_s,
    )
    # Outside BodyLimits: a request over the limit is answered before any of its body is read.
    app.add_middleware(
        InFlightLimit,
        limit=settings.max_requests_in_flight,
        exempt=frozenset({f"{API_PREFIX}/health", f"{API_PREFIX}/ready", "/metrics"}),
    )
    install_observability(app)  # after the other middlewares: it must wrap them
    routers = [
        module.router for module in (system, assignments, submissions, staff, extensions, integrity, users, regrades)
    ]
    for router in routers:
        app.include_router(router, prefix=API_PREFIX)
    document_errors(app, API_PREFIX, routers)
    app.mount("/dashboard/static", StaticFiles(directory=str(WEB / "static")), name="dashboard-static")
    app.include_router(pages.router)
    app.add_api_route("/", lambda: RedirectResponse("/dashboard"), include_in_schema=False)
    return app
