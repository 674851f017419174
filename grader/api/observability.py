"""Request ids, one log line per request, and Prometheus metrics (`GET /metrics`).

Every request gets an id (the caller's `X-Request-ID` when it is short and plain, else a new one), echoed in the
response's `X-Request-ID` and carried by every line logged while it is served. Its own line says method, route
template, status, duration and user; the URL is logged with secret-looking query values redacted, and no header
is ever logged (so neither the `Authorization` token nor the session cookie).

HTTP metrics are counted in this process, labelled by route template (`/api/v1/submissions/{submission_id}`,
never the raw path). With several API processes behind one port (`--workers N`), set `PROMETHEUS_MULTIPROC_DIR`
to an empty folder: every process then writes its counts there and any of them answers a scrape with the sum.
Everything about jobs, queues and workers is read from the database at scrape time (grader/services/metrics.py).
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from grader import logs
from grader.api.deps import DatabaseRoute, SessionDep, SettingsDep, Unauthenticated
from grader.services.metrics import WINDOW, database_metrics
from grader.settings import Settings, get_settings

REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
SECRET_NAME = re.compile(r"token|secret|passw|pwd|key|auth|signature|session|csrf|credential", re.IGNORECASE)
SECRET_VALUE = re.compile(r"(bearer\s+)?gr_[A-Za-z0-9_-]{16,}", re.IGNORECASE)
"""An API token (`grader users create` prints `gr_...`), whatever the parameter is called."""
REDACTED = "[redacted]"
MAX_LOGGED_PATH = 1000
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
"""The route label of a request no route takes (404s): its raw path would give every typo a series of its own."""

log = logging.getLogger(__name__)
access_log = logging.getLogger("grader.access")

REQUESTS = Counter(
    "grader_http_requests_total", "HTTP requests answered, by route template and status.", ["method", "route", "status"]
)
DURATION = Histogram(
    "grader_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)


def install_observability(app: FastAPI) -> None:
    """Register after the other middlewares: outermost, it also sees requests they refuse (413 before routing)."""
    logs.configure_logging(get_settings().log_format)
    app.add_middleware(RequestObservability)
    app.include_router(router)


def request_id_from(headers: Iterable[tuple[bytes, bytes]]) -> str:
    given = dict(headers).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
    return given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def redact_query(query: str) -> str:
    """The query string with the values of secret-looking parameters (and token-like values) replaced."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode(
        [
            (name, REDACTED if SECRET_NAME.search(name) or SECRET_VALUE.search(value) else value)
            for name, value in pairs
        ],
        safe="[]",
    )


class RouteTemplates:
    """The route template a request was matched to, found by matching it again against the app's routes.

    Matching again (tens of regular expressions, microseconds) rather than reading the route the router chose: a
    route included under a prefix knows only its own part of the path, and a request refused before routing has
    none at all."""

    def __init__(self, routes: list[BaseRoute]) -> None:
        self.routes = list(_flat_routes(routes))

    def template(self, scope: Scope) -> str:
        probe = {key: scope[key] for key in ("type", "path", "method", "root_path", "headers") if key in scope}
        partial = None
        for route, template in self.routes:
            match, _ = route.matches(dict(probe))
            if match is Match.FULL:
                return template
            if match is Match.PARTIAL and partial is None:
                partial = template  # the path is right, the method is not (405)
        return partial or UNMATCHED


def _flat_routes(routes: list[BaseRoute]) -> Iterator[tuple[Any, str]]:
    try:
        # FastAPI ≥ 0.137 keeps included routers nested; each context knows its full path
        from fastapi.routing import iter_route_contexts
    except ImportError:  # earlier ones copied every route into the app, full path included
        yield from ((route, route.path_format) for route in routes if getattr(route, "path_format", None))
        return
    for context in iter_route_contexts(routes):
        if context.path_format:
            yield context, context.path_format


class RequestObservability:
    """ASGI middleware (not BaseHTTPMiddleware: uploads and downloads stream through it untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.templates: RouteTemplates | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from(scope["headers"])
        status = 500  # what the client gets when the app raises before answering
        request_scope = dict(scope)  # as it arrived: routing rewrites parts of `scope`

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER.encode()]
                message = {**message, "headers": [*headers, (REQUEST_ID_HEADER.encode(), request_id.encode())]}
            await send(message)

        token = logs.open_scope(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            try:
                self._record(request_scope, status, time.perf_counter() - started)
            except Exception:  # the answer has gone out; a fault here must not replace the app's own error
                log.exception("could not record request %s", request_id)
            logs.close_scope(token)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        if self.templates is None:
            self.templates = RouteTemplates(scope["app"].routes)
        route = self.templates.template(scope)
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        REQUESTS.labels(method, route, str(status)).inc()
        DURATION.labels(method, route).observe(seconds)
        path = scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        if query:
            path += "?" + redact_query(query)
        fields = {
            "method": method,
            "route": route,
            "path": path[:MAX_LOGGED_PATH],
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "client": scope["client"][0] if scope.get("client") else None,
        }
        access_log.info(
            "%s %s %s %.1f ms", method, fields["path"], status, fields["duration_ms"], extra={"fields": fields}
        )


# ---------------------------------------------------------------- GET /metrics

router = APIRouter(include_in_schema=False, route_class=DatabaseRoute)


@router.get("/metrics")
def read_metrics(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    _check_metrics_token(request, settings)
    try:
        measured: dict[str, Any] | None = database_metrics(session, settings=settings)
    except Exception as exc:  # whatever the driver raises: the scrape still answers, saying the database is down
        session.rollback()
        log.warning("metrics: database unreachable (%s: %s)", type(exc).__name__, exc)
        measured = None
    registry = CollectorRegistry()
    registry.register(_Collector(_process_metrics))
    registry.register(_Collector(lambda: _database_families(measured)))
    encode, content_type = choose_encoder(request.headers.get("accept", ""))  # text format, or OpenMetrics if asked
    return Response(encode(registry), headers={"Content-Type": content_type})


def _check_metrics_token(request: Request, settings: Settings) -> None:
    expected = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    if not expected:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Unauthenticated("/metrics needs 'Authorization: Bearer <GRADER_METRICS_TOKEN>'")


class _Collector:
    """A function yielding metric families, as prometheus_client's collector interface."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self.collect = collect


def _process_metrics() -> Iterable[Metric]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        # the sum over every API process; per-process facts (memory, CPU) would not add up, so none are given
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined)
        return combined.collect()
    return REGISTRY.collect()


def _database_families(measured: dict[str, Any] | None) -> Iterator[Metric]:
    up = GaugeMetricFamily("grader_database_up", "1 when the database answered this scrape's queries.")
    up.add_metric([], 1 if measured is not None else 0)
    yield up
    if measured is None:
        return
    queue = measured["queue"]
    yield GaugeMetricFamily(
        "grader_queue_jobs_waiting", "Grading jobs waiting for a worker (received or queued).", value=queue["waiting"]
    )
    yield GaugeMetricFamily(
        "grader_queue_oldest_waiting_seconds",
        "How long the oldest waiting grading job has waited (0 when none waits).",
        value=queue["oldest_waiting_seconds"] or 0,
    )
    yield GaugeMetricFamily(
        "grader_queue_evaluations_waiting",
        "Checkpoint evaluations waiting for a worker (pending or queued).",
        value=queue["evaluations_waiting"],
    )
    yield _labelled(
        "grader_workers_alive", "Live workers (by heartbeat) serving each queue.", "queue", queue["workers_alive"]
    )
    yield _labelled("grader_jobs", "Grading jobs by status.", "status", measured["jobs"])
    yield _labelled("grader_evaluations", "Checkpoint evaluations by status.", "status", measured["evaluations"])
    recent = f"that finished in the last {WINDOW.total_seconds() / 60:g} minutes"
    for kind, noun in (("job", "grading jobs"), ("evaluation", "checkpoint evaluations")):
        phases = measured[f"{kind}_phases"]
        seconds = GaugeMetricFamily(
            f"grader_{kind}_phase_seconds",
            f"Seconds spent in each phase by the {noun} {recent}, by quantile (1 = slowest).",
            labels=["phase", "quantile"],
        )
        count = GaugeMetricFamily(
            f"grader_{kind}_phase_finished",
            f"How many {noun} {recent} went through each phase.",
            labels=["phase"],
        )
        for phase, durations in phases.items():
            count.add_metric([phase], durations.count)
            for quantile, value in durations.quantiles.items():
                seconds.add_metric([phase, f"{quantile:g}"], value)
        yield seconds
        yield count


def _labelled(name: str, documentation: str, label: str, values: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family
