"""The service backbone over HTTP: submit -> store -> queue -> real worker -> score -> read, on real backends."""

from __future__ import annotations

import json
import signal
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import Backends
from tests.service.conftest import RunningService, start_service, stop_service, wait_for_final

pytestmark = pytest.mark.service
DATA = Path(__file__).resolve().parent.parent / "data"
SHEET = DATA / "correct_sheet.yaml"
SUBMIT = "/api/v1/assignments/csce636-hw3/submissions"


def submit(client: httpx.Client, files: dict) -> httpx.Response:
    return client.post(SUBMIT, files=files)


def test_run_prints_how_to_get_a_token(service: RunningService) -> None:
    assert "grader users create --role instructor" in service.log()
    assert httpx.get(f"{service.base_url}/docs").status_code == 200


def test_users_create_prints_token_alone_on_last_line(service: RunningService) -> None:
    output = service.cli("users", "create", "--role", "instructor", "token-check").stdout
    token = output.strip().splitlines()[-1]
    assert token.startswith("gr_") and " " not in token
    me = httpx.get(f"{service.base_url}/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json() == {"username": "token-check", "role": "instructor"}


def test_submission_is_graded_by_the_worker_with_every_phase_timestamped(service: RunningService) -> None:
    bob = service.user("bob")
    response = submit(bob, {"answers": ("answers.yaml", SHEET.read_bytes(), "application/x-yaml")})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status_url"] == f"/api/v1/submissions/{accepted['id']}"

    body = wait_for_final(bob, accepted["status_url"])
    assert body["status"] == "graded", body
    phases = body["phases"]
    moments = [datetime.fromisoformat(phases[name]) for name in ("received", "queued", "running", "graded")]
    assert moments == sorted(moments)
    assert phases["failed"] is None
    assert body["max_score"] == 200
    assert body["score"] is not None and body["score"] > 0
    assert {part["id"] for part in body["parts"]} >= {"q2.standard_params", "q3.a_mean_shape", "q4.c_kernels"}
    assert body["files"][0]["field"] == "answers" and len(body["files"][0]["sha256"]) == 64


def test_api_result_equals_grader_grade_json(service: RunningService) -> None:
    bob = service.user("bob")
    accepted = submit(bob, {"answers": ("answers.yaml", SHEET.read_bytes())}).json()
    wait_for_final(bob, accepted["status_url"])
    body = service.user("alice", role="instructor").get(accepted["status_url"]).json()  # staff see everything
    offline = json.loads(service.cli("grade", "--answers", str(SHEET), "--json").stdout)
    assert (body["score"], body["max_score"], body["rubric_version"]) == (
        offline["score"],
        offline["max_score"],
        offline["rubric_version"],
    )
    assert [{k: v for k, v in part.items() if k not in ("reviewed", "review")} for part in body["parts"]] == offline[
        "parts"
    ]


@pytest.mark.parametrize("sheet", ["correct_sheet.yaml", "correct_sheet_alt.json"])
def test_a_correct_sheet_in_any_notation_gets_full_marks_on_q2_to_q4(service: RunningService, sheet: str) -> None:
    bob = service.user("bob")
    accepted = submit(bob, {"answers": (sheet, (DATA / sheet).read_bytes())}).json()
    body = wait_for_final(bob, accepted["status_url"])
    written = {"q2.discussion"}
    checked = [part for part in body["parts"] if part["id"][:2] in ("q2", "q3", "q4") and part["id"] not in written]
    assert len(checked) == 12
    assert [part["id"] for part in checked if part["status"] != "correct" or part["points"] != part["max_points"]] == []
    review = next(part for part in body["parts"] if part["id"] == "q2.discussion")
    assert (review["status"], review["points"]) == ("received", None)  # hidden from students until release
    staff = service.user("alice", role="instructor").get(accepted["status_url"]).json()
    review = next(part for part in staff["parts"] if part["id"] == "q2.discussion")
    assert (review["status"], review["points"]) == ("needs_review", 0)


def test_a_student_cannot_see_another_students_submission(service: RunningService) -> None:
    bob, carol = service.user("bob"), service.user("carol")
    accepted = submit(bob, {"answers": ("answers.yaml", SHEET.read_bytes())}).json()
    other = carol.get(accepted["status_url"])
    assert other.status_code == 404
    assert other.json()["error"]["code"] == "not_found"
    assert accepted["id"] not in {item["id"] for item in carol.get("/api/v1/submissions").json()["items"]}
    staff = service.user("alice", role="instructor").get(accepted["status_url"])
    assert staff.status_code == 200 and staff.json()["user"] == "bob"


def test_requests_without_a_valid_token_are_refused(service: RunningService) -> None:
    anonymous = httpx.post(f"{service.base_url}{SUBMIT}", files={"answers": ("a.yaml", b"q2: {}")})
    assert anonymous.status_code == 401
    assert "Bearer" in anonymous.json()["error"]["message"]
    forged = httpx.get(f"{service.base_url}/api/v1/submissions", headers={"Authorization": "Bearer gr_nope"})
    assert forged.status_code == 401


@pytest.mark.parametrize(
    ("files", "status", "field", "phrase"),
    [
        ({"answers": ("a.yaml", b"q2: [unclosed")}, 422, "answers", "not valid YAML"),
        ({"answers": ("a.json", b'{"q2": ')}, 422, "answers", "not valid JSON"),
        ({"answers": ("a.yaml", b"- just\n- a list\n")}, 422, "answers", "mapping"),
        ({"answers": ("a.yaml", b"assignment: other-hw\n")}, 422, "assignment", "other-hw"),
        ({"v1": ("m.pt", b"x")}, 422, "answers", "required"),
        ({"answers": ("a.yaml", b"q2: {}"), "v1": ("model.exe", b"x")}, 422, "v1", ".safetensors"),
        ({"answers": ("a.yaml", b"q2: {}"), "v3": ("m.pt", b"x")}, 422, "v3", "expected answers, v1, v2"),
        ({"answers": ("a.yaml", b"#" * 300_000)}, 413, "answers", "limit"),
    ],
)
def test_bad_uploads_get_a_specific_error_and_store_nothing(
    service: RunningService, files: dict, status: int, field: str, phrase: str
) -> None:
    dora = service.user("dora")
    before = dora.get("/api/v1/submissions").json()["total"]
    response = submit(dora, files)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field
    assert phrase in error["message"]
    assert dora.get("/api/v1/submissions").json()["total"] == before


def test_unknown_assignment_is_404(service: RunningService) -> None:
    response = service.user("bob").post(
        "/api/v1/assignments/no-such-hw/submissions", files={"answers": ("a.yaml", b"q2: {}")}
    )
    assert response.status_code == 404
    assert response.json()["error"]["field"] == "assignment"


def test_regrade_adds_a_job_and_keeps_the_first_result(service: RunningService) -> None:
    bob, alice = service.user("bob"), service.user("alice", role="instructor")
    accepted = submit(bob, {"answers": ("answers.yaml", SHEET.read_bytes())}).json()
    first = wait_for_final(bob, accepted["status_url"])
    assert bob.post(f"{accepted['status_url']}/regrade").status_code == 403

    response = alice.post(f"{accepted['status_url']}/regrade")
    assert response.status_code == 202
    body = wait_for_final(alice, accepted["status_url"])
    history = body["history"]
    assert [job["number"] for job in history] == [1, 2]
    assert [job["reason"] for job in history] == ["submitted", "regrade"]
    assert all(job["status"] == "graded" and job["worker"] for job in history)
    assert history[0]["score"] == first["score"] == history[1]["score"]
    assert body["graded_by_job"] == 2


def test_ctrl_c_stops_api_and_worker(backends: Backends, tmp_path: Path) -> None:
    second = start_service(backends, tmp_path / "second.log")
    worker_pids = _children(second.process.pid)
    assert worker_pids, "grader run should have started a worker process"
    assert stop_service(second) in (0, -signal.SIGINT)
    assert not [pid for pid in worker_pids if Path(f"/proc/{pid}").exists()]
    assert "Application shutdown complete" in second.log()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def test_an_oversized_declared_body_is_refused_before_it_is_read(service: RunningService) -> None:
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(service.base_url)
    token = service.tokens.get("bob") or service.user("bob").headers["Authorization"].split()[-1]
    request = (
        f"POST {SUBMIT} HTTP/1.1\r\nHost: {url.hostname}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 50000000000\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port), timeout=30) as connection:
        connection.sendall(request)  # the headers only: the 50 GB body never comes
        received = b""
        while chunk := connection.recv(65536):  # the server closes the connection after its answer
            received += chunk
        reply = received.decode()
    assert reply.startswith("HTTP/1.1 413")
    assert "larger than" in reply and "upload_too_large" in reply


def test_a_chunked_body_is_cut_off_at_the_limit(service: RunningService) -> None:
    limit = 629145600 + 64 * 1024  # GRADER_MAX_SUBMISSION_BYTES default + multipart overhead
    sent = 0

    def body():  # type: ignore[no-untyped-def]  # no Content-Length: httpx sends it chunked
        nonlocal sent
        yield b'--x\r\nContent-Disposition: form-data; name="v1"; filename="m.pt"\r\n\r\n'
        chunk = b"\0" * (4 * 1024 * 1024)
        while sent <= limit + len(chunk):
            sent += len(chunk)
            yield chunk

    client = service.user("bob")
    try:
        response = client.post(SUBMIT, content=body(), headers={"Content-Type": "multipart/form-data; boundary=x"})
    except httpx.HTTPError:  # the server may close the connection while the client still sends
        pytest.skip("connection closed before the 413 could be read")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "upload_too_large"
