"""How `grader run` serves the API: uvicorn with read timeouts on the connection itself.

uvicorn times out a keep-alive connection only while it is silent; a client that sends a request's head one byte
at a time (slow-loris) holds its connection, and a task, forever. The protocol here also closes a connection that
has not sent a whole request head within `header_timeout_s` of opening, or of its previous answer. Bodies are timed
by the app itself (grader.api.limits.BodyLimits), which holds under any ASGI server.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from grader.settings import Settings


class HeadTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose next request head does not arrive in time."""

    header_timeout_s: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._wait_for_head()

    def on_response_complete(self) -> None:
        self._wait_for_head()  # before uvicorn starts a pipelined request, which is then seen as arrived
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        super().connection_lost(exc)

    def _wait_for_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        waiting_after = self.cycle  # uvicorn makes a new cycle for each request head it has read whole
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out, waiting_after)

    def _head_timed_out(self, waiting_after: object) -> None:
        if self.cycle is waiting_after:  # no new request head since the timer started
            self.transport.close()


def serve_api(settings: Settings, *, host: str, port: int) -> None:
    """Run the API in this process until interrupted, with the settings' connection timeouts."""

    class Protocol(HeadTimeoutH11Protocol):
        header_timeout_s = settings.header_timeout_s

    uvicorn.run(
        "grader.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        http=Protocol,
        timeout_keep_alive=settings.keep_alive_timeout_s,
        access_log=False,  # the app logs each request itself (grader.api.observability), secrets redacted
    )
