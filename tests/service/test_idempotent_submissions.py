"""Submitting twice is safe: a retry with the same Idempotency-Key gets the first submission, concurrent retries
make one submission, and identical files sent by several students at the same moment are all accepted."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import Backends
from tests.service.conftest import RunningService

pytestmark = pytest.mark.service
SUBMIT = "/api/v1/assignments/csce636-hw3/submissions"
SHEET = Path(__file__).resolve().parent.parent / "data" / "correct_sheet.yaml"


def sheet(tag: str) -> bytes:
    """The correct sheet with a comment of its own: bytes no other test has stored."""
    return SHEET.read_bytes() + f"\n# {tag}\n".encode()


def submit(client: httpx.Client, data: bytes, key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post(SUBMIT, files={"answers": ("answers.yaml", data)}, headers=headers)


def total(client: httpx.Client) -> int:
    return int(client.get("/api/v1/submissions").json()["total"])


def at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run the calls in threads released together; their responses in the same order."""
    barrier = threading.Barrier(len(calls))
    responses: list[httpx.Response | None] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        responses[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(response is not None for response in responses)
    return [response for response in responses if response is not None]


def is_stored(backends: Backends, data: bytes) -> bool:
    sha = hashlib.sha256(data).hexdigest()
    return (backends.data_dir / "storage" / sha[:2] / sha[2:4] / sha).is_file()


def staged_files(backends: Backends) -> list[Path]:
    tmp = backends.data_dir / "storage" / "tmp"
    return [path for path in tmp.iterdir() if path.is_file()] if tmp.exists() else []


def test_a_retry_with_the_same_key_answers_with_the_first_submission(service: RunningService) -> None:
    kim, lena = service.user("kim"), service.user("lena")
    key = str(uuid.uuid4())
    kim_before, lena_before = total(kim), total(lena)

    first = submit(kim, sheet(key), key)
    retry = submit(kim, sheet(key), key)
    other_student = submit(lena, sheet(key), key)

    assert first.status_code == retry.status_code == other_student.status_code == 202, (first.text, retry.text)
    assert retry.json()["id"] == first.json()["id"]
    assert retry.json()["status_url"] == first.json()["status_url"]
    assert retry.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert other_student.json()["id"] != first.json()["id"]  # the key is the student's own
    assert total(kim) == kim_before + 1
    assert total(lena) == lena_before + 1
    assert submit(kim, sheet(key), str(uuid.uuid4())).json()["id"] != first.json()["id"]  # a new key: a new one


def test_concurrent_requests_with_one_key_make_one_submission_and_store_only_its_files(
    service: RunningService, backends: Backends
) -> None:
    mia = service.user("mia")
    key = str(uuid.uuid4())
    before = total(mia)
    sheets = [sheet(f"{key} {number}") for number in range(4)]  # each request's own bytes, one key

    responses = at_once([lambda data=data: submit(service.user("mia"), data, key) for data in sheets])

    assert [response.status_code for response in responses] == [202] * 4, [response.text for response in responses]
    assert len({response.json()["id"] for response in responses}) == 1
    assert total(mia) == before + 1
    kept = mia.get(responses[0].json()["status_url"]).json()["files"]
    stored = [data for data in sheets if is_stored(backends, data)]
    assert [hashlib.sha256(data).hexdigest() for data in stored] == [file["sha256"] for file in kept]
    assert staged_files(backends) == []  # the other requests' files were discarded, not left behind


def test_identical_files_sent_by_several_students_at_once_are_all_accepted(service: RunningService) -> None:
    data = sheet(str(uuid.uuid4()))
    students = [service.user(f"nora{number}") for number in range(4)]

    responses = at_once([lambda client=client: submit(client, data) for client in students])

    assert [response.status_code for response in responses] == [202] * 4, [response.text for response in responses]
    shas = {
        file["sha256"]
        for client, response in zip(students, responses, strict=True)
        for file in client.get(response.json()["status_url"]).json()["files"]
    }
    assert shas == {hashlib.sha256(data).hexdigest()}


@pytest.mark.parametrize("key", ["", "x" * 201, "with space", "é"])
def test_an_unusable_key_is_refused(service: RunningService, key: str) -> None:
    olga = service.user("olga")
    before = total(olga)
    response = olga.post(
        SUBMIT,
        files={"answers": ("answers.yaml", sheet("unusable key"))},
        headers={"Idempotency-Key": key.encode()},  # type: ignore[dict-item]
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "Idempotency-Key"
    assert total(olga) == before
