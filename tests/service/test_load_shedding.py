"""An API at its limits answers 503 with Retry-After at once, stores nothing for it, and never answers 500.

API processes of their own (`grader api`, beside the session's service, on the same database and broker): one with a
tiny cap on requests in flight, one with a single database connection that a request waits for only briefly.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import REPO_ROOT, Backends
from tests.service.conftest import GRADER, RunningService, _free_port, wait_until_healthy

pytestmark = pytest.mark.service
SHEET = (Path(__file__).resolve().parent.parent / "data" / "correct_sheet.yaml").read_bytes()
SUBMIT = "/api/v1/assignments/csce636-hw3/submissions"
BOUNDARY = "load-shedding-boundary"
IN_FLIGHT = 3


@contextmanager
def api_process(backends: Backends, log_dir: Path, settings: dict[str, str]) -> Iterator[str]:
    """The URL of a `grader api` process on the session's database and broker, with these GRADER_ settings."""
    port = _free_port()
    env = {**backends.env, **settings}
    log_path = log_dir / f"api-{port}.log"
    api = subprocess.Popen(
        [GRADER, "api", "--port", str(port)],
        env=env,
        cwd=REPO_ROOT,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_healthy(RunningService(process=api, base_url=f"http://127.0.0.1:{port}", env=env, log_path=log_path))
        yield f"http://127.0.0.1:{port}"
    finally:
        api.terminate()
        api.wait(timeout=30)


@pytest.fixture(scope="module")
def busy_api(service: RunningService, backends: Backends, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An API process that serves 3 requests at once."""
    with api_process(
        backends, tmp_path_factory.mktemp("logs"), {"GRADER_MAX_REQUESTS_IN_FLIGHT": str(IN_FLIGHT)}
    ) as url:
        yield url


@pytest.fixture(scope="module")
def one_connection_api(
    service: RunningService, backends: Backends, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An API process with one database connection, waited for 50 ms at most, and no cap on requests of its own."""
    settings = {
        "GRADER_MAX_REQUESTS_IN_FLIGHT": "1000",
        "GRADER_DB_POOL_SIZE": "1",
        "GRADER_DB_MAX_OVERFLOW": "0",
        "GRADER_DB_POOL_TIMEOUT_S": "0.05",
    }
    with api_process(backends, tmp_path_factory.mktemp("logs"), settings) as url:
        yield url


def client_for(service: RunningService, base_url: str, name: str) -> httpx.Client:
    service.user(name)  # created through the CLI; its token works on any API process of this database
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {service.tokens[name]}"}, timeout=60)


def submission_body() -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="answers"; filename="answers.yaml"\r\n'
            f"Content-Type: application/x-yaml\r\n\r\n"
        ).encode()
        + SHEET
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def held_upload(base_url: str, token: str, body: bytes) -> socket.socket:
    """A submission whose headers and first half of its body are sent; the rest waits (the request is in flight)."""
    address = urlsplit(base_url)
    sock = socket.create_connection((address.hostname, address.port), timeout=60)
    head = (
        f"POST {SUBMIT} HTTP/1.1\r\nHost: {address.netloc}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body[: len(body) // 2])
    return sock


def finish(sock: socket.socket, body: bytes) -> int:
    """Send the rest of the body; the answer's status."""
    sock.sendall(body[len(body) // 2 :])
    answer = b""
    while b"\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    sock.close()
    return int(answer.split(b" ", 2)[1])


def assert_shed(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["error"]["code"] == "overloaded"


def test_a_request_over_the_in_flight_cap_is_answered_503_at_once_and_the_others_complete(
    service: RunningService, busy_api: str
) -> None:
    ida = client_for(service, busy_api, "ida")
    body = submission_body()
    held = [held_upload(busy_api, service.tokens["ida"], body) for _ in range(IN_FLIGHT)]
    # The held uploads reach the app in their own time: until they all have, a request may still get through.
    deadline = time.monotonic() + 30
    probe = ida.get("/api/v1/me")
    while probe.status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
        probe = ida.get("/api/v1/me")
    assert_shed(probe)
    assert_shed(ida.post(SUBMIT, files={"answers": ("answers.yaml", SHEET)}))
    assert httpx.get(f"{busy_api}/api/v1/health", timeout=30).status_code == 200  # liveness is never shed

    assert [finish(sock, body) for sock in held] == [202] * IN_FLIGHT
    assert ida.get("/api/v1/me").status_code == 200
    mine = ida.get("/api/v1/submissions").json()
    assert mine["total"] == IN_FLIGHT  # the refused submission stored nothing


@pytest.mark.parametrize("api", ["busy_api", "one_connection_api"])
def test_a_burst_gets_only_202_and_503_with_retry_after(
    service: RunningService, api: str, request: pytest.FixtureRequest
) -> None:
    base_url = request.getfixturevalue(api)
    jack = client_for(service, base_url, f"jack-{api}")

    def submit(_: int) -> httpx.Response:
        with httpx.Client(base_url=base_url, headers=dict(jack.headers), timeout=60) as client:
            return client.post(SUBMIT, files={"answers": ("answers.yaml", SHEET)})

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(submit, range(48)))
    statuses = [response.status_code for response in answers]
    assert set(statuses) <= {202, 503}, statuses
    for response in answers:
        if response.status_code == 503:
            assert_shed(response)
    accepted = {response.json()["id"] for response in answers if response.status_code == 202}
    stored = jack.get("/api/v1/submissions", params={"limit": 500}).json()
    assert {item["id"] for item in stored["items"]} == accepted  # each 202 stored once, each 503 nothing
