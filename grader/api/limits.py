"""Request limits: a body's size (413) and how long it takes to arrive (408), enforced while it streams in, chunked
bodies included, before anything is spooled; and how many requests one process serves at once (503)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from grader.api.errors import overloaded_response
from grader.errors import Overloaded

MULTIPART_OVERHEAD_BYTES = 64 * 1024
"""Room for multipart boundaries and part headers on top of the files themselves."""


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    message: str


class BodyLimits:
    """ASGI middleware: a body larger than the limit (413), or one that arrives too slowly (408), is cut off.

    A declared Content-Length over the size limit is refused before a byte is read. Otherwise the body is counted
    and timed as the app reads it: all of it must arrive within `body_timeout_s` of the request's start, and no
    wait for its next bytes may last longer than `idle_timeout_s` (a client trickling a body, or stalled, would
    otherwise hold a connection and an upload's temporary files forever). Past a limit the app sees a disconnect,
    so it stores nothing, and whatever it answers is replaced by the refusal, which closes the connection.
    Waiting for a disconnect after the body is complete (a streaming response does) is not timed.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, body_timeout_s: float, idle_timeout_s: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes + MULTIPART_OVERHEAD_BYTES
        self.body_timeout_s = body_timeout_s
        self.idle_timeout_s = idle_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await send_refusal(send, _too_large(self.max_body_bytes))
            return
        guard = _BodyGuard(self, receive, send)
        try:
            await self.app(scope, guard.receive, guard.send)
        except Exception:
            if guard.refusal is None:
                raise
            # The app failed on the body cut off under it: the refusal is the answer, not a 500.
        if guard.refusal is not None and not guard.replied:
            await send_refusal(send, guard.refusal)


def _too_large(limit: int) -> Refusal:
    return Refusal(413, "upload_too_large", f"the request body is larger than the limit of {limit} bytes")


class _BodyGuard:
    def __init__(self, limits: BodyLimits, receive: Receive, send: Send) -> None:
        self._limits, self._receive, self._send = limits, receive, send
        self._deadline = asyncio.get_running_loop().time() + limits.body_timeout_s
        self.received = 0
        self.body_complete = False
        self.refusal: Refusal | None = None
        self.replied = False

    async def receive(self) -> Message:
        if self.refusal is not None:
            return {"type": "http.disconnect"}
        if self.body_complete:
            return await self._receive()
        limits = self._limits
        remaining = self._deadline - asyncio.get_running_loop().time()
        wait_s = min(limits.idle_timeout_s, remaining)
        try:
            async with asyncio.timeout(max(wait_s, 0)):
                message = await self._receive()
        except TimeoutError:
            if wait_s < limits.idle_timeout_s:
                message = f"the request body did not arrive within {limits.body_timeout_s:g} s"
            else:
                message = f"the request body stalled: no data for {limits.idle_timeout_s:g} s"
            return self._cut_off(Refusal(408, "request_timeout", message))
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > limits.max_body_bytes:
                return self._cut_off(_too_large(limits.max_body_bytes))
            self.body_complete = not message.get("more_body", False)
        return message

    def _cut_off(self, refusal: Refusal) -> Message:
        self.refusal = refusal
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.refusal is not None:
            if message["type"] == "http.response.start" and not self.replied:
                self.replied = True
                await send_refusal(self._send, self.refusal)
            return  # the app's own answer to the cut-off body is dropped
        if message["type"] == "http.response.start":
            self.replied = True
        await self._send(message)


async def send_refusal(send: Send, refusal: Refusal) -> None:
    body = json.dumps({"error": {"code": refusal.code, "message": refusal.message, "field": None}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class InFlightLimit:
    """ASGI middleware: at most `limit` requests at once in this process; the next is answered 503 with Retry-After
    at once, instead of waiting in a queue that only grows while a surge lasts (and answering long after the client
    gave up). `exempt` paths (liveness, readiness, metrics) are always served: an overloaded process is still
    alive, and monitoring must see the overload.

    A request counts from its arrival until its answer is sent, its body's upload included (as uvicorn's own
    `--limit-concurrency` counts); the body's time limits (BodyLimits) bound how long a slow upload holds its place.
    A refused request's body is left unread and the connection kept: uvicorn reads the rest and discards it (for at
    most its keep-alive timeout), whereas closing a socket with unread data resets it, and the client may lose the
    answer.
    """

    def __init__(self, app: ASGIApp, *, limit: int, exempt: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.limit = limit
        self.exempt = exempt
        self.in_flight = 0  # one event loop per process: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            busy = Overloaded(f"the service is busy ({self.limit} requests in progress); retry in a second")
            await overloaded_response(busy)(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
