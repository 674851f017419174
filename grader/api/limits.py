"""Request size limits enforced while the body streams in, chunked bodies included, before anything is spooled."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPART_OVERHEAD_BYTES = 64 * 1024
"""Room for multipart boundaries and part headers on top of the files themselves."""


class BodySizeLimit:
    """ASGI middleware: 413 as soon as a body is declared or found to be larger than the limit.

    A declared Content-Length is refused before a byte is read. A body without one (chunked) is counted as
    it arrives; past the limit the app sees a disconnect, and whatever it answers is replaced by the 413.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes + MULTIPART_OVERHEAD_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await send_too_large(send, self.max_body_bytes)
            return
        guard = _StreamGuard(receive, send, self.max_body_bytes)
        await self.app(scope, guard.receive, guard.send)
        if guard.exceeded and not guard.replied:
            await send_too_large(send, self.max_body_bytes)


class _StreamGuard:
    def __init__(self, receive: Receive, send: Send, limit: int) -> None:
        self._receive, self._send, self.limit = receive, send, limit
        self.received = 0
        self.exceeded = False
        self.replied = False

    async def receive(self) -> Message:
        if self.exceeded:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.exceeded = True
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self.exceeded:
            if message["type"] == "http.response.start":
                self.replied = True
                await send_too_large(self._send, self.limit)
            return  # the app's own answer to the cut-off body is dropped
        await self._send(message)


async def send_too_large(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "error": {
                "code": "upload_too_large",
                "message": f"the request body is larger than the limit of {limit} bytes",
                "field": None,
            }
        }
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
