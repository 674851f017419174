"""Operability over HTTP: Prometheus metrics at /metrics, request ids, and one log line per request with no secret
in it; the worker's lines name the job and submission they work on."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO_ROOT, Backends
from tests.service.conftest import RunningService, _free_port, wait_for_final, wait_until_healthy

pytestmark = pytest.mark.service
SHEET = Path(__file__).resolve().parent.parent / "data" / "correct_sheet.yaml"
SUBMIT = "/api/v1/assignments/csce636-hw3/submissions"
SUBMISSION_ROUTE = "/api/v1/submissions/{submission_id}"
METRICS_TOKEN = "metrics-token-7f3a9c"
WAIT_S = 30

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base_url: str, **headers: str) -> Samples:
    response = httpx.get(f"{base_url}/metrics", headers={"Connection": "close", **headers}, timeout=30)
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def scrape_until(base_url: str, ready: Callable[[Samples], bool], **headers: str) -> Samples:
    """A scrape in which `ready` holds: a request is counted just after its answer has gone out."""
    deadline = time.monotonic() + WAIT_S
    while True:
        samples = scrape(base_url, **headers)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def wait_for_log(read: Callable[[], str], found: Callable[[str], bool]) -> str:
    """The log once `found` holds for one of its lines: a request's line is written after its answer is sent."""
    deadline = time.monotonic() + WAIT_S
    while True:
        text = read()
        if any(found(line) for line in text.splitlines()) or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


def json_lines(text: str) -> Iterator[dict]:
    for line in text.splitlines():
        if line.startswith("{"):
            yield json.loads(line)


@pytest.fixture(scope="module")
def graded(service: RunningService) -> dict:
    """One submission graded by the session's worker, read twice, and a read of a submission that does not exist."""
    mia = service.user("obs-mia")
    accepted = mia.post(SUBMIT, files={"answers": ("answers.yaml", SHEET.read_bytes())})
    assert accepted.status_code == 202, accepted.text
    body = wait_for_final(mia, accepted.json()["status_url"])
    assert body["status"] == "graded", body
    assert mia.get(accepted.json()["status_url"]).status_code == 200
    assert mia.get("/api/v1/submissions/obs-no-such-submission").status_code == 404
    return body


def test_metrics_count_requests_by_route_template_and_status(service: RunningService, graded: dict) -> None:
    requests = "grader_http_requests_total"
    samples = scrape_until(
        service.base_url,
        lambda now: (sample(now, requests, method="GET", route=SUBMISSION_ROUTE, status="404") or 0) >= 1,
    )
    assert sample(samples, requests, method="GET", route=SUBMISSION_ROUTE, status="200") >= 2
    assert sample(samples, requests, method="GET", route=SUBMISSION_ROUTE, status="404") >= 1
    submitted = sample(
        samples, requests, method="POST", route="/api/v1/assignments/{assignment_id}/submissions", status="202"
    )
    assert submitted >= 1
    assert sample(samples, "grader_http_request_duration_seconds_count", method="GET", route=SUBMISSION_ROUTE) >= 3
    # raw paths never become labels: one series per route, whatever the ids
    routes = {dict(labels).get("route", "") for name, labels in samples if name == requests}
    assert not {route for route in routes if graded["id"] in route or "obs-no-such-submission" in route}


def test_metrics_report_queues_workers_jobs_and_phase_durations(service: RunningService, graded: dict) -> None:
    samples = scrape(service.base_url)

    assert sample(samples, "grader_database_up") == 1
    assert sample(samples, "grader_queue_jobs_waiting") >= 0
    assert sample(samples, "grader_queue_evaluations_waiting") >= 0
    assert sample(samples, "grader_queue_oldest_waiting_seconds") >= 0
    for queue in ("cpu", "gpu", "regrade"):  # `grader run` starts a worker per queue
        assert sample(samples, "grader_workers_alive", queue=queue) >= 1
    assert sample(samples, "grader_jobs", status="graded") >= 1
    assert sample(samples, "grader_evaluations", status="evaluated") is not None
    # the job graded above finished within the hour the phase durations cover
    for phase in ("queued", "running", "total"):
        assert sample(samples, "grader_job_phase_finished", phase=phase) >= 1
        assert sample(samples, "grader_job_phase_seconds", phase=phase, quantile="1") >= 0
    assert sample(samples, "grader_job_phase_seconds", phase="total", quantile="0.5") is not None


def test_a_request_id_is_taken_from_the_caller_when_plain_and_echoed(service: RunningService) -> None:
    mia = service.user("obs-mia")
    assert mia.get("/api/v1/me", headers={"X-Request-ID": "obs-req-42"}).headers["X-Request-ID"] == "obs-req-42"
    for unusable in ("has spaces <and> brackets", "x" * 200, ""):
        echoed = mia.get("/api/v1/me", headers={"X-Request-ID": unusable}).headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", echoed), echoed
    assert re.fullmatch(r"[0-9a-f]{32}", mia.get("/api/v1/me").headers["X-Request-ID"])

    log = wait_for_log(service.log, lambda line: "request_id=obs-req-42" in line)
    line = next(line for line in log.splitlines() if "request_id=obs-req-42" in line)
    assert "GET /api/v1/me 200" in line and "user_id=" in line


def test_worker_lines_name_the_job_and_submission(service: RunningService, graded: dict) -> None:
    def names_both(line: str) -> bool:
        return f"submission_id={graded['id']}" in line and "job_id=" in line

    assert any(names_both(line) for line in wait_for_log(service.log, names_both).splitlines())


# ---------------------------------------------------------------- an API process with deployment settings


@pytest.fixture(scope="module")
def deployed_api(
    service: RunningService, backends: Backends, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningService]:
    """The API as a deployment runs it: any ASGI server (uvicorn's own command, its access log on by default), two
    processes behind one port, JSON logs and a metrics token."""
    folder = tmp_path_factory.mktemp("deployed-api")
    (folder / "prometheus").mkdir()
    env = {
        **backends.env,
        "GRADER_LOG_FORMAT": "json",
        "GRADER_METRICS_TOKEN": METRICS_TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(folder / "prometheus"),
    }
    port = _free_port()
    log_path = folder / "api.log"
    command = [sys.executable, "-m", "uvicorn", "--factory", "grader.api.app:create_app", "--port", str(port)]
    api = subprocess.Popen(
        [*command, "--workers", "2"], env=env, cwd=REPO_ROOT, stdout=log_path.open("w"), stderr=subprocess.STDOUT
    )
    running = RunningService(process=api, base_url=f"http://127.0.0.1:{port}", env=env, log_path=log_path)
    try:
        wait_until_healthy(running)
        yield running
    finally:
        api.terminate()
        api.wait(timeout=60)


def test_request_lines_are_json_and_carry_no_secret(service: RunningService, deployed_api: RunningService) -> None:
    service.user("obs-mia")
    token = service.tokens["obs-mia"]
    base = deployed_api.base_url
    answered = httpx.get(
        f"{base}/api/v1/me?token=SECRET123&access_token=SECRET123&limit=5",
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": "obs-json-1"},
    )
    assert answered.status_code == 200
    refused = httpx.get(f"{base}/api/v1/me?token=SECRET123", headers={"Authorization": "Bearer SECRET456"})
    assert refused.status_code == 401
    assert httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).status_code == 200

    log = wait_for_log(deployed_api.log, lambda line: '"obs-json-1"' in line and "grader.access" in line)
    line = next(entry for entry in json_lines(log) if entry.get("request_id") == "obs-json-1")
    assert {key: line[key] for key in ("logger", "method", "route", "status")} == {
        "logger": "grader.access",
        "method": "GET",
        "route": "/api/v1/me",
        "status": 200,
    }
    assert isinstance(line["user_id"], int) and isinstance(line["duration_ms"], float)
    assert line["path"] == "/api/v1/me?token=[redacted]&access_token=[redacted]&limit=5"
    for secret in ("SECRET123", "SECRET456", token, METRICS_TOKEN):
        assert secret not in log


def test_the_metrics_token_is_required_when_set(deployed_api: RunningService) -> None:
    metrics = f"{deployed_api.base_url}/metrics"
    assert httpx.get(metrics).status_code == 401
    assert httpx.get(metrics, headers={"Authorization": "Bearer not-it"}).status_code == 401
    assert httpx.get(metrics, headers={"Authorization": f"Basic {METRICS_TOKEN}"}).status_code == 401
    scraped = scrape(deployed_api.base_url, Authorization=f"Bearer {METRICS_TOKEN}")
    assert sample(scraped, "grader_database_up") == 1


def test_every_api_process_reports_the_requests_of_all(service: RunningService, deployed_api: RunningService) -> None:
    service.user("obs-mia")
    auth = {"Authorization": f"Bearer {service.tokens['obs-mia']}", "Connection": "close"}  # a connection each
    for _ in range(6):
        assert httpx.get(f"{deployed_api.base_url}/api/v1/assignments/obs-none", headers=auth).status_code == 404
    labels = {"method": "GET", "route": "/api/v1/assignments/{assignment_id}", "status": "404"}
    metrics_auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    scrape_until(
        deployed_api.base_url, lambda now: sample(now, "grader_http_requests_total", **labels) == 6, **metrics_auth
    )
    for _ in range(4):  # whichever process answers the scrape, and however many scrapes
        samples = scrape(deployed_api.base_url, **metrics_auth)
        assert sample(samples, "grader_http_requests_total", **labels) == 6
