"""Live work is never run twice: a checkpoint evaluation that runs longer than many leases keeps its lease through the
worker's heartbeats, a second worker sweeping every second with `GRADER_STUCK_AFTER_S=1` never resends it, and a
duplicate of its message, delivered to that idle worker, does nothing. The result is stored once.

The student's code sleeps before building its network, so the evaluation runs for a while; the service runs with a
one-second heartbeat and a three-second lease (the session's service is paused meanwhile, since its worker would take
these tasks under its own settings).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from grader.db.models import CheckpointEvaluation, JobEvaluation, WorkerHeartbeat, as_utc
from grader.db.session import session_scope
from grader.queues import CeleryDispatcher, create_celery
from grader.settings import Settings
from tests.conftest import REPO_ROOT, Backends
from tests.service.conftest import (
    GRADER,
    RunningService,
    checkpoint_evaluation,
    evaluation_runs,
    session_service_paused,
    slow_student_submission,
    start_service,
    stop_service,
    until,
    wait_for_final,
)

pytestmark = [pytest.mark.service, pytest.mark.slow, pytest.mark.usefixtures("sandbox")]

LEASE_S = 3
LEASES = {"GRADER_HEARTBEAT_INTERVAL_S": "1", "GRADER_LEASE_S": str(LEASE_S)}
SLEEP_S = 40
"""How long the student's code sleeps: long enough for a second worker to start and take the duplicate meanwhile."""
WAIT_S = 240


@pytest.fixture(scope="module")
def leased(backends: Backends, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    with session_service_paused(backends):
        running = start_service(backends, tmp_path_factory.mktemp("leases-logs") / "service.log", LEASES)
        try:
            yield running
        finally:
            stop_service(running)


def _live_worker(database_url: str, prefix: str) -> str | None:
    with session_scope(database_url) as session:
        return session.scalar(select(WorkerHeartbeat.name).where(WorkerHeartbeat.name.startswith(prefix)))


def test_an_evaluation_still_running_is_never_run_by_another_worker(
    leased: RunningService, backends: Backends, tmp_path: Path, cifar10_root: Path
) -> None:
    files = slow_student_submission(tmp_path, sleep_s=SLEEP_S, cifar10_root=cifar10_root)
    client = leased.user("patient-pat")
    response = client.post("/api/v1/assignments/csce636-hw3/submissions", files=files)
    assert response.status_code == 202, response.text
    submission_id = response.json()["id"]

    def running() -> CheckpointEvaluation | None:
        row = checkpoint_evaluation(backends.database_url, submission_id)
        return row if row is not None and row.status == "running" else None

    first = until("the evaluation starting", running, leased.log)
    assert first.lease_owner is not None and first.lease_owner.startswith("gpu.")
    assert _live_worker(backends.database_url, first.lease_owner) == first.lease_owner  # the worker's node name

    # A second worker on the same queues that resends anything silent for a second. Two processes, so that one is free
    # for the duplicate below even when the other takes the upload's code checks, which wait in the same queue.
    log_path = tmp_path / "second-worker.log"
    env = {**leased.env, **LEASES, "GRADER_STUCK_AFTER_S": "1", "GRADER_SWEEP_INTERVAL_S": "1"}
    with log_path.open("w") as log_file:
        second = subprocess.Popen(
            [GRADER, "worker", "--queues", "cpu,gpu", "--concurrency", "2"],
            env=env,
            cwd=REPO_ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    second_log = log_path.read_text
    try:
        until(
            "the second worker's first heartbeat",
            lambda: _live_worker(backends.database_url, f"cpu+gpu.{second.pid}@"),
            second_log,
        )
        # The broker hands the same message out again (a resend, or a redelivery): the second worker takes it.
        with session_scope(backends.database_url) as session:
            job_id = session.scalar(select(JobEvaluation.job_id).where(JobEvaluation.evaluation_id == first.id))
        assert job_id is not None
        broker = Settings(data_dir=backends.data_dir, broker_url=backends.broker_url)
        CeleryDispatcher(create_celery(broker)).evaluate_checkpoint(first.id, job_id)
        done = until("the duplicate's delivery", lambda: evaluation_runs(second_log(), first.id), second_log)
        # It found the evaluation still running under the first worker's lease, and did nothing.
        assert done == ["held by another worker"], second_log()[-3000:]
        during = checkpoint_evaluation(backends.database_url, submission_id)
        assert during is not None and during.status == "running", "the slow evaluation ended before the duplicate"
        assert during.lease_owner == first.lease_owner and during.attempts == 1
        # Its lease outlived the first one by far: the first worker's heartbeats renewed it.
        assert during.lease_expires_at is not None and during.lease_claimed_at is not None
        assert (as_utc(during.lease_expires_at) - as_utc(during.lease_claimed_at)).total_seconds() > LEASE_S

        body = wait_for_final(client, response.json()["status_url"], timeout=WAIT_S)
    finally:
        second.terminate()
        second.wait(timeout=60)

    assert body["status"] == "graded", body
    accuracy = {part["id"]: part for part in body["parts"]}["q1.v1_accuracy"]
    assert accuracy["evidence"]["mode"] == "student_code" and accuracy["evidence"]["total"] == 10_000, accuracy
    finished = checkpoint_evaluation(backends.database_url, submission_id)
    assert finished is not None and (finished.status, finished.attempts) == ("evaluated", 1)
    assert finished.lease_owner is None  # let go when it ended
    # It ran once, in the first worker; the second worker's sweeps never resent it: it saw only the duplicate.
    assert evaluation_runs(leased.log(), first.id) == ["done"]
    assert evaluation_runs(second_log(), first.id) == ["held by another worker"]
    assert body["attempts"] == 1
