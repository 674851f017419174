"""The REST API fuzzed from its own OpenAPI schema (schemathesis), as an instructor and as a student: no answer is a
server error, and every answer's status code, content type, headers and body are ones the schema documents.

Against an API process of its own, on a database and a broker of its own (a fresh PostgreSQL database when the tests
run on PostgreSQL): the fuzzer creates users, tokens, extensions, regrades and releases, and revokes tokens, none of
which another test may see. Every operation but one is included: revoking a user's tokens (DELETE
/users/{username}/tokens), which following the user list revoked the fuzzer's own (every later request was a 401).
The seed is fixed, so a run is repeatable; at most MAX_EXAMPLES generated cases per operation and phase keep it to
about half a minute per role.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, Backends, _create_postgres_database, _drop_postgres_database
from tests.service.conftest import GRADER, RunningService, _free_port, wait_until_healthy

pytestmark = [pytest.mark.service, pytest.mark.slow]
SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
MAX_EXAMPLES = 20
SEED = 20261202
CONFIG = """
[[operations]]
include-path = "/api/v1/ready"
# Documented: 503 names what is missing, and this API runs without workers.
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]

[[operations]]
include-name = "DELETE /api/v1/users/{username}/tokens"
# Revocation: following the user list, it revoked the fuzzer's own token, and every later request was a 401.
enabled = false
"""
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    if not Path(SCHEMATHESIS).is_file():
        if os.environ.get("CI"):
            pytest.fail("CI must install the dev extras (schemathesis)")
        pytest.skip("schemathesis is not installed: pip install -e '.[dev]'")
    folder = tmp_path_factory.mktemp("fuzzed")
    admin_url = os.environ.get("GRADER_TEST_DATABASE_URL", "")
    created = None
    database_url = f"sqlite:///{folder / 'grader.db'}"
    if admin_url.startswith("postgresql"):
        database_url, created = _create_postgres_database(admin_url)
    own = Backends(database_url=database_url, broker_url=f"sqla+sqlite:///{folder / 'broker.db'}", data_dir=folder)
    # The rate limit would answer most generated requests 429 before they reach the code under test.
    env = {**own.env, "GRADER_RATE_LIMIT_PER_MINUTE": "1000000", "GRADER_RATE_LIMIT_BURST": "1000000"}
    subprocess.run([GRADER, "db", "upgrade"], env=env, cwd=REPO_ROOT, check=True, capture_output=True)
    port = _free_port()
    log_path = folder / "api.log"
    api = subprocess.Popen(
        [GRADER, "api", "--port", str(port)],
        env=env,
        cwd=REPO_ROOT,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
    )
    service = RunningService(process=api, base_url=f"http://127.0.0.1:{port}", env=env, log_path=log_path)
    try:
        wait_until_healthy(service)
        service.user("fuzz-prof", "instructor")
        service.user("fuzz-student", "student")
        yield service
    finally:
        api.terminate()
        api.wait(timeout=30)
        if created:
            _drop_postgres_database(admin_url, created)


@pytest.mark.parametrize("who", ["fuzz-prof", "fuzz-student"])
def test_every_answer_is_documented_and_none_is_a_server_error(
    fuzzed: RunningService, who: str, tmp_path: Path
) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    run = subprocess.run(
        [
            SCHEMATHESIS,
            "--config-file",
            str(config),
            "run",
            f"{fuzzed.base_url}/openapi.json",
            "--header",
            f"Authorization: Bearer {fuzzed.tokens[who]}",
            "--checks",
            ",".join(CHECKS),
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            "--workers",
            "1",
            "--request-timeout",
            "60",
        ],
        cwd=tmp_path,  # its example database and reports stay out of the checkout
        env={**os.environ, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    shutil.rmtree(tmp_path / ".hypothesis", ignore_errors=True)
    assert run.returncode == 0, f"schemathesis found problems:\n{run.stdout[-20000:]}\n{run.stderr[-4000:]}"
