"""Nothing is lost when the broker is down: the submission is stored, and a worker queues it once it starts."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Backends
from tests.service.conftest import RunningService, _free_port, api_process, extra_worker, wait_for_final

pytestmark = pytest.mark.service


def test_submission_survives_an_unreachable_broker(service: RunningService, backends: Backends, tmp_path) -> None:
    env = {**backends.env, "GRADER_BROKER_URL": f"redis://127.0.0.1:{_free_port()}/0"}  # nothing listens there
    with api_process(env, tmp_path / "api.log") as broken:
        client = broken.user("gina")
        response = client.post(
            "/api/v1/assignments/csce636-hw3/submissions", files={"answers": ("a.yaml", b"q3: {a_mean_shape: 1 x C}")}
        )
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "received"
        stored = client.get(response.json()["status_url"]).json()
        assert "queue is unreachable" in stored["detail"]
        ready = httpx.get(f"{broken.base_url}/api/v1/ready", timeout=30)
        assert ready.status_code == 503
        assert "broker" in ready.json()["problems"] and "unreachable" in ready.json()["broker"]

    # A worker on the real broker resends jobs that never reached the queue when it starts.
    with extra_worker({**backends.env, "GRADER_REQUEUE_AFTER_S": "0"}):
        body = wait_for_final(service.user("gina"), response.json()["status_url"], timeout=120)
    assert body["status"] == "graded"
    assert {p["id"]: p["status"] for p in body["parts"]}["q3.a_mean_shape"] == "correct"
