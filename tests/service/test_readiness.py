"""`/ready` on the real service: workers prove they are alive by heartbeat, per queue, and a clean stop shows."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import Backends
from tests.service.conftest import RunningService, extra_worker

pytestmark = pytest.mark.service


def _ready(service: RunningService, until: object, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        response = httpx.get(f"{service.base_url}/api/v1/ready", timeout=10)
        body = response.json() | {"code": response.status_code}
        if until(body):  # type: ignore[operator]
            return body
        time.sleep(0.5)
    raise AssertionError(f"/ready never reached the expected state in {timeout} s; last answer: {body}")


def test_ready_once_every_queue_has_a_live_worker(service: RunningService, backends: Backends) -> None:
    body = _ready(service, lambda b: b["code"] == 200)
    assert body["ready"] is True and body["problems"] == []
    assert body["database"] == "ok" and body["broker"] == "ok"
    # `grader run` starts one worker per queue, so answers never wait behind an evaluation.
    names = [w["name"] for w in body["workers"]]
    for queue in ("cpu", "gpu", "regrade"):
        assert body["queue"]["workers_alive"][queue] >= 1
        assert any(name.startswith(f"{queue}.") for name in names), names

    with extra_worker(backends.env, queues="regrade") as worker:
        name_prefix = f"regrade.{worker.pid}@"
        _ready(service, lambda b: any(w["name"].startswith(name_prefix) for w in b["workers"]))
    # Terminated (warm shutdown): it says so on its way out, so it stops counting at once.
    after = _ready(service, lambda b: not any(w["name"].startswith(name_prefix) for w in b["workers"]), timeout=5)
    assert after["code"] == 200
