"""Fair share with a real worker: one student's burst of submissions is all stored, and another student's next
submission waits behind at most about one of theirs, not behind the whole burst."""

from __future__ import annotations

import pytest

from tests.conftest import REPO_ROOT
from tests.service.conftest import RunningService, wait_for_final

pytestmark = pytest.mark.service

SHEET = (REPO_ROOT / "tests" / "data" / "correct_sheet.yaml").read_bytes()
BURST = 12


def _submit(client: object) -> dict:
    response = client.post(  # type: ignore[attr-defined]
        "/api/v1/assignments/csce636-hw3/submissions", files={"answers": ("answers.yaml", SHEET)}
    )
    assert response.status_code == 202, response.text
    return response.json()


def test_a_burst_is_all_accepted_and_does_not_hold_up_another_student(service: RunningService) -> None:
    amy, ben = service.user("fair-amy"), service.user("fair-ben")
    burst = [_submit(amy) for _ in range(BURST)]
    held = amy.get(burst[-1]["status_url"]).json()
    assert held["status"] == "received" and "earlier submission" in held["detail"]

    mine = _submit(ben)
    ben_done = wait_for_final(ben, mine["status_url"], timeout=180)
    assert ben_done["status"] == "graded", ben_done["detail"]
    ben_started = ben_done["phases"]["running"]

    finished = [wait_for_final(amy, accepted["status_url"], timeout=300) for accepted in burst]
    assert [b["status"] for b in finished] == ["graded"] * BURST, [b["detail"] for b in finished]  # nothing lost
    # Amy's jobs keep running while her burst is sent, so count only those that had not started when Ben submitted:
    # without fair share every one of them ran first; with it, at most the one already queued at that moment.
    ben_received = ben_done["phases"]["received"]
    overtook = [body for body in finished if ben_received < body["phases"]["running"] < ben_started]
    assert len(overtook) <= 1, ([body["phases"]["running"] for body in finished], ben_received, ben_started)
    # and Amy's own submissions ran in the order she sent them
    assert [body["phases"]["running"] for body in finished] == sorted(body["phases"]["running"] for body in finished)
