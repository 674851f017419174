"""The error answers in the OpenAPI schema: each operation lists the ones it can give, all in the one error shape.

Which ones an operation can give follows from what it depends on, so a new route is documented without a list
to keep up: authentication (401, 429 for the request rate), a staff or instructor role (403), an object named in
the path (404), parameters, a body or a check of the query (422, in the app's shape rather than FastAPI's
default), a body (400 malformed or incomplete, 408 too slow, 413 too large); and every operation 503 when the service is
at its limit. A 403 or 404 a route declares itself (raised by its handler) stays, and so does a 503 the route
describes itself (the readiness answer).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIRouter

from grader.api.deps import get_current_user, require_instructor, require_staff
from grader.api.schemas import ErrorResponse

COMPONENTS = "#/components/schemas/"
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The body is malformed or incomplete (a multipart body without its closing boundary, or shorter or longer "
    "than its Content-Length); the connection is closed.",
    401: "No bearer token, or an invalid or revoked one.",
    403: "The user's role may not do this (or, for a submission, the assignment is closed to this student).",
    404: "No such object, or one this user may not see.",
    408: "The body did not arrive in time (all of it, or its next bytes); nothing is stored.",
    413: "The body, or one file in it, is larger than its limit; nothing is stored.",
    422: "Invalid input: `field` names the parameter, header, form field or answer, and the message says what was "
    "expected.",
    429: "A limit is reached (request rate, attempts, cooldown); `Retry-After` says when a later try can succeed.",
    503: "The service is at its limit (requests in progress, free database connections) or its database is "
    "unavailable: nothing was done, and the same request may be sent again after `Retry-After` seconds.",
}
FROM_DEPENDENCIES = frozenset({400, 401, 408, 413, 422, 429})
"""Codes that only the app's machinery gives (authentication, rate limit, validation, body limits): documented
exactly where error_codes finds them. A 403 or 404 a handler raises may be found nowhere else, so declared ones stay."""
HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    429: {
        "Retry-After": {
            "description": "seconds until a later try can succeed (absent when none can before staff act)",
            "schema": {"type": "integer"},
        }
    },
    503: {"Retry-After": {"description": "seconds until the request may be sent again", "schema": {"type": "integer"}}},
}
FASTAPI_DESCRIPTION_503 = "Service Unavailable"
"""What FastAPI writes for a 503 declared by its model alone: replaced by ours. A route's own description (the
readiness answer's) stays as the route declares it."""


def document_errors(app: FastAPI, prefix: str, routers: Sequence[APIRouter]) -> None:
    """Make the app's OpenAPI schema list the error answers of each operation of `routers`, included in the app
    under `prefix` (see the module's docstring)."""
    plain_openapi = app.openapi
    documented: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        schema = plain_openapi()  # FastAPI's own, kept between calls and made anew when the routes change
        if not documented or documented[-1] is not schema:
            _add_errors(schema, prefix, routers)
            documented[:] = [schema]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def error_codes(route: APIRoute) -> set[int]:
    """The error answers this route can give, from what it depends on; 503 from any (the cap on requests in flight,
    a database connection not free in time)."""
    codes: set[int] = {503}
    calls = {dependant.call for dependant in _dependants(route.dependant)}
    if get_current_user in calls:
        codes |= {401, 429}
    if calls & {require_staff, require_instructor}:
        codes.add(403)
    if route.param_convertors:
        codes.add(404)
    dependants = list(_dependants(route.dependant))
    if any(d.path_params or d.query_params or d.header_params or d.body_params for d in dependants) or any(
        _is_query_check(d.call) for d in dependants
    ):
        codes.add(422)
    if any(d.body_params for d in dependants):
        codes |= {400, 408, 413}
    return codes


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def _is_query_check(call: Callable[..., Any] | None) -> bool:
    # grader.api.deps.only_query's check refuses unknown query parameters (422) on routes that take none.
    return call is not None and getattr(call, "__qualname__", "").startswith("only_query.")


def _add_errors(schema: dict[str, Any], prefix: str, routers: Sequence[APIRouter]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if "ErrorResponse" not in components:
        error_schema = ErrorResponse.model_json_schema(ref_template=COMPONENTS + "{model}")
        components.update(error_schema.pop("$defs", {}))
        components["ErrorResponse"] = error_schema
    error_content = {"application/json": {"schema": {"$ref": COMPONENTS + "ErrorResponse"}}}
    routes = [route for router in routers for route in router.routes if isinstance(route, APIRoute)]
    for route in routes:
        for method in route.methods:
            operation = schema["paths"].get(prefix + route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for code in FROM_DEPENDENCIES:
                responses.pop(str(code), None)  # a router's list for all its routes may name one a route cannot give
            declared = {int(key) for key in responses if key.isdigit() and int(key) in ERROR_DESCRIPTIONS}
            codes = error_codes(route) | declared
            if responses.get("503", {}).get("description", FASTAPI_DESCRIPTION_503) != FASTAPI_DESCRIPTION_503:
                codes.discard(503)
            for code in sorted(codes):
                answer: dict[str, Any] = {"description": ERROR_DESCRIPTIONS[code], "content": error_content}
                if code in HEADERS:
                    answer["headers"] = HEADERS[code]
                responses[str(code)] = answer
            operation["responses"] = dict(sorted(responses.items()))
    # FastAPI's own 422 shape is replaced everywhere; its schemas go too once nothing refers to them.
    for name in ("HTTPValidationError", "ValidationError"):
        if f'"{COMPONENTS}{name}"' not in json.dumps(schema):
            components.pop(name, None)
