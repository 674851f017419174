"""Batch regrades over HTTP with the real worker (on its `regrade` queue): a dry run writes nothing, an
applied run adds a job per submission and keeps reviews, cancelling works, only instructors start them."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import Backends
from tests.service.conftest import RunningService, wait_for_final

pytestmark = pytest.mark.service
DATA = Path(__file__).resolve().parent.parent / "data"
ASSIGNMENT = "/api/v1/assignments/csce636-hw3"


def submit(client: httpx.Client, sheet: str) -> dict:
    response = client.post(f"{ASSIGNMENT}/submissions", files={"answers": (sheet, (DATA / sheet).read_bytes())})
    assert response.status_code == 202, response.text
    return wait_for_final(client, response.json()["status_url"])


def wait_for_regrade(client: httpx.Client, url: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = client.get(url).json()
        if body["status"] in ("finished", "cancelled", "failed"):
            return body
        time.sleep(0.3)
    raise AssertionError(f"regrade did not finish in {timeout} s: {body}")


def test_dry_run_then_apply_keeps_history_and_reviews(service: RunningService) -> None:
    instructor, ta = service.user("alice", role="instructor"), service.user("tom", role="ta")
    first = submit(service.user("rg-a"), "wrong_sheet.yaml")
    submit(service.user("rg-b"), "correct_sheet.yaml")
    ta.put(f"{first['status_url']}/parts/q2.discussion/review", json={"points": 2, "comment": "thin"})
    scope = {"users": ["rg-a", "rg-b"]}

    dry = instructor.post(f"{ASSIGNMENT}/regrades", json={"scope": scope, "dry_run": True})
    assert dry.status_code == 202 and dry.json()["total"] == 2
    report = wait_for_regrade(ta, dry.json()["status_url"])
    assert report["status"] == "finished" and (report["done"], report["failed"]) == (2, 0)
    assert report["started_by"] == "alice" and report["rubric_version"]["after"] == "2026.12.0"
    assert report["summary"] == {"up": 0, "down": 0, "unchanged": 2}  # the rubric did not change
    items = {item["user"]: item for item in report["items"]}
    staff_view = instructor.get(first["status_url"]).json()
    assert items["rg-a"]["old_score"] == items["rg-a"]["new_score"] == staff_view["score"]
    assert len(staff_view["history"]) == 1  # nothing written

    applied = instructor.post(f"{ASSIGNMENT}/regrades", json={"scope": scope, "dry_run": False})
    report = wait_for_regrade(ta, applied.json()["status_url"])
    assert report["status"] == "finished" and report["done"] == 2
    after = instructor.get(first["status_url"]).json()
    assert [job["reason"] for job in after["history"]] == ["submitted", "batch regrade"]
    assert after["graded_by_job"] == 2 and after["score"] == staff_view["score"]
    review = next(part for part in after["parts"] if part["id"] == "q2.discussion")
    assert review["points"] == 2 and review["reviewed"] is True
    listed = instructor.get(f"{ASSIGNMENT}/regrades").json()["items"]
    assert {applied.json()["id"], dry.json()["id"]} <= {row["id"] for row in listed}


def test_only_instructors_start_or_cancel_and_bad_scopes_are_refused(service: RunningService) -> None:
    student, ta, instructor = service.user("rg-a"), service.user("tom", role="ta"), service.user("alice")
    for client in (student, ta):
        assert client.post(f"{ASSIGNMENT}/regrades", json={"scope": "all"}).status_code == 403
    assert student.get(f"{ASSIGNMENT}/regrades").status_code == 403
    bad = instructor.post(f"{ASSIGNMENT}/regrades", json={"scope": {"parts": ["q9.none"]}})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "scope"
    extra = instructor.post(f"{ASSIGNMENT}/regrades", json={"scope": "all", "dryrun": False})
    assert extra.status_code == 422
    assert instructor.get("/api/v1/regrades/nope").status_code == 404


def test_a_cancelled_regrade_ends_cancelled_with_whole_items(service: RunningService) -> None:
    instructor = service.user("alice", role="instructor")
    submit(service.user("rg-c"), "wrong_sheet.yaml")
    started = instructor.post(f"{ASSIGNMENT}/regrades", json={"scope": {"users": ["rg-c"]}, "dry_run": False})
    cancelled = instructor.post(f"{started.json()['status_url']}/cancel")
    assert cancelled.status_code == 200
    assert service.user("tom", role="ta").post(f"{started.json()['status_url']}/cancel").status_code == 403
    report = wait_for_regrade(instructor, started.json()["status_url"])
    # cancelled before it ran, or finished first: either way every item is whole
    assert report["status"] in ("cancelled", "finished")
    for item in report["items"]:
        assert (item["status"], item["job_id"] is None) in (("pending", True), ("done", False))


BULK = 600


def test_a_fresh_submission_is_graded_while_a_big_regrade_runs(service: RunningService, backends: Backends) -> None:
    """600 graded submissions (made here through the services, on the service's own database and storage), an
    applied regrade of all of them (six chunks on the regrade queue), and a new submission sent right after:
    it is graded before the regrade ends, not behind it."""
    from grader.db.session import session_scope
    from grader.domain.status import Role
    from grader.rubric.model import RubricCatalog
    from grader.services.assignments import sync_assignments
    from grader.services.jobs import run_job
    from grader.services.submissions import IncomingFile, create_submission
    from grader.services.users import create_user
    from grader.settings import Settings

    settings = Settings(data_dir=backends.data_dir, database_url=backends.database_url)
    sheet = (DATA / "wrong_sheet.yaml").read_bytes()
    names = [f"bulk{index:04d}" for index in range(BULK)]
    with session_scope(backends.database_url) as session:
        sync_assignments(session, catalog=RubricCatalog(settings.rubrics_dir))
        for name in names:
            user = create_user(session, username=name, role=Role.STUDENT)
            answers = IncomingFile("answers", "answers.yaml", [sheet])
            made = create_submission(
                session, settings=settings, user=user, assignment_id="csce636-hw3", answers=answers
            )
            session.commit()
            run_job(session, job_id=made.jobs[0].id, settings=settings, dispatcher=_NoQueue(), max_attempts=3)

    instructor = service.user("alice", role="instructor")
    started = instructor.post(f"{ASSIGNMENT}/regrades", json={"scope": {"users": names}, "dry_run": False})
    assert started.status_code == 202 and started.json()["total"] == BULK
    fresh = submit(service.user("rg-fresh"), "correct_sheet.yaml")
    progress = instructor.get(started.json()["status_url"], params={"items": "false"}).json()
    report = wait_for_regrade(instructor, started.json()["status_url"], timeout=300)
    assert report["status"] == "finished" and report["done"] == BULK
    graded_at = datetime.fromisoformat(fresh["phases"]["graded"])
    assert fresh["status"] == "graded" and graded_at < datetime.fromisoformat(report["finished_at"])
    assert progress["done"] < BULK, "the fresh submission waited for the whole regrade"


class _NoQueue:
    def grade_job(self, job_id: str, *, resumed: bool = False) -> None:
        raise AssertionError("answers-only sheets need no queue")

    def evaluate_checkpoint(self, evaluation_id: str, job_id: str, *, gpu: bool = True) -> None:
        raise AssertionError("answers-only sheets need no evaluation")

    def run_regrade(self, regrade_id: str) -> None:
        raise AssertionError("not used here")
