"""Per-file size limits enforced while the upload streams in, over HTTP against a service with small limits.

The proof that a body is not read to its end is a client that stops sending one byte past a file's limit and
waits for the answer: a server that needed the rest of the body would never answer (the socket times out).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import Backends
from tests.service.conftest import RunningService, small_checkpoint, start_service, stop_service

pytestmark = pytest.mark.service
SHEET = Path(__file__).resolve().parent.parent / "data" / "correct_sheet.yaml"
SUBMIT = "/api/v1/assignments/csce636-hw3/submissions"
BOUNDARY = "upload-limits-boundary"

ANSWERS_LIMIT = 16 * 1024
CHECKPOINT_LIMIT = 1024 * 1024
SUBMISSION_LIMIT = 1536 * 1024
CODE_FILE_LIMIT = 16 * ANSWERS_LIMIT  # each v1_code/v2_code file may be as large as 16 answer sheets
BODY_LIMIT = SUBMISSION_LIMIT + 64 * 1024  # BodyLimits leaves room for multipart boundaries and headers
LIMITS = {
    "GRADER_MAX_ANSWERS_BYTES": str(ANSWERS_LIMIT),
    "GRADER_MAX_CHECKPOINT_BYTES": str(CHECKPOINT_LIMIT),
    "GRADER_MAX_SUBMISSION_BYTES": str(SUBMISSION_LIMIT),
}


@dataclass(frozen=True)
class _SmallLimits(Backends):
    """The same backends, with the small size limits above in the service's environment."""

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, **LIMITS}


@pytest.fixture(scope="module")
def capped(backends: Backends, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    small = _SmallLimits(database_url=backends.database_url, broker_url=backends.broker_url, data_dir=backends.data_dir)
    running = start_service(small, tmp_path_factory.mktemp("logs") / "capped-service.log")
    yield running
    stop_service(running)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict:
        return json.loads(self.body)["error"]


def part_head(field: str, filename: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


def answers_part() -> bytes:
    return part_head("answers", "answers.yaml") + SHEET.read_bytes() + b"\r\n"


def send_until_answered(service: RunningService, token: str, sent: bytes, *, content_length: int | None) -> Reply:
    """POST `sent` as the start of a body (declared `content_length` long, or chunked when None), then only wait.

    The rest of the body is never sent and the body is never ended: an answer proves the server did not wait
    for it. Raises AssertionError when no answer comes.
    """
    url = urlsplit(service.base_url)
    framing = f"Content-Length: {content_length}" if content_length is not None else "Transfer-Encoding: chunked"
    head = (
        f"POST {SUBMIT} HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{framing}\r\n\r\n"
    ).encode()
    pieces = [sent[start : start + 32 * 1024] for start in range(0, len(sent), 32 * 1024)]
    with socket.create_connection((url.hostname, url.port), timeout=60) as connection:
        connection.sendall(head)
        for number, piece in enumerate(pieces, 1):
            if content_length is None:
                # The last chunk stops at its last byte, so that byte is the last one on the wire: a server that
                # closes after answering has then read all that was sent, and the answer is not lost to a reset.
                piece = b"%x\r\n%s%s" % (len(piece), piece, b"\r\n" if number < len(pieces) else b"")
            connection.sendall(piece)
        try:
            return _read_reply(connection)
        except TimeoutError:
            raise AssertionError("no answer before the body was complete: the server waited for the rest") from None


def _read_reply(connection: socket.socket) -> Reply:
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        assert chunk, f"connection closed before a full reply: {received!r}"
        received += chunk
    head, body = received.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)}
    while len(body) < int(headers["content-length"]):
        chunk = connection.recv(65536)
        assert chunk, f"connection closed in the middle of the reply body: {body!r}"
        body += chunk
    return Reply(status=int(status_line.split()[1]), headers=headers, body=body)


def oversize_checkpoint_start() -> tuple[bytes, int]:
    """The start of a body up to one byte past v1's limit, and the length of the whole body it begins.

    The whole body is under the submission limit; the v1 part in it is half as large again as its own limit.
    """
    start = answers_part() + part_head("v1", "model.pt")
    declared = len(start) + CHECKPOINT_LIMIT * 3 // 2 + len(f"\r\n--{BOUNDARY}--\r\n")
    assert declared <= BODY_LIMIT
    return start + b"\1" * (CHECKPOINT_LIMIT + 1), declared


def token_of(service: RunningService, name: str) -> str:
    service.user(name).close()  # created through the CLI the first time
    return service.tokens[name]


def stored_files(backends: Backends) -> set[Path]:
    root = backends.data_dir / "storage"
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


def total_submissions(client: httpx.Client) -> int:
    return int(client.get("/api/v1/submissions").json()["total"])


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_an_oversize_checkpoint_is_refused_at_its_limit_before_the_rest_of_the_body_is_read(
    capped: RunningService, backends: Backends, framing: str
) -> None:
    erin = capped.user("erin")
    before, files_before = total_submissions(erin), stored_files(backends)
    sent, declared = oversize_checkpoint_start()

    reply = send_until_answered(
        capped, token_of(capped, "erin"), sent, content_length=declared if framing == "content-length" else None
    )

    assert reply.status == 413, reply.body
    assert reply.error() == {
        "code": "upload_too_large",
        "message": f"file 'v1' is larger than the limit of {CHECKPOINT_LIMIT} bytes (1 MiB)",
        "field": "v1",
    }
    assert total_submissions(erin) == before
    assert stored_files(backends) == files_before


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_an_oversize_answer_sheet_is_refused_at_its_limit(capped: RunningService, framing: str) -> None:
    erin = capped.user("erin")
    before = total_submissions(erin)
    sent = part_head("answers", "answers.yaml") + b"#" * (ANSWERS_LIMIT + 1)

    reply = send_until_answered(
        capped, token_of(capped, "erin"), sent, content_length=len(sent) + 4096 if framing == "content-length" else None
    )

    assert reply.status == 413, reply.body
    assert reply.error()["field"] == "answers"
    assert reply.error()["message"] == f"file 'answers' is larger than the limit of {ANSWERS_LIMIT} bytes (16 KiB)"
    assert total_submissions(erin) == before


def test_an_oversize_code_file_is_refused_naming_the_field_and_the_file(capped: RunningService) -> None:
    erin = capped.user("erin")
    before = total_submissions(erin)
    response = erin.post(
        SUBMIT,
        files=[
            ("answers", ("answers.yaml", SHEET.read_bytes())),
            ("v1", ("model.pt", b"\0" * 1024)),
            ("v1_code", ("ImageUtils.py", b"# small\n")),
            ("v1_code", ("NetWork.py", b"#" * (CODE_FILE_LIMIT + 1))),
        ],
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"] == {
        "code": "upload_too_large",
        "message": f"file 'NetWork.py' in 'v1_code' is larger than the limit of {CODE_FILE_LIMIT} bytes (256 KiB)",
        "field": "v1_code",
    }
    assert total_submissions(erin) == before


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_an_ordinary_client_sending_a_whole_oversize_file_reads_the_413(capped: RunningService, framing: str) -> None:
    erin = capped.user("erin")
    before = total_submissions(erin)
    body = (
        answers_part()
        + part_head("v2", "model.safetensors")
        + b"\0" * (CHECKPOINT_LIMIT + 100 * 1024)
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    # httpx declares the length of a bytes body and sends a generator's chunked.
    content = body if framing == "content-length" else iter([body[i : i + 65536] for i in range(0, len(body), 65536)])

    response = erin.post(SUBMIT, content=content, headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})

    assert response.status_code == 413, response.text
    assert response.json()["error"]["field"] == "v2"
    assert f"limit of {CHECKPOINT_LIMIT} bytes" in response.json()["error"]["message"]
    assert total_submissions(erin) == before


def test_a_chunked_body_past_the_submission_limit_is_still_cut_off_when_every_file_is_under_its_own(
    capped: RunningService,
) -> None:
    # v1 at its limit, then v2 until the body as a whole is one byte past BodyLimits' limit.
    start = answers_part() + part_head("v1", "a.pt") + b"\0" * CHECKPOINT_LIMIT + b"\r\n" + part_head("v2", "b.pt")
    sent = start + b"\0" * (BODY_LIMIT + 1 - len(start))
    assert BODY_LIMIT + 1 - len(start) < CHECKPOINT_LIMIT

    reply = send_until_answered(capped, token_of(capped, "erin"), sent, content_length=None)

    assert reply.status == 413, reply.body
    assert reply.error()["code"] == "upload_too_large"
    assert reply.error()["field"] is None
    assert f"limit of {BODY_LIMIT} bytes" in reply.error()["message"]


@pytest.mark.parametrize(
    ("files", "data", "field", "message"),
    [
        ([("v1", ("a.pt", b"x")), ("v1", ("b.pt", b"x"))], None, "v1", "form field 'v1' was sent more than once"),
        ([("v2", ("a.pt", b"x"))], {"answers": "q2: {}"}, "answers", "form field 'answers' must be a file upload"),
        (None, {"answers": "q2: {}"}, "answers", "form field 'answers' must be a file upload"),
        (
            [("answers", ("a.yaml", b"q2: {}"))],
            {"note": "hi"},
            "note",
            "unknown form field 'note'; expected answers, v1, v2, v1_code, v2_code, code",
        ),
    ],
)
def test_fields_of_the_wrong_kind_are_refused_by_name(
    capped: RunningService, files: list | None, data: dict | None, field: str, message: str
) -> None:
    erin = capped.user("erin")
    before = total_submissions(erin)
    response = erin.post(SUBMIT, files=files, data=data)  # no files: httpx sends the data url-encoded
    assert response.status_code == 422, response.text
    assert response.json()["error"] == {"code": "input", "message": message, "field": field}
    assert total_submissions(erin) == before


def test_after_refused_uploads_earlier_submissions_remain_and_uploads_at_the_limits_are_accepted(
    capped: RunningService, backends: Backends
) -> None:
    frank = capped.user("frank")
    earlier = frank.post(SUBMIT, files={"answers": ("answers.yaml", SHEET.read_bytes())})
    assert earlier.status_code == 202, earlier.text
    earlier_files = frank.get(earlier.json()["status_url"]).json()["files"]
    files_before = stored_files(backends)

    token = token_of(capped, "frank")
    sent, declared = oversize_checkpoint_start()
    for content_length in (declared, None):
        assert send_until_answered(capped, token, sent, content_length=content_length).status == 413
    assert stored_files(backends) == files_before

    at_limits = frank.post(
        SUBMIT,
        files={
            "answers": ("answers.yaml", SHEET.read_bytes() + b"#" * (ANSWERS_LIMIT - SHEET.stat().st_size)),
            "v1": ("model.safetensors", small_checkpoint(CHECKPOINT_LIMIT)),
        },
    )
    assert at_limits.status_code == 202, at_limits.text
    accepted = frank.get(at_limits.json()["status_url"]).json()
    assert [(file["field"], file["size"]) for file in accepted["files"]] == [
        ("answers", ANSWERS_LIMIT),
        ("v1", CHECKPOINT_LIMIT),
    ]

    again = frank.get(earlier.json()["status_url"])
    assert again.status_code == 200
    assert again.json()["files"] == earlier_files
    assert earlier.json()["id"] in {item["id"] for item in frank.get("/api/v1/submissions").json()["items"]}
    for file in earlier_files + accepted["files"]:
        sha = file["sha256"]
        assert (backends.data_dir / "storage" / sha[:2] / sha[2:4] / sha).stat().st_size == file["size"]


def stored_blobs(backends: Backends) -> set[Path]:
    """The stored uploads: every file under the store but its temporary files (tmp/) and derived files (derived/)."""
    root = backends.data_dir / "storage"
    return {path for path in stored_files(backends) if path.relative_to(root).parts[0] not in ("tmp", "derived")}


def whole_body() -> bytes:
    return answers_part() + part_head("v1", "model.pt") + b"\3" * 16 * 1024 + f"\r\n--{BOUNDARY}--\r\n".encode()


def _cut_short_by_content_length(capped: RunningService, token: str) -> Reply:
    # The whole body goes out, but its Content-Length says 10240: the server's body ends there, in the checkpoint.
    return send_until_answered(capped, token, whole_body(), content_length=10240)


def _without_closing_boundary(framing: str) -> Callable[[RunningService, str], Reply]:
    def send(capped: RunningService, token: str) -> Reply:
        body = whole_body().removesuffix(f"--{BOUNDARY}--\r\n".encode())
        # httpx declares the length of a bytes body and sends a generator's chunked, ending it properly.
        content = body if framing == "content-length" else iter([body[i : i + 4096] for i in range(0, len(body), 4096)])
        response = httpx.post(
            capped.base_url + SUBMIT,
            content=content,
            headers={"Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
            timeout=60,
        )
        return Reply(status=response.status_code, headers=dict(response.headers), body=response.content)

    return send


@pytest.mark.parametrize(
    "send",
    [
        pytest.param(_cut_short_by_content_length, id="content-length-smaller-than-the-body"),
        pytest.param(_without_closing_boundary("content-length"), id="no-closing-boundary"),
        pytest.param(_without_closing_boundary("chunked"), id="no-closing-boundary-chunked"),
    ],
)
def test_a_body_that_does_not_end_with_its_closing_boundary_is_refused_and_stores_nothing(
    capped: RunningService, backends: Backends, send: Callable[[RunningService, str], Reply]
) -> None:
    erin = capped.user("erin")
    before, blobs_before = total_submissions(erin), stored_blobs(backends)

    reply = send(capped, token_of(capped, "erin"))

    assert reply.status == 400, reply.body
    assert reply.error()["code"] == "http_error"
    assert f"ended before its closing boundary '--{BOUNDARY}--'" in reply.error()["message"]
    assert reply.headers["connection"] == "close"
    assert total_submissions(erin) == before
    assert stored_blobs(backends) == blobs_before
