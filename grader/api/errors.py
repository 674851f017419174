"""The one place where exceptions become HTTP responses: `{"error": {"code", "message", "field"}}`."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sqlalchemy_errors
from starlette.exceptions import HTTPException as StarletteHTTPException

from grader.api.deps import Unauthenticated
from grader.errors import InfrastructureError, InputError, Overloaded, RubricError, TooManyRequests

log = logging.getLogger(__name__)


def error_body(code: str, message: str, field: str | None = None) -> dict[str, dict[str, str | None]]:
    return {"error": {"code": code, "message": message, "field": field}}


def overloaded_response(exc: Overloaded) -> JSONResponse:
    """503 with Retry-After: nothing was done, and the same request may be sent again then."""
    headers = {"Retry-After": str(max(exc.retry_after_s, 1))}
    return JSONResponse(error_body("overloaded", str(exc)), status_code=503, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InputError)
    async def _input_error(_: Request, exc: InputError) -> JSONResponse:
        code = _snake(type(exc).__name__.removesuffix("Error")) or "input"
        headers = {}
        if isinstance(exc, TooManyRequests) and exc.retry_after_s is not None:
            headers["Retry-After"] = str(max(exc.retry_after_s, 1))
        return JSONResponse(error_body(code, exc.message, exc.field), status_code=exc.status_code, headers=headers)

    @app.exception_handler(Unauthenticated)
    async def _unauthenticated(_: Request, exc: Unauthenticated) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"}
        return JSONResponse(error_body("unauthenticated", str(exc)), status_code=401, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header"))
        message = f"{field or 'request'}: {first.get('msg', 'invalid value')}"
        return JSONResponse(error_body("invalid_request", message, field or None), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # The exception's headers are part of the answer: a 405's Allow, a cut-off body's Connection: close.
        return JSONResponse(error_body("http_error", str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RubricError)
    async def _rubric(_: Request, exc: RubricError) -> JSONResponse:
        log.error("rubric problem: %s", exc)
        return JSONResponse(error_body("rubric_error", str(exc)), status_code=500)

    @app.exception_handler(InfrastructureError)
    async def _infrastructure(_: Request, exc: InfrastructureError) -> JSONResponse:
        if isinstance(exc, Overloaded):
            log.warning("overloaded: %s", exc)
            return overloaded_response(exc)
        log.error("infrastructure problem: %s", exc)
        return JSONResponse(error_body("unavailable", str(exc)), status_code=503)

    @app.exception_handler(sqlalchemy_errors.TimeoutError)
    async def _no_connection(_: Request, exc: sqlalchemy_errors.TimeoutError) -> JSONResponse:
        # Every database connection of this process stayed taken for db_pool_timeout_s: a surge, not a fault.
        log.warning("no database connection free: %s", exc)
        return overloaded_response(Overloaded("the service is busy (no database connection free); retry shortly"))

    @app.exception_handler(sqlalchemy_errors.OperationalError)
    async def _database_unavailable(_: Request, exc: sqlalchemy_errors.OperationalError) -> JSONResponse:
        # The database refused or dropped the connection, or stayed locked (SQLite): the request did not happen.
        log.error("database unavailable: %s", exc)
        return overloaded_response(Overloaded("the database is unavailable right now; retry shortly", retry_after_s=5))


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
