"""Worker heartbeats: who counts as alive, per queue, and what readiness says about it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from grader.db.models import WorkerHeartbeat, utcnow
from grader.db.session import session_scope
from grader.errors import InfrastructureError
from grader.services import workers
from grader.services.health import readiness
from grader.settings import Settings
from tests.conftest import REPO_ROOT


class Broker:
    """A dispatcher whose broker answers or not, as the test says (readiness only asks it to connect)."""

    def __init__(self, reachable: bool) -> None:
        self.reachable = reachable

    def grade_job(self, job_id: str, *, resumed: bool = False) -> None:
        raise AssertionError("readiness sends nothing")

    def evaluate_checkpoint(self, evaluation_id: str, job_id: str, *, gpu: bool = True) -> None:
        raise AssertionError("readiness sends nothing")

    def run_regrade(self, regrade_id: str) -> None:
        raise AssertionError("readiness sends nothing")

    def check_broker(self, *, timeout_s: float) -> None:
        if not self.reachable:
            raise InfrastructureError("broker unreachable (ConnectionRefusedError: connection refused)")


def test_alive_per_queue_follows_heartbeats_and_clean_stops(settings: Settings) -> None:
    with session_scope(settings.resolved_database_url) as session:
        assert workers.alive_by_queue(session, settings=settings) == {"cpu": 0, "gpu": 0, "regrade": 0}
        workers.beat(session, name="cpu.1@a", host="a", pid=1, queues=["cpu"])
        workers.beat(session, name="gpu+cpu.2@b", host="b", pid=2, queues=["gpu", "cpu"])
        assert workers.alive_by_queue(session, settings=settings) == {"cpu": 2, "gpu": 1, "regrade": 0}

        # A killed worker stops beating: once its last beat is older than the limit it no longer counts.
        silent = session.get(WorkerHeartbeat, "cpu.1@a")
        silent.last_seen_at = utcnow() - timedelta(seconds=settings.resolved_worker_dead_after_s + 1)
        session.commit()
        assert workers.alive_by_queue(session, settings=settings) == {"cpu": 1, "gpu": 1, "regrade": 0}

        # A clean stop counts at once; the same name beating again (a restart) is alive again.
        workers.stopped(session, name="gpu+cpu.2@b")
        assert workers.alive_by_queue(session, settings=settings) == {"cpu": 0, "gpu": 0, "regrade": 0}
        workers.beat(session, name="gpu+cpu.2@b", host="b", pid=3, queues=["gpu"])
        assert [w.name for w in workers.live_workers(session, settings=settings)] == ["gpu+cpu.2@b"]

        # Rows of workers gone for a day are forgotten at the next beat.
        silent.last_seen_at = utcnow() - timedelta(days=2)
        session.commit()
        workers.beat(session, name="regrade.4@c", host="c", pid=4, queues=["regrade"])
        assert session.get(WorkerHeartbeat, "cpu.1@a") is None


@pytest.mark.parametrize(
    ("queues", "reachable", "problems"),
    [
        (["cpu", "gpu", "regrade"], True, []),
        (["cpu", "gpu", "regrade"], False, ["broker"]),
        (["cpu"], True, ["no live worker for the gpu queue", "no live worker for the regrade queue"]),
    ],
)
def test_readiness_names_what_is_missing(
    settings: Settings, queues: list[str], reachable: bool, problems: list[str]
) -> None:
    with session_scope(settings.resolved_database_url) as session:
        workers.beat(session, name="w.1@a", host="a", pid=1, queues=queues)
        answer = readiness(session, settings=settings, dispatcher=Broker(reachable))
    assert answer["problems"] == problems
    assert answer["ready"] is (not problems)
    assert answer["queue"]["workers_alive"]["cpu"] == 1
    assert [w["name"] for w in answer["workers"]] == ["w.1@a"]
    assert ("unreachable" in answer["broker"]) is (not reachable)


def test_a_waiting_submission_says_when_no_worker_serves_its_queue(settings: Settings) -> None:
    from grader.domain.status import Role
    from grader.rubric.model import RubricCatalog
    from grader.services.assignments import sync_assignments
    from grader.services.submissions import IncomingFile, create_submission
    from grader.services.users import create_user

    sheet = (REPO_ROOT / "tests" / "data" / "correct_sheet.yaml").read_bytes()
    with session_scope(settings.resolved_database_url) as session:
        sync_assignments(session, catalog=RubricCatalog(settings.rubrics_dir))
        user = create_user(session, username="waiting-wendy", role=Role.STUDENT)
        submission = create_submission(
            session,
            settings=settings,
            user=user,
            assignment_id="csce636-hw3",
            answers=IncomingFile("answers", "a.yaml", [sheet]),
        )
        session.commit()
        job = submission.jobs[-1]
        note = workers.stall_note(session, settings=settings, job=job)
        assert note is not None and "no worker is running grading" in note
        workers.beat(session, name="gpu.1@a", host="a", pid=1, queues=["gpu"])
        assert workers.stall_note(session, settings=settings, job=job) is not None  # gpu alone does not grade
        workers.beat(session, name="cpu.2@a", host="a", pid=2, queues=["cpu"])
        assert workers.stall_note(session, settings=settings, job=job) is None
