"""Logging for the API and the workers: one line per event, as text (`make run`) or JSON (deployments), each line
carrying the fields of the unit of work it belongs to (a request: request id, user id; a task: job, evaluation and
submission ids).

The fields live in a context variable holding one mutable dict per unit of work. A request's dependencies run in
worker threads with a copy of the context; the copy refers to the same dict, so a user id bound there is seen by
the middleware that writes the request's line afterwards.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
HANDLER_NAME = "grader"
"""Our root handler's name: configuring again replaces it instead of adding a second one."""

_fields: ContextVar[dict[str, Any] | None] = ContextVar("grader_log_fields", default=None)


def open_scope(**fields: Any) -> Token[dict[str, Any] | None]:
    """Start a unit of work: every line logged until `close_scope` carries these fields and any bound later."""
    return _fields.set({key: value for key, value in fields.items() if value is not None})


def close_scope(token: Token[dict[str, Any] | None]) -> None:
    _fields.reset(token)


@contextmanager
def log_scope(**fields: Any) -> Iterator[dict[str, Any]]:
    token = open_scope(**fields)
    try:
        yield current_fields()
    finally:
        close_scope(token)


def bind(**fields: Any) -> None:
    """Add fields to the current unit of work (in place, see the module's docstring); outside one, nothing."""
    current = _fields.get()
    if current is not None:
        current.update({key: value for key, value in fields.items() if value is not None})


def current_fields() -> dict[str, Any]:
    return _fields.get() or {}


class _ScopeFields(logging.Filter):
    """Copies the unit of work's fields onto every record the handler writes, whichever logger made it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.scope_fields = dict(current_fields())
        return True


def _event_fields(record: logging.LogRecord) -> dict[str, Any]:
    """Fields of one event (`logger.info(..., extra={"fields": {...}})`), then those of its unit of work."""
    return {**getattr(record, "fields", {}), **getattr(record, "scope_fields", {})}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,  # which of several API or worker processes
            "message": record.getMessage(),
            **_event_fields(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "scope_fields", {})
        if not fields:
            return text
        first, newline, rest = text.partition("\n")  # after the message, before any traceback
        return first + " [" + " ".join(f"{key}={value}" for key, value in fields.items()) + "]" + newline + rest


def configure_logging(log_format: LogFormat, *, level: int | str = logging.INFO) -> None:
    """Our handler on the root logger, and uvicorn's access log off: the API writes its own request line, with
    the route template and the query string's secrets redacted (uvicorn's quotes the raw URL, tokens included).
    In JSON mode uvicorn's own lines go through our handler too, so that every line of the process is JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.name = HANDLER_NAME
    handler.addFilter(_ScopeFields())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.name == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)

    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False  # with no handler left, uvicorn skips its access line altogether
    access.disabled = True
    if log_format == "json":
        for name in ("uvicorn", "uvicorn.error"):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
