"""The instructor side over HTTP with the real worker: gradebook and its Canvas CSV, filters, manual review
(surviving a regrade), a student's history, user and token administration, and who may do what."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import httpx
import pytest

from grader.rubric.model import load_rubric
from tests.conftest import REPO_ROOT
from tests.service.conftest import RunningService, small_checkpoint, wait_for_final

pytestmark = pytest.mark.service
DATA = Path(__file__).resolve().parent.parent / "data"
ASSIGNMENT = "/api/v1/assignments/csce636-hw3"
SHEETS = {"gb-ann": "correct_sheet.yaml", "gb-ben": "wrong_sheet.yaml", "gb-cat": "correct_sheet_alt.json"}


def submit(client: httpx.Client, sheet: str) -> dict:
    response = client.post(f"{ASSIGNMENT}/submissions", files={"answers": (sheet, (DATA / sheet).read_bytes())})
    assert response.status_code == 202, response.text
    return wait_for_final(client, response.json()["status_url"])


@pytest.fixture(scope="module")
def klass(service: RunningService) -> dict[str, dict]:
    """Three students who submitted (gb-ann twice: the second counts) and one on the roster who did not."""
    instructor = service.user("alice", role="instructor")
    created = instructor.post("/api/v1/users", json={"username": "gb-dan", "role": "student"})
    assert created.status_code == 201 and created.json()["token"].startswith("gr_")
    graded = {}
    submit(service.user("gb-ann"), "wrong_sheet.yaml")
    for name, sheet in SHEETS.items():
        graded[name] = submit(service.user(name), sheet)
    return graded


def gradebook(client: httpx.Client, **params: object) -> dict:
    response = client.get(f"{ASSIGNMENT}/gradebook", params={"limit": 5000, **params})
    assert response.status_code == 200, response.text
    return response.json()


def mine(rows: list[dict]) -> dict[str, dict]:
    return {row["user"]: row for row in rows if row["user"].startswith("gb-")}


def test_the_gradebook_has_one_row_per_student_for_the_counting_submission(
    service: RunningService, klass: dict[str, dict]
) -> None:
    staff = service.user("alice", role="instructor")
    rows = mine(gradebook(staff)["items"])
    assert set(rows) == {"gb-ann", "gb-ben", "gb-cat", "gb-dan"}
    for name, submission in klass.items():
        full = staff.get(submission["status_url"]).json()
        assert rows[name]["submission_id"] == submission["id"]  # gb-ann: the latest of two
        assert rows[name]["score"] == full["score"] and rows[name]["status"] == "graded"
        assert rows[name]["parts"]["q4.c_padding"] == {
            "points": next(p["points"] for p in full["parts"] if p["id"] == "q4.c_padding"),
            "status": next(p["status"] for p in full["parts"] if p["id"] == "q4.c_padding"),
            "reviewed": False,
        }
    assert rows["gb-dan"] | {"max_score": 0} == rows["gb-dan"] | {
        "status": "missing",
        "score": None,
        "submission_id": None,
        "parts": {},
        "max_score": 0,
    }
    # best instead of latest: gb-ann's correct sheet beats the wrong one either way; the wrong sheet is lower
    assert mine(gradebook(staff, counting="best")["items"])["gb-ann"]["score"] == rows["gb-ann"]["score"]
    assert rows["gb-ben"]["score"] < rows["gb-ann"]["score"]


def test_gradebook_filters_sorting_and_paging(service: RunningService, klass: dict[str, dict]) -> None:
    staff = service.user("tom", role="ta")
    only = gradebook(staff, user="gb-ben")
    assert [row["user"] for row in only["items"]] == ["gb-ben"] and only["total"] == 1
    assert "gb-dan" in mine(gradebook(staff, status="missing")["items"])
    assert "gb-ann" not in mine(gradebook(staff, status="missing")["items"])
    wrong_padding = mine(gradebook(staff, part="q4.c_padding", part_status="partial")["items"])
    assert "gb-ben" in wrong_padding and "gb-ann" not in wrong_padding
    high = mine(gradebook(staff, min_score=klass["gb-ann"]["score"])["items"])
    assert "gb-ann" in high and "gb-ben" not in high
    ordered = [row for row in gradebook(staff, sort="-score")["items"] if row["score"] is not None]
    assert [row["score"] for row in ordered] == sorted((row["score"] for row in ordered), reverse=True)
    first, second = gradebook(staff, limit=1, offset=0), gradebook(staff, limit=1, offset=1)
    assert first["total"] == second["total"] >= 4 and first["items"] != second["items"]
    bad = staff.get(f"{ASSIGNMENT}/gradebook", params={"usr": "gb-ben"})
    assert bad.status_code == 422 and "usr" in bad.json()["error"]["message"]


def test_the_canvas_csv_reparses_with_the_columns_canvas_expects(
    service: RunningService, klass: dict[str, dict]
) -> None:
    staff = service.user("alice", role="instructor")
    response = staff.get(f"{ASSIGNMENT}/gradebook.csv", params={"column": "Homework 3 (12345)"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(response.text)))
    assert table[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Homework 3 (12345)"]
    assert table[1][0].strip() == "Points Possible" and table[1][-1] == "200"
    rows = {row[3]: row for row in table[2:]}
    assert float(rows["gb-ann"][5]) == pytest.approx(staff.get(klass["gb-ann"]["status_url"]).json()["score"])
    staff_score = staff.get(klass["gb-ben"]["status_url"]).json()["score"]
    assert float(rows["gb-ben"][5]) == pytest.approx(staff_score)
    assert rows["gb-dan"][5] == ""  # nothing submitted: Canvas leaves the grade alone
    rubric = load_rubric(REPO_ROOT / "rubrics" / "csce636-hw3.yaml")
    response = staff.get(f"{ASSIGNMENT}/gradebook.csv", params={"format": "parts"})
    parts = list(csv.reader(io.StringIO(response.text)))
    assert parts[0] == [*table[0][:5], *(part.id for part in rubric.parts)]
    assert [float(cell) for cell in parts[1][5:]] == [part.points for part in rubric.parts]
    ben = next(row for row in parts[2:] if row[3] == "gb-ben")
    assert sum(float(cell) for cell in ben[5:]) == pytest.approx(staff_score)


def test_review_queue_scoring_a_written_part_and_an_override_that_survives_a_regrade(
    service: RunningService, klass: dict[str, dict]
) -> None:
    ta, instructor, ben = service.user("tom", role="ta"), service.user("alice"), service.user("gb-ben")
    queue = ta.get(f"{ASSIGNMENT}/review", params={"part": "q2.discussion"}).json()["items"]
    item = next(entry for entry in queue if entry["user"] == "gb-ben")
    assert item["answer"] == "Bottlenecks are cheaper." and item["status"] == "needs_review"
    received = [entry["received_at"] for entry in queue]
    assert received == sorted(received)  # oldest first
    url = klass["gb-ben"]["status_url"]
    before = ta.get(url).json()["score"]
    review = ta.put(f"{url}/parts/q2.discussion/review", json={"points": 4, "comment": "Cost only; say more."})
    assert review.status_code == 200, review.text
    part = next(p for p in review.json()["parts"] if p["id"] == "q2.discussion")
    assert (part["points"], part["status"], part["reviewed"]) == (4, "partial", True)
    assert part["review"]["by"] == "tom" and part["review"]["comment"] == "Cost only; say more."
    assert review.json()["score"] == pytest.approx(before + 4)
    queue = ta.get(f"{ASSIGNMENT}/review", params={"part": "q2.discussion"}).json()["items"]
    assert "gb-ben" not in {entry["user"] for entry in queue}
    # an automatic part needs a reason to be overridden; out-of-range points are refused
    refused = ta.put(f"{url}/parts/q4.c_padding/review", json={"points": 10})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "reason"
    too_many = ta.put(f"{url}/parts/q4.c_padding/review", json={"points": 11, "reason": "x"})
    assert too_many.status_code == 422 and too_many.json()["error"]["field"] == "points"
    override = ta.put(f"{url}/parts/q4.c_padding/review", json={"points": 10, "reason": "explained per side"})
    assert override.status_code == 200
    # the student sees the reviewed points of a visible part now, and nothing of a hidden part before release
    seen = {p["id"]: p for p in ben.get(url).json()["parts"]}
    assert seen["q4.c_padding"]["points"] == 10 and seen["q4.c_padding"]["review"] is None
    assert seen["q2.discussion"]["points"] is None
    # a regrade adds a job and keeps every review
    regrade = instructor.post(f"{url}/regrade")
    assert regrade.status_code == 202
    wait_for_final(instructor, url)
    after = instructor.get(url).json()
    assert after["graded_by_job"] == 2
    parts = {p["id"]: p for p in after["parts"]}
    assert parts["q2.discussion"]["points"] == 4 and parts["q4.c_padding"]["points"] == 10
    assert parts["q4.c_padding"]["review"]["stale"] is False  # the automatic result did not change
    assert after["score"] == pytest.approx(before + 4 + 5)
    assert mine(gradebook(instructor)["items"])["gb-ben"]["parts"]["q2.discussion"]["reviewed"] is True


def test_filters_on_the_submission_list_and_a_students_history(service: RunningService, klass: dict[str, dict]) -> None:
    staff, ann, ben = service.user("alice", role="instructor"), service.user("gb-ann"), service.user("gb-ben")
    listed = staff.get("/api/v1/submissions", params={"user": "gb-ann", "assignment": "csce636-hw3"}).json()
    assert listed["total"] == 2 and {item["user"] for item in listed["items"]} == {"gb-ann"}
    graded = staff.get("/api/v1/submissions", params={"user": "gb-ann", "status": "failed"}).json()
    assert graded["total"] == 0
    unknown = staff.get("/api/v1/submissions", params={"usr": "gb-ann"})
    assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "usr"
    assert ben.get("/api/v1/submissions", params={"user": "gb-ann"}).status_code == 403
    history = staff.get("/api/v1/users/gb-ann/submissions").json()
    assert history["total"] == 2 and all(item["history"][0]["score"] is not None for item in history["items"])
    assert ann.get("/api/v1/users/gb-ann/submissions").status_code == 200
    assert ann.get("/api/v1/users/gb-ben/submissions").status_code == 403


def test_who_may_do_what(service: RunningService, klass: dict[str, dict]) -> None:
    student, ta, instructor = service.user("gb-cat"), service.user("tom", role="ta"), service.user("alice")
    other = klass["gb-ben"]["status_url"]
    staff_reads = [f"{ASSIGNMENT}/{path}" for path in ("gradebook", "gradebook.csv", "review", "stats")]
    for path in staff_reads:
        assert student.get(path).status_code == 403, path
        assert ta.get(path).status_code == 200, path
    own = klass["gb-cat"]["status_url"]
    for url in (other, own):  # a student may not review anyone's work (403 before any lookup)
        assert student.put(f"{url}/parts/q2.discussion/review", json={"points": 5}).status_code == 403
    assert student.get(other).status_code == 404  # nor see that another student's submission exists
    for client in (student, ta):
        assert client.get("/api/v1/users").status_code == 403
        assert client.post("/api/v1/users", json={"username": "gb-x"}).status_code == 403
        assert client.delete("/api/v1/users/gb-ann/tokens").status_code == 403
    assert instructor.get(f"{ASSIGNMENT}/nope/gradebook").status_code == 404


def test_tokens_are_created_listed_and_revoked_at_once(service: RunningService) -> None:
    instructor = service.user("alice", role="instructor")
    issued = instructor.post("/api/v1/users/gb-ann/tokens").json()["token"]
    client = httpx.Client(base_url=service.base_url, headers={"Authorization": f"Bearer {issued}"})
    assert client.get("/api/v1/me").json()["username"] == "gb-ann"
    listed = {row["username"]: row for row in instructor.get("/api/v1/users").json()}
    assert listed["gb-ann"]["active_tokens"] >= 2 and listed["gb-ann"]["role"] == "student"
    revoked = instructor.delete("/api/v1/users/gb-ann/tokens").json()
    assert revoked["revoked"] >= 2
    assert client.get("/api/v1/me").status_code == 401
    assert service.user("gb-ann").get("/api/v1/me").status_code == 401
    del service.tokens["gb-ann"]  # later tests get a fresh token
    assert "revoked 0 token(s)" in service.cli("users", "revoke", "gb-ann").stdout
    assert instructor.post("/api/v1/users", json={"username": "gb-ann"}).status_code == 422  # exists


def test_class_statistics_over_http(service: RunningService, klass: dict[str, dict]) -> None:
    stats = service.user("tom", role="ta").get(f"{ASSIGNMENT}/stats").json()
    assert stats["status_counts"]["graded"] >= 3 and stats["status_counts"]["missing"] >= 1
    assert stats["scores"]["count"] >= 3 and len(stats["scores"]["bins"]) == 10
    assert set(stats["parts"]) == {part.id for part in load_rubric(REPO_ROOT / "rubrics" / "csce636-hw3.yaml").parts}
    assert set(stats["accuracy"]) == {"v1", "v2"} and sum(row["count"] for row in stats["submissions_per_hour"]) >= 4


def test_staff_read_a_submissions_files_and_students_only_their_own(service: RunningService, tmp_path: Path) -> None:
    from tests.sandbox.submissions import write_submission

    code = write_submission(tmp_path / "hw3")
    owner, other, ta = service.user("gb-eve"), service.user("gb-cat"), service.user("tom", role="ta")
    sheet = (DATA / "wrong_sheet.yaml").read_bytes()
    files = [
        ("answers", ("answers.yaml", sheet)),
        ("v2", ("model-v2.safetensors", small_checkpoint())),
        *[("v2_code", (path.name, path.read_bytes())) for path in sorted(code.glob("*.py"))],
    ]
    accepted = owner.post(f"{ASSIGNMENT}/submissions", files=files)
    assert accepted.status_code == 202, accepted.text
    url = accepted.json()["status_url"]
    listing = ta.get(f"{url}/files/v2_code/contents").json()
    texts = {entry["name"]: entry["text"] for entry in listing["files"]}
    assert set(texts) == {"NetWork.py", "ImageUtils.py"}
    assert texts["ImageUtils.py"] == (code / "ImageUtils.py").read_text()
    answers = ta.get(f"{url}/files/answers/contents").json()["files"][0]
    assert answers["text"] == sheet.decode() and answers["truncated"] is False
    raw = ta.get(f"{url}/files/answers")
    assert raw.content == sheet and 'filename="answers.yaml"' in raw.headers["content-disposition"]
    assert owner.get(f"{url}/files/answers").content == sheet  # their own
    assert other.get(f"{url}/files/answers").status_code == 404  # another student's: as if it did not exist
    binary = ta.get(f"{url}/files/v2/contents")
    assert binary.status_code == 422 and "download it" in binary.json()["error"]["message"]
    assert ta.get(f"{url}/files/v2").content == small_checkpoint()
    assert ta.get(f"{url}/files/v1").status_code == 404
