"""Live work is never run twice: a checkpoint evaluation that runs longer than many leases keeps its lease through the
worker's heartbeats, a second worker sweeping every second with `GRADER_STUCK_AFTER_S=1` never resends it, and a
duplicate of its message, delivered to that idle worker, does nothing. The result is stored once.

The student's code sleeps before building its network, so the evaluation runs for a while; the service runs with a
one-second heartbeat and a three-second lease (the session's service is paused meanwhile, since its worker would take
these tasks under its own settings).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import yaml
from sqlalchemy import select

from grader.db.models import CheckpointEvaluation, GradingJob, JobEvaluation, WorkerHeartbeat, as_utc
from grader.db.session import session_scope
from grader.settings import Settings
from tests.conftest import REPO_ROOT, Backends
from tests.sandbox.submissions import NETWORK, write_submission
from tests.sandbox.test_student_mode import save_weights
from tests.service.conftest import (
    GRADER,
    RunningService,
    session_service_paused,
    start_service,
    stop_service,
    wait_for_final,
)
from tests.service.test_student_code import CONFIG, SHEET

pytestmark = [pytest.mark.service, pytest.mark.slow, pytest.mark.usefixtures("sandbox")]

LEASE_S = 3
LEASES = {"GRADER_HEARTBEAT_INTERVAL_S": "1", "GRADER_LEASE_S": str(LEASE_S)}
SLEEP_S = 40
"""How long the student's code sleeps: long enough for a second worker to start and take the duplicate meanwhile."""
WAIT_S = 240
T = TypeVar("T")


@pytest.fixture(scope="module")
def leased(backends: Backends, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    with session_service_paused(backends):
        running = start_service(backends, tmp_path_factory.mktemp("leases-logs") / "service.log", LEASES)
        try:
            yield running
        finally:
            stop_service(running)


def _until(what: str, check: Callable[[], T | None], log: Callable[[], str], timeout: float = WAIT_S) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{what} did not happen within {timeout} s; the log ends:\n{log()[-4000:]}")


def _evaluation(database_url: str, submission_id: str) -> CheckpointEvaluation | None:
    """The submission's checkpoint evaluation in student-code mode (code checks of the same upload may run too)."""
    with session_scope(database_url) as session:
        return session.scalar(
            select(CheckpointEvaluation)
            .join(JobEvaluation, JobEvaluation.evaluation_id == CheckpointEvaluation.id)
            .join(GradingJob, GradingJob.id == JobEvaluation.job_id)
            .where(GradingJob.submission_id == submission_id, CheckpointEvaluation.mode == "student_code")
        )


def _live_worker(database_url: str, prefix: str) -> str | None:
    with session_scope(database_url) as session:
        return session.scalar(select(WorkerHeartbeat.name).where(WorkerHeartbeat.name.startswith(prefix)))


def _finished(log: str, evaluation_id: str) -> list[str]:
    """What each run of the evaluation task for this evaluation returned, from a Celery worker's log."""
    found = re.findall(r"Task grader\.evaluate_checkpoint\[[^\]]+\] succeeded in [^:]+: '([^']*)'([^\n]*)", log)
    return [returned for returned, context in found if f"evaluation_id={evaluation_id}" in context]


def test_an_evaluation_still_running_is_never_run_by_another_worker(
    leased: RunningService, backends: Backends, tmp_path: Path, cifar10_root: Path
) -> None:
    weights = save_weights(write_submission(tmp_path / "plain"), 1, tmp_path / "model-v1.ckpt", cifar10_root)
    slow = write_submission(tmp_path / "slow", network=f"import time\ntime.sleep({SLEEP_S})\n" + NETWORK)
    sheet = yaml.safe_load(SHEET.read_text())
    sheet["q1"] = {"v1_config": dict(CONFIG)}
    files = [
        ("answers", ("answers.yaml", yaml.safe_dump(sheet).encode())),
        ("v1", (weights.name, weights.read_bytes())),
        *[("v1_code", (path.name, path.read_bytes())) for path in sorted(slow.glob("*.py"))],
    ]
    client = leased.user("patient-pat")
    response = client.post("/api/v1/assignments/csce636-hw3/submissions", files=files)
    assert response.status_code == 202, response.text
    submission_id = response.json()["id"]

    def running() -> CheckpointEvaluation | None:
        row = _evaluation(backends.database_url, submission_id)
        return row if row is not None and row.status == "running" else None

    first = _until("the evaluation starting", running, leased.log)
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
        _until(
            "the second worker's first heartbeat",
            lambda: _live_worker(backends.database_url, f"cpu+gpu.{second.pid}@"),
            second_log,
        )
        # The broker hands the same message out again (a resend, or a redelivery): the second worker takes it.
        from worker.app import create_celery
        from worker.dispatch import CeleryDispatcher

        with session_scope(backends.database_url) as session:
            job_id = session.scalar(select(JobEvaluation.job_id).where(JobEvaluation.evaluation_id == first.id))
        assert job_id is not None
        broker = Settings(data_dir=backends.data_dir, broker_url=backends.broker_url)
        CeleryDispatcher(create_celery(broker)).evaluate_checkpoint(first.id, job_id)
        done = _until("the duplicate's delivery", lambda: _finished(second_log(), first.id), second_log)
        # It found the evaluation still running under the first worker's lease, and did nothing.
        assert done == ["held by another worker"], second_log()[-3000:]
        during = _evaluation(backends.database_url, submission_id)
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
    finished = _evaluation(backends.database_url, submission_id)
    assert finished is not None and (finished.status, finished.attempts) == ("evaluated", 1)
    assert finished.lease_owner is None  # let go when it ended
    # It ran once, in the first worker; the second worker's sweeps never resent it: it saw only the duplicate.
    assert _finished(leased.log(), first.id) == ["done"]
    assert _finished(second_log(), first.id) == ["held by another worker"]
    assert body["attempts"] == 1
