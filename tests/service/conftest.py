"""A running service for tests: `grader run` (what `make run` starts) in a subprocess, on the backends under test."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from sqlalchemy import select

from grader.db.models import CheckpointEvaluation, GradingJob, JobEvaluation
from grader.db.session import session_scope
from tests.conftest import REPO_ROOT, Backends

START_TIMEOUT_S = 90
GRADER = str(Path(sys.executable).with_name("grader"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningService:
    process: subprocess.Popen[str]
    base_url: str
    env: dict[str, str]
    log_path: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [GRADER, *args], env=self.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
        )
        if check and result.returncode != 0:
            raise AssertionError(f"grader {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def user(self, name: str, role: str = "student") -> httpx.Client:
        """An HTTP client authenticated as a new user created through the CLI (token from its last line)."""
        if name not in self.tokens:
            created = self.cli("users", "create", "--role", role, name, check=False)
            if created.returncode != 0 and "already exists" in created.stderr:
                # Made first by another service on the same database (a module's own, with other settings).
                created = self.cli("users", "token", name)
            elif created.returncode != 0:
                raise AssertionError(f"grader users create {name} failed ({created.returncode}):\n{created.stderr}")
            self.tokens[name] = created.stdout.strip().splitlines()[-1]
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {self.tokens[name]}"}, timeout=60
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_until_healthy(service: RunningService) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"grader run exited with {service.process.returncode}:\n{service.log()}")
        try:
            if httpx.get(f"{service.base_url}/api/v1/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"grader run did not become healthy in {START_TIMEOUT_S} s:\n{service.log()}")


def start_service(backends: Backends, log_path: Path, extra_env: Mapping[str, str] | None = None) -> RunningService:
    """`grader run` on `backends`; `extra_env` adds or overrides variables (e.g. other GRADER_SANDBOX_* limits)."""
    port = _free_port()
    env = {**backends.env, **(extra_env or {})}
    log_file = log_path.open("w")
    process = subprocess.Popen(
        [GRADER, "run", "--port", str(port)],
        env=env,
        cwd=REPO_ROOT,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    service = RunningService(process=process, base_url=f"http://127.0.0.1:{port}", env=env, log_path=log_path)
    wait_until_healthy(service)
    return service


def stop_service(service: RunningService, timeout: float = 60) -> int:
    """Ctrl-C, as a user would press it: SIGINT to the whole process group."""
    if service.process.poll() is None:
        os.killpg(service.process.pid, signal.SIGINT)
    try:
        return service.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(service.process.pid, signal.SIGKILL)
        raise


_SESSION_SERVICES: list[RunningService] = []
"""The `service` fixture's service while it runs, so that a module needing other settings can pause it."""


@pytest.fixture(scope="session")
def service(backends: Backends, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    running = start_service(backends, tmp_path_factory.mktemp("logs") / "service.log")
    _SESSION_SERVICES.append(running)
    yield running
    _SESSION_SERVICES.remove(running)
    stop_service(running)


@pytest.fixture(scope="session")
def migrated(backends: Backends) -> Backends:
    """The backends' database at the newest schema, for a test that starts its own processes (`grader run` migrates
    by itself; an API or worker process alone does not)."""
    upgraded = subprocess.run(
        [GRADER, "db", "upgrade"], env=backends.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert upgraded.returncode == 0, upgraded.stderr
    return backends


@contextmanager
def session_service_paused(backends: Backends) -> Iterator[None]:
    """Stop the session's service, if it runs, and start it again afterwards (same object, new process and port).

    A service started with other settings on the same backends needs this: the session's worker consumes the
    same queues and would take its tasks, evaluating them under the session's settings instead.
    """
    paused = list(_SESSION_SERVICES)
    for running in paused:
        stop_service(running)
    try:
        yield
    finally:
        for running in paused:
            restarted = start_service(backends, running.log_path.with_name(f"restarted-{running.log_path.name}"))
            running.process, running.base_url, running.log_path = (
                restarted.process,
                restarted.base_url,
                restarted.log_path,
            )


@contextmanager
def extra_worker(
    env: Mapping[str, str], queues: str = "cpu,gpu", log_path: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """One more `grader worker` process on the same backends, in its own process group (so that a test can kill it
    with everything it started), stopped (warm shutdown) afterwards if it still runs."""
    log_file = log_path.open("w") if log_path is not None else subprocess.DEVNULL
    worker = subprocess.Popen(
        [GRADER, "worker", "--queues", queues],
        env=dict(env),
        cwd=REPO_ROOT,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield worker
    finally:
        if worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=60)


@contextmanager
def api_process(env: Mapping[str, str], log_path: Path) -> Iterator[RunningService]:
    """One more API process (no worker beside it) with `env`, e.g. other settings or an unreachable broker; stopped
    afterwards if it still runs. Users made through its `user()` live in `env`'s database, as any other's."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "grader.api.app:create_app", "--port", str(port)],
        env=dict(env),
        cwd=REPO_ROOT,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    api = RunningService(process=process, base_url=f"http://127.0.0.1:{port}", env=dict(env), log_path=log_path)
    try:
        wait_until_healthy(api)
        yield api
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


T = TypeVar("T")


def until(what: str, check: Callable[[], T | None], log: Callable[[], str], timeout: float = 240) -> T:
    """`check()`'s first true answer, polled; after `timeout` an error ending with the end of `log()`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{what} did not happen within {timeout} s; the log ends:\n{log()[-4000:]}")


def wait_for_final(client: httpx.Client, status_url: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = client.get(status_url).json()
        if body.get("status") in ("graded", "failed"):
            return body
        time.sleep(0.5)
    raise AssertionError(f"submission did not finish in {timeout} s; last state: {body}")


def small_checkpoint(size: int | None = None) -> bytes:
    """A real (small, untrained) CIFAR ResNet as .safetensors, which the intake pre-check accepts; with `size`, its
    header padded with spaces (the format allows it) to exactly that many bytes. The same bytes on every call."""
    import struct

    import torch
    from safetensors.torch import save

    from tests.evaluation.nets import StarterResNet

    torch.manual_seed(0)  # the same bytes every time
    data = save({name: tensor.contiguous() for name, tensor in StarterResNet(1, 3).state_dict().items()})
    if size is None:
        return data
    (header_size,) = struct.unpack("<Q", data[:8])
    padding = size - len(data)
    assert padding >= 0, f"the network's file ({len(data)} bytes) is already over {size}"
    header = data[8 : 8 + header_size] + b" " * padding
    return struct.pack("<Q", len(header)) + header + data[8 + header_size :]


def checkpoint_evaluation(database_url: str, submission_id: str) -> CheckpointEvaluation | None:
    """The submission's checkpoint evaluation in student-code mode (code checks of the same upload may run too)."""
    with session_scope(database_url) as session:
        return session.scalar(
            select(CheckpointEvaluation)
            .join(JobEvaluation, JobEvaluation.evaluation_id == CheckpointEvaluation.id)
            .join(GradingJob, GradingJob.id == JobEvaluation.job_id)
            .where(GradingJob.submission_id == submission_id, CheckpointEvaluation.mode == "student_code")
        )


def evaluation_runs(log: str, evaluation_id: str) -> list[str]:
    """What each run of the evaluation task for this evaluation returned, from a Celery worker's log."""
    found = re.findall(r"Task grader\.evaluate_checkpoint\[[^\]]+\] succeeded in [^:]+: '([^']*)'([^\n]*)", log)
    return [returned for returned, context in found if f"evaluation_id={evaluation_id}" in context]


CORRECT_SHEET = REPO_ROOT / "tests" / "data" / "correct_sheet.yaml"
STUDENT_CONFIG = {"resnet_size": 1, "first_num_filters": 8}
"""A tiny ResNet (the students' `NetWork.ResNet(version, 1, 10, 8)`) that evaluates in seconds."""


def slow_student_submission(folder: Path, *, sleep_s: float, cifar10_root: Path) -> list[tuple[str, tuple[str, bytes]]]:
    """The multipart files of a new submission in student-code mode (the correct sheet, version 1 weights and the
    student's code) whose `NetWork.py` sleeps `sleep_s` seconds before building the network: an evaluation that runs
    for a while, in which a test can stop a worker, a broker or send a duplicate."""
    import yaml

    from tests.sandbox.submissions import NETWORK, write_submission
    from tests.sandbox.test_student_mode import save_weights

    weights = save_weights(write_submission(folder / "plain"), 1, folder / "model-v1.ckpt", cifar10_root)
    # A code of its own (a unique comment): evaluations are cached by checkpoint and code, and this one must run.
    unique = f"# {uuid.uuid4().hex}\nimport time\ntime.sleep({sleep_s})\n"
    slow = write_submission(folder / "slow", network=unique + NETWORK)
    sheet = yaml.safe_load(CORRECT_SHEET.read_text())
    sheet["q1"] = {"v1_config": dict(STUDENT_CONFIG)}
    return [
        ("answers", ("answers.yaml", yaml.safe_dump(sheet).encode())),
        ("v1", (weights.name, weights.read_bytes())),
        *[("v1_code", (path.name, path.read_bytes())) for path in sorted(slow.glob("*.py"))],
    ]
