"""Read timeouts: a client that sends slowly, or stops, cannot hold a connection (slow-loris), over raw sockets
against `grader run` with small timeouts.

The proof that a connection was cut off is that the server closes it (or answers) while the client still sends: a
server without the timeout would keep reading, and the client gives up with an AssertionError at CLIENT_GIVES_UP_S,
many times the configured timeouts.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import Backends
from tests.service.conftest import RunningService, start_service, stop_service

pytestmark = pytest.mark.service
SUBMIT = "/api/v1/assignments/csce636-hw3/submissions"
BOUNDARY = "read-timeouts-boundary"
SHEET = Path(__file__).resolve().parent.parent / "data" / "correct_sheet.yaml"
TIMEOUTS = {
    "GRADER_HEADER_TIMEOUT_S": "2",
    "GRADER_BODY_TIMEOUT_S": "4",
    "GRADER_BODY_IDLE_TIMEOUT_S": "2",
    "GRADER_KEEP_ALIVE_TIMEOUT_S": "1",
}
CLIENT_GIVES_UP_S = 45


@pytest.fixture(scope="module")
def timed(backends: Backends, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    running = start_service(backends, tmp_path_factory.mktemp("logs") / "timed-service.log", extra_env=TIMEOUTS)
    yield running
    stop_service(running)


def _connect(service: RunningService) -> socket.socket:
    url = urlsplit(service.base_url)
    return socket.create_connection((url.hostname, url.port), timeout=CLIENT_GIVES_UP_S)


def _head(service: RunningService, token: str, content_length: int) -> bytes:
    url = urlsplit(service.base_url)
    return (
        f"POST {SUBMIT} HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {content_length}\r\n\r\n"
    ).encode()


def _body() -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="answers"; filename="answers.yaml"\r\n\r\n'.encode()
        + SHEET.read_bytes()
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def trickle_until_cut_off(connection: socket.socket, data: bytes) -> bytes:
    """Send `data` one byte a second until the server answers or closes; what it sent back (b"" for a close).

    Raises AssertionError when the client has trickled CLIENT_GIVES_UP_S seconds without being cut off."""
    connection.settimeout(1)  # the wait for an answer paces the bytes: one a second
    started = time.monotonic()
    for byte in data:
        try:
            connection.sendall(bytes([byte]))
            return _read_all(connection)
        except TimeoutError:
            pass  # no answer yet: send the next byte
        except (BrokenPipeError, ConnectionResetError):
            return b""
        if time.monotonic() - started > CLIENT_GIVES_UP_S:
            break
    raise AssertionError(f"still connected after trickling for {CLIENT_GIVES_UP_S} s")


def _read_all(connection: socket.socket) -> bytes:
    """What the server sends until it closes; the first read waits up to the socket's timeout.

    A byte the client sent after the server's answer and close is answered with a reset, which ends the reading
    but not what was read before it."""
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
            connection.settimeout(CLIENT_GIVES_UP_S)
    except ConnectionResetError:
        if not received:
            raise
    return received


def _status_and_error(reply: bytes) -> tuple[int, dict, dict[str, str]]:
    head, body = reply.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)}
    return int(status_line.split()[1]), json.loads(body)["error"], headers


def _token(service: RunningService, name: str) -> str:
    service.user(name).close()  # created through the CLI the first time
    return service.tokens[name]


def _blobs(backends: Backends) -> set[Path]:
    root = backends.data_dir / "storage"
    if not root.exists():
        return set()
    return {p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] not in ("tmp", "derived")}


def _submissions(service: RunningService, name: str) -> int:
    with service.user(name) as client:
        return int(client.get("/api/v1/submissions").json()["total"])


def test_a_request_head_sent_one_byte_a_second_is_cut_off(timed: RunningService) -> None:
    head = _head(timed, _token(timed, "ivan"), content_length=len(_body()))
    with _connect(timed) as connection:
        assert trickle_until_cut_off(connection, head) == b""  # closed, long before the head is complete


def test_twenty_connections_trickling_bodies_are_all_answered_408_and_store_nothing(
    timed: RunningService, backends: Backends
) -> None:
    token = _token(timed, "ivan")
    before, blobs_before = _submissions(timed, "ivan"), _blobs(backends)
    replies: list[bytes] = []

    def slow_client() -> None:
        with _connect(timed) as connection:
            connection.sendall(_head(timed, token, content_length=len(_body())))
            replies.append(trickle_until_cut_off(connection, _body()))

    clients = [threading.Thread(target=slow_client) for _ in range(20)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()

    assert len(replies) == 20
    for reply in replies:
        status, error, headers = _status_and_error(reply)
        assert status == 408
        assert error == {
            "code": "request_timeout",
            "message": "the request body did not arrive within 4 s",
            "field": None,
        }
        assert headers["connection"] == "close"
    assert _submissions(timed, "ivan") == before
    assert _blobs(backends) == blobs_before


def test_a_body_that_stops_arriving_is_answered_408(timed: RunningService, backends: Backends) -> None:
    token = _token(timed, "ivan")
    before, blobs_before = _submissions(timed, "ivan"), _blobs(backends)
    body = _body()
    with _connect(timed) as connection:
        connection.sendall(_head(timed, token, content_length=len(body)) + body[: len(body) // 2])
        try:
            reply = _read_all(connection)  # and nothing more is sent
        except TimeoutError:
            raise AssertionError(f"no answer in {CLIENT_GIVES_UP_S} s: the server still waits for the body") from None
    status, error, _ = _status_and_error(reply)
    assert status == 408
    assert error["message"] == "the request body stalled: no data for 2 s"
    assert _submissions(timed, "ivan") == before
    assert _blobs(backends) == blobs_before


def test_an_idle_keep_alive_connection_is_closed_and_a_whole_request_still_works(timed: RunningService) -> None:
    url = urlsplit(timed.base_url)
    with _connect(timed) as connection:
        connection.sendall(f"GET /api/v1/health HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\n\r\n".encode())
        reply = _read_all(connection)  # the answer, then the close once the connection has been idle
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert reply.endswith(b'{"status":"ok","database":"ok"}')
