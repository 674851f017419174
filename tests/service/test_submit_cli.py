"""`grader submit` and `grader status` as a student runs them: a real CLI process against the running service."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from tests.conftest import REPO_ROOT
from tests.service.conftest import GRADER, RunningService

pytestmark = pytest.mark.service
SHEET = REPO_ROOT / "tests" / "data" / "correct_sheet.yaml"
NO_SUCH_SUBMISSION = "no-such-submission"
CLI_TIMEOUT_S = 300


def token_of(service: RunningService, username: str) -> str:
    service.user(username).close()  # creates the student through `grader users create`, keeping the token
    return service.tokens[username]


def student_env(home: Path, **variables: str) -> dict[str, str]:
    """A student's shell: none of the server's GRADER_* settings, and a home of its own (no real config file)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GRADER_")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), **variables)
    return env


def grader(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GRADER, *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=CLI_TIMEOUT_S
    )


def write_config(path: Path, mode: int, **values: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f'{key} = "{value}"\n' for key, value in values.items()))
    path.chmod(mode)
    return path


def test_submit_uploads_waits_and_prints_the_graded_table(service: RunningService, tmp_path: Path) -> None:
    token = token_of(service, "cli-ann")
    result = grader(
        student_env(tmp_path), "submit", "--server", service.base_url, "--token", token, "--answers", str(SHEET)
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("(csce636-hw3, cli-ann): graded")
    assert any(line.split()[:2] == ["q2.standard_params", "correct"] for line in lines)
    assert lines[-1].startswith("score: ") or "not released" in lines[-1]
    # stderr is not a terminal here: plain lines, no bar redrawn in place
    assert "uploading answers to " in result.stderr and "\r" not in result.stderr
    assert token not in result.stdout + result.stderr


def test_no_wait_prints_the_id_then_status_reads_it_with_the_token_from_the_environment(
    service: RunningService, tmp_path: Path
) -> None:
    env = student_env(tmp_path, GRADER_SERVER=service.base_url, GRADER_TOKEN=token_of(service, "cli-ben"))
    submitted = grader(env, "submit", "--answers", str(SHEET), "--no-wait")
    assert submitted.returncode == 0, submitted.stderr
    submission_id = submitted.stdout.split()[1]
    assert f"check it with: grader status {submission_id}\n" in submitted.stdout

    deadline = time.monotonic() + 240
    body: dict = {}
    while body.get("status") not in ("graded", "failed") and time.monotonic() < deadline:
        time.sleep(0.5)
        polled = grader(env, "status", submission_id, "--json")
        assert polled.returncode in (0, 1), polled.stderr
        body = json.loads(polled.stdout)
    assert body["status"] == "graded" and body["id"] == submission_id and body["user"] == "cli-ben"

    shown = grader(env, "status", submission_id)
    assert shown.returncode == 0, shown.stderr
    assert "q4.c_kernels" in shown.stdout and "score: " in shown.stdout


@pytest.mark.parametrize(
    ("where", "mode"),
    [("GRADER_CONFIG", 0o600), ("default location", 0o600), ("default location", 0o400)],
)
def test_server_and_token_from_a_config_file(service: RunningService, tmp_path: Path, where: str, mode: int) -> None:
    token = token_of(service, "cli-cat")
    if where == "GRADER_CONFIG":
        config = write_config(tmp_path / "grader.toml", mode, server=service.base_url, token=token)
        env = student_env(tmp_path, GRADER_CONFIG=str(config))
    else:
        write_config(tmp_path / ".config" / "grader" / "config.toml", mode, server=service.base_url, token=token)
        env = student_env(tmp_path)

    # the server answered as to a signed-in student: that submission id is unknown, not the token
    result = grader(env, "status", NO_SUCH_SUBMISSION)
    assert result.returncode == 1
    assert "not found (404)" in result.stderr and token not in result.stderr


def test_a_config_file_others_can_read_is_refused_without_showing_the_token(
    service: RunningService, tmp_path: Path
) -> None:
    token = token_of(service, "cli-cat")
    config = write_config(tmp_path / "grader.toml", 0o644, server=service.base_url, token=token)
    result = grader(student_env(tmp_path, GRADER_CONFIG=str(config)), "status", NO_SUCH_SUBMISSION)
    assert result.returncode == 2
    assert "other users can read or change it (mode 644)" in result.stderr and f"chmod 600 {config}" in result.stderr
    assert token not in result.stderr


@pytest.mark.parametrize(
    ("command_line", "environment", "config_file", "used"),
    [
        ("good", "bad", "bad", "good"),
        (None, "good", "bad", "good"),
        (None, None, "good", "good"),
        ("bad", "good", "good", "bad"),
        (None, "bad", "good", "bad"),
    ],
)
def test_the_command_line_wins_over_the_environment_and_the_environment_over_the_config_file(
    service: RunningService,
    tmp_path: Path,
    command_line: str | None,
    environment: str | None,
    config_file: str,
    used: str,
) -> None:
    tokens = {"good": token_of(service, "cli-dan"), "bad": "gr_not-a-token-the-server-issued"}
    config = write_config(tmp_path / "grader.toml", 0o600, server=service.base_url, token=tokens[config_file])
    env = student_env(tmp_path, GRADER_CONFIG=str(config))
    if environment:
        env["GRADER_TOKEN"] = tokens[environment]
    args = ["--token", tokens[command_line]] if command_line else []

    result = grader(env, "status", NO_SUCH_SUBMISSION, *args)

    assert result.returncode == 1
    if used == "good":
        assert "not found (404)" in result.stderr
    else:
        source = "--token" if command_line else "GRADER_TOKEN"
        assert "the server refused your token (401" in result.stderr and f"check the token ({source})" in result.stderr
    assert not any(token in result.stdout + result.stderr for token in tokens.values())


def test_a_misspelt_key_is_refused_with_the_apis_suggestion(service: RunningService, tmp_path: Path) -> None:
    sheet = tmp_path / "answers.yaml"
    sheet.write_text(SHEET.read_text().replace("  standard_params:", "  standard_param:", 1))
    env = student_env(tmp_path, GRADER_SERVER=service.base_url, GRADER_TOKEN=token_of(service, "cli-eve"))
    result = grader(env, "submit", "--answers", str(sheet))
    assert result.returncode == 1
    assert "the server refused the submission (422)" in result.stderr
    assert "q2.standard_param" in result.stderr and "did you mean q2.standard_params?" in result.stderr


def test_an_answer_sheet_over_the_limit_is_refused_as_too_large(service: RunningService, tmp_path: Path) -> None:
    sheet = tmp_path / "answers.yaml"
    sheet.write_text(SHEET.read_text() + "# padding\n" * 40_000)  # 400 KB, over the default 256 KiB
    env = student_env(tmp_path, GRADER_SERVER=service.base_url, GRADER_TOKEN=token_of(service, "cli-eve"))
    result = grader(env, "submit", "--answers", str(sheet), "--assignment", "csce636-hw3")
    assert result.returncode == 1
    assert "too large (413): answers: " in result.stderr and "262144 bytes" in result.stderr


def test_checkpoint_and_code_go_in_the_fields_the_api_expects(service: RunningService, tmp_path: Path) -> None:
    checkpoint = tmp_path / "model-v2.safetensors"
    save_file({"conv1.weight": np.zeros((8, 3, 3, 3), dtype=np.float32)}, str(checkpoint))
    code = tmp_path / "hw3"
    code.mkdir()
    (code / "NetWork.py").write_text("x = 1\n")
    (code / "ImageUtils.py").write_text("y = 2\n")
    env = student_env(tmp_path, GRADER_SERVER=service.base_url, GRADER_TOKEN=token_of(service, "cli-fay"))

    # --code without a label: the one checkpoint's
    result = grader(
        env, "submit", "--answers", str(SHEET), "--checkpoint", f"v2={checkpoint}", "--code", str(code), "--json"
    )

    body = json.loads(result.stdout)
    assert result.returncode == (0 if body["status"] == "graded" else 1), result.stderr
    files = {item["field"]: item for item in body["files"]}
    assert set(files) == {"answers", "v2", "v2_code"}
    assert files["v2"]["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert files["answers"]["sha256"] == hashlib.sha256(SHEET.read_bytes()).hexdigest()


def test_on_a_terminal_the_upload_shows_a_progress_bar(service: RunningService, tmp_path: Path) -> None:
    env = student_env(tmp_path, GRADER_SERVER=service.base_url, GRADER_TOKEN=token_of(service, "cli-gus"))
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [GRADER, "submit", "--answers", str(SHEET)],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=terminal,
        text=True,
    )
    os.close(terminal)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal's other end closed: the command exited
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    stdout = process.communicate(timeout=CLI_TIMEOUT_S)[0]

    assert process.returncode == 0
    assert f"[{'#' * 30}]" in shown.decode() and "(100 %)" in shown.decode()
    assert "waiting: " in shown.decode()
    assert "q2.standard_params" in stdout


def test_an_unreachable_server_is_named_in_the_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: nothing answers there
        result = grader(student_env(tmp_path), "status", "x", "--server", f"http://127.0.0.1:{port}", "--token", "t")
    assert result.returncode == 1
    assert f"cannot reach the grader at http://127.0.0.1:{port}" in result.stderr


class _Busy(BaseHTTPRequestHandler):
    """A server over its rate limit, answering as the API's error handlers do."""

    def do_GET(self) -> None:
        body = json.dumps({"error": {"code": "rate_limited", "message": "slow down", "field": None}}).encode()
        self.send_response(429)
        self.send_header("Content-Type", "application/json")
        self.send_header("Retry-After", "120")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def busy_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_a_rate_limit_says_when_to_try_again(busy_server: str, tmp_path: Path) -> None:
    result = grader(student_env(tmp_path), "status", "x", "--server", busy_server, "--token", "t")
    assert result.returncode == 1
    assert "too many requests (429): slow down; try again in 120 s (at " in result.stderr


def test_the_whole_code_folder_goes_in_the_code_field(service: RunningService, tmp_path: Path) -> None:
    folder = tmp_path / "hw3-code"
    folder.mkdir()
    for name in ("DataReader.py", "ImageUtils.py", "NetWork.py", "Model.py", "main.py"):
        (folder / name).write_text(f"# {name}\n")
    (folder / "notes.txt").write_text("not code: left out of the zip\n")
    env = student_env(tmp_path, GRADER_SERVER=service.base_url, GRADER_TOKEN=token_of(service, "cli-gus"))

    result = grader(env, "submit", "--answers", str(SHEET), "--code-folder", str(folder), "--no-wait", "--json")
    assert result.returncode == 0, result.stderr
    accepted = json.loads(result.stdout)
    shown = subprocess.run(
        [GRADER, "status", accepted["id"], "--json"], env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S
    )
    files = {item["field"]: item for item in json.loads(shown.stdout)["files"]}
    assert set(files) == {"answers", "code"}
    stored = service.user("cli-gus").get(f"/api/v1/submissions/{accepted['id']}/files/code/contents").json()
    names = sorted(item["name"].rpartition("/")[2] for item in stored["files"])
    assert names == ["DataReader.py", "ImageUtils.py", "Model.py", "NetWork.py", "main.py"], stored
