"""`grader api`: the API alone, as a deployment's container runs it next to workers in other containers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import REPO_ROOT

GRADER = str(Path(sys.executable).with_name("grader"))
START_TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_grader_api_serves_the_api_without_workers_and_stops_on_sigterm(tmp_path: Path) -> None:
    # Embedded defaults in a folder of its own: the database is migrated first, as the deployment's one-shot does.
    env = {name: value for name, value in os.environ.items() if not name.startswith("GRADER_")}
    env["GRADER_DATA_DIR"] = str(tmp_path / "data")
    subprocess.run([GRADER, "db", "upgrade"], env=env, cwd=REPO_ROOT, check=True, capture_output=True, timeout=120)
    port = _free_port()
    log_path = tmp_path / "api.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [GRADER, "api", "--port", str(port)], env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        base = f"http://127.0.0.1:{port}/api/v1"
        deadline = time.monotonic() + START_TIMEOUT_S
        health = None
        while health is None and time.monotonic() < deadline:
            assert process.poll() is None, f"grader api exited:\n{log_path.read_text()}"
            try:
                health = httpx.get(f"{base}/health", timeout=2)
            except httpx.HTTPError:
                time.sleep(0.3)
        assert health is not None, f"grader api did not answer in {START_TIMEOUT_S} s:\n{log_path.read_text()}"
        assert (health.status_code, health.json()) == (200, {"status": "ok", "database": "ok"})

        # It started no worker: readiness names every queue as unserved.
        ready = httpx.get(f"{base}/ready", timeout=30)
        assert ready.status_code == 503
        for queue in ("cpu", "gpu", "regrade"):
            assert f"no live worker for the {queue} queue" in ready.json()["problems"]
    finally:
        # What `docker stop` sends: the API shuts down gracefully (uvicorn then ends by the signal it caught).
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) in (0, -signal.SIGTERM), log_path.read_text()
    assert "Finished server process" in log_path.read_text()
