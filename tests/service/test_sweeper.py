"""No job stays stuck: work whose worker died with its message is resent by the next worker's sweep."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from grader.db.models import GradingJob, utcnow
from grader.db.session import session_scope
from tests.conftest import Backends
from tests.service.conftest import RunningService, extra_worker, wait_for_final

pytestmark = pytest.mark.service
SHEET = Path(__file__).resolve().parent.parent / "data" / "correct_sheet.yaml"


def test_a_job_left_running_by_a_dead_worker_is_resent_and_graded(service: RunningService, backends: Backends) -> None:
    hana, alice = service.user("hana"), service.user("alice", role="instructor")
    response = hana.post(
        "/api/v1/assignments/csce636-hw3/submissions", files={"answers": ("a.yaml", SHEET.read_bytes())}
    )
    status_url = response.json()["status_url"]
    first = wait_for_final(hana, status_url)

    # A regrade that a worker started an hour ago, then died with its message (what a SIGKILL leaves behind).
    long_ago = utcnow() - timedelta(hours=1)
    with session_scope(backends.database_url) as session:
        session.add(
            GradingJob(
                submission_id=first["id"],
                number=2,
                reason="regrade",
                status="running",
                detail="checking answers",
                queued_at=long_ago,
                started_at=long_ago,
                updated_at=long_ago,
                attempts=1,
                worker="lost-host",
            )
        )
    assert alice.get(status_url).json()["status"] == "running"

    env = {**backends.env, "GRADER_STUCK_AFTER_S": "60", "GRADER_SWEEP_INTERVAL_S": "1"}
    with extra_worker(env, queues="cpu"):
        body = wait_for_final(alice, status_url, timeout=120)
    assert body["status"] == "graded"
    resent = body["history"][1]
    assert (resent["number"], resent["status"], resent["attempts"]) == (2, "graded", 2)
    assert resent["worker"] != "lost-host"
    assert resent["score"] == first["score"]
