"""Faults a deployment meets, each ending with every accepted submission graded exactly once:

- a worker killed with SIGKILL, with everything it started, in the middle of an evaluation;
- a worker sent SIGTERM (what `docker stop` sends) in the middle of an evaluation;
- Redis restarted, losing every message it held, with one job running and others queued;
- the API killed after it stored a submission and before the submission reached the queue.

(The broker down when a submission arrives: test_broker_outage.) Each test runs its own API and workers on the session's
database, with quick heartbeats, short leases and a sweep every second; the session's service is paused meanwhile,
since its workers would take these tasks under their own settings.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from grader.db.models import CheckpointEvaluation, GradingJob, Score, Submission, User
from grader.db.session import session_scope
from tests.conftest import Backends
from tests.service.conftest import (
    CORRECT_SHEET,
    RunningService,
    _free_port,
    api_process,
    checkpoint_evaluation,
    evaluation_runs,
    extra_worker,
    session_service_paused,
    slow_student_submission,
    until,
    wait_for_final,
)

pytestmark = [pytest.mark.service, pytest.mark.slow]

URL = "/api/v1/assignments/csce636-hw3/submissions"
QUICK_RECOVERY = {
    "GRADER_HEARTBEAT_INTERVAL_S": "1",
    "GRADER_LEASE_S": "3",
    "GRADER_SWEEP_INTERVAL_S": "1",
    "GRADER_REQUEUE_AFTER_S": "1",
    "GRADER_STUCK_AFTER_S": "6",
}
"""A worker's claim lapses 3 s after its last heartbeat; silent unclaimed work is resent after 6 s."""
SLEEP_S = 12
"""How long the student's code sleeps before building its network: the window in which each fault strikes."""


@pytest.fixture(scope="module")
def quiet(migrated: Backends) -> Iterator[None]:
    with session_service_paused(migrated):
        yield


@pytest.fixture
def run_folders() -> Iterator[Path]:
    """The workers' temp folder, where their sandboxed runs make their folders: the test's own, so that what a killed
    run leaves behind stays there. Open to all like /tmp, since the sandbox's user must reach its folders."""
    folder = Path(tempfile.mkdtemp(prefix="grader-faults-"))
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _env(backends: Backends, run_folders: Path | None = None, **extra: str) -> dict[str, str]:
    """The backends' settings with quick recovery; with `run_folders`, the workers' temp folder."""
    return {**backends.env, **QUICK_RECOVERY, **({"TMPDIR": str(run_folders)} if run_folders else {}), **extra}


def _graded_once(database_url: str, submission_id: str) -> None:
    """One grading job, graded, holding the one score stored for the submission."""
    with session_scope(database_url) as session:
        statuses = session.scalars(select(GradingJob.status).where(GradingJob.submission_id == submission_id)).all()
        scores = session.scalar(
            select(func.count()).select_from(Score).join(GradingJob).where(GradingJob.submission_id == submission_id)
        )
    assert list(statuses) == ["graded"], statuses
    assert scores == 1


def _running_evaluation(database_url: str, submission_id: str):
    row = checkpoint_evaluation(database_url, submission_id)
    return row if row is not None and row.status == "running" and row.lease_owner else None


def _check_evaluated(body: dict) -> None:
    assert body["status"] == "graded", body
    accuracy = {part["id"]: part for part in body["parts"]}["q1.v1_accuracy"]
    assert accuracy["evidence"]["mode"] == "student_code" and accuracy["evidence"]["total"] == 10_000, accuracy


def _submit_slow(
    api: RunningService, username: str, files: list, log: Path
) -> tuple[httpx.Client, dict, CheckpointEvaluation]:
    """The student's submission, accepted, and its evaluation's row once a worker has claimed it (it is running)."""
    client = api.user(username)
    response = client.post(URL, files=files)
    assert response.status_code == 202, response.text
    accepted = response.json()
    claimed = until(
        "the evaluation starting",
        lambda: _running_evaluation(api.env["GRADER_DATABASE_URL"], accepted["id"]),
        log.read_text,
    )
    return client, accepted, claimed


@pytest.mark.usefixtures("quiet", "sandbox")
def test_a_worker_killed_mid_evaluation(
    backends: Backends, tmp_path: Path, run_folders: Path, cifar10_root: Path
) -> None:
    env = _env(backends, run_folders)
    files = slow_student_submission(tmp_path, sleep_s=SLEEP_S, cifar10_root=cifar10_root)
    first_log, second_log = tmp_path / "first-worker.log", tmp_path / "second-worker.log"
    with api_process(env, tmp_path / "api.log") as api, extra_worker(env, log_path=first_log) as first:
        client, accepted, claimed = _submit_slow(api, "fault-kai", files, first_log)
        submission_id = accepted["id"]
        assert claimed.lease_owner.split("@")[0].endswith(f".{first.pid}")
        os.killpg(first.pid, signal.SIGKILL)  # the worker, its pool and the sandbox: what a lost machine does
        first.wait(timeout=30)

        with extra_worker(env, log_path=second_log):
            body = wait_for_final(client, accepted["status_url"], timeout=300)

    _check_evaluated(body)
    _graded_once(backends.database_url, submission_id)
    evaluation = checkpoint_evaluation(backends.database_url, submission_id)
    # Claimed twice: by the killed worker, then once more (and only once) after its lease lapsed.
    assert evaluation is not None and (evaluation.status, evaluation.attempts) == ("evaluated", 2)


@pytest.mark.usefixtures("quiet", "sandbox")
def test_a_worker_stopped_mid_evaluation_finishes_it_first(
    backends: Backends, tmp_path: Path, run_folders: Path, cifar10_root: Path
) -> None:
    env = _env(backends, run_folders)
    files = slow_student_submission(tmp_path, sleep_s=SLEEP_S, cifar10_root=cifar10_root)
    first_log = tmp_path / "first-worker.log"
    with api_process(env, tmp_path / "api.log") as api, extra_worker(env, log_path=first_log) as first:
        client, accepted, _ = _submit_slow(api, "fault-sam", files, first_log)
        submission_id = accepted["id"]
        first.send_signal(signal.SIGTERM)  # `docker stop`: Celery's warm shutdown
        assert first.wait(timeout=240) == 0, first_log.read_text()[-3000:]
        evaluation = checkpoint_evaluation(backends.database_url, submission_id)
        # It finished what it had started before it left; the grading that follows is another worker's.
        assert evaluation is not None and (evaluation.status, evaluation.attempts) == ("evaluated", 1)
        assert evaluation_runs(first_log.read_text(), evaluation.id) == ["done"]

        with extra_worker(env, log_path=tmp_path / "second-worker.log") as second:
            body = wait_for_final(client, accepted["status_url"], timeout=120)

    _check_evaluated(body)
    _graded_once(backends.database_url, submission_id)
    evaluation = checkpoint_evaluation(backends.database_url, submission_id)
    assert evaluation is not None and evaluation.attempts == 1  # never run again
    assert second.returncode is not None


def _redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    """A Redis of the test's own that keeps nothing on disk: restarting it loses every message it held."""
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=folder,
        stdout=(folder / f"redis-{port}.log").open("a"),
        stderr=subprocess.STDOUT,
    )
    until("Redis answering", lambda: _redis_answers(port), lambda: "", timeout=30)
    return server


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.mark.usefixtures("quiet", "sandbox")
def test_redis_restarted_with_jobs_queued_and_running(
    backends: Backends, tmp_path: Path, run_folders: Path, cifar10_root: Path
) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    redis = _redis(port, tmp_path)
    env = _env(backends, run_folders, GRADER_BROKER_URL=f"redis://127.0.0.1:{port}/0")
    files = slow_student_submission(tmp_path, sleep_s=SLEEP_S, cifar10_root=cifar10_root)
    worker_log = tmp_path / "worker.log"
    try:
        with api_process(env, tmp_path / "api.log") as api, extra_worker(env, log_path=worker_log):
            slow_client, slow, _ = _submit_slow(api, "fault-rio", files, worker_log)
            # Answers-only submissions queue behind it: the one worker process is busy with the evaluation.
            others = {}
            for name in ("fault-ada", "fault-bo", "fault-cy"):
                client = api.user(name)
                queued = client.post(URL, files={"answers": ("a.yaml", CORRECT_SHEET.read_bytes())})
                assert queued.status_code == 202 and queued.json()["status"] == "queued", queued.text
                others[name] = (client, queued.json())

            redis.send_signal(signal.SIGKILL)  # gone, with every queued and unacknowledged message
            redis.wait(timeout=30)
            redis = _redis(port, tmp_path)

            bodies = {
                name: wait_for_final(client, sent["status_url"], timeout=300) for name, (client, sent) in others.items()
            }
            slow_body = wait_for_final(slow_client, slow["status_url"], timeout=300)
    finally:
        redis.kill()
        redis.wait(timeout=30)

    _check_evaluated(slow_body)
    _graded_once(backends.database_url, slow["id"])
    for name, body in bodies.items():
        assert body["status"] == "graded", (name, body)
        _graded_once(backends.database_url, body["id"])
    evaluation = checkpoint_evaluation(backends.database_url, slow["id"])
    # The run in progress when Redis went was kept: never run again (resent copies found it done).
    assert evaluation is not None and (evaluation.status, evaluation.attempts) == ("evaluated", 1)


@contextmanager
def _hanging_broker() -> Iterator[int]:
    """A port that takes connections and never answers (a broker hung, or a network that drops replies)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)  # the kernel completes each connection; nothing ever reads or writes on it
        yield int(listener.getsockname()[1])


def _submissions_of(database_url: str, username: str) -> list[str]:
    with session_scope(database_url) as session:
        return list(
            session.scalars(
                select(Submission.id).join(User, User.id == Submission.user_id).where(User.username == username)
            )
        )


@pytest.mark.usefixtures("quiet")
def test_the_api_killed_after_storing_a_submission_before_queueing_it(backends: Backends, tmp_path: Path) -> None:
    files = {"answers": ("a.yaml", CORRECT_SHEET.read_bytes())}
    key = {"Idempotency-Key": "fault-ivo-first-try"}
    answer: dict[str, object] = {}
    with _hanging_broker() as port:
        env = _env(backends, GRADER_BROKER_URL=f"redis://127.0.0.1:{port}/0")
        with api_process(env, tmp_path / "api.log") as api:
            client = api.user("fault-ivo")

            def send() -> None:
                try:
                    answer["response"] = client.post(URL, files=files, headers=key)
                except httpx.HTTPError as exc:
                    answer["error"] = exc

            sender = threading.Thread(target=send)
            sender.start()
            stored = until(
                "the submission stored", lambda: _submissions_of(backends.database_url, "fault-ivo"), api.log
            )
            assert "response" not in answer  # committed, and still handing the job to the broker
            os.killpg(api.process.pid, signal.SIGKILL)
            api.process.wait(timeout=30)
            sender.join(timeout=60)
    assert "error" in answer and "response" not in answer  # the student got no answer at all

    # The student's client retries with the same key on an API that works; a worker's sweep queues the stored job.
    env = _env(backends)
    with api_process(env, tmp_path / "api-again.log") as api, extra_worker(env, log_path=tmp_path / "worker.log"):
        client = api.user("fault-ivo")
        retried = client.post(URL, files=files, headers=key)
        assert retried.status_code == 202, retried.text
        assert retried.json()["id"] == stored[0] and retried.headers.get("Idempotent-Replayed") == "true"
        body = wait_for_final(client, retried.json()["status_url"], timeout=120)
    assert body["status"] == "graded", body
    assert _submissions_of(backends.database_url, "fault-ivo") == stored
    _graded_once(backends.database_url, stored[0])
