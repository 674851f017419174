"""Hostile student code through the real worker: submitted over HTTP, evaluated by the Celery worker in student-code
mode under the service's GRADER_SANDBOX_* limits. Each canary ends in its documented status, its effect is absent,
nothing of the run is left behind, and the same worker process grades the next submission normally.

The service here runs with small limits (not the defaults, so the messages show the settings reached the sandbox);
the session's service is paused meanwhile, since its worker would take these tasks under its own settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
import yaml

from grader.queues import QUEUES
from grader.sandbox.bwrap import SANDBOX_PATH
from grader.storage import ArtifactStore
from tests.conftest import Backends
from tests.sandbox.submissions import IMAGE_UTILS, NETWORK, write_submission
from tests.sandbox.test_student_mode import HOSTILE, save_weights
from tests.service.conftest import RunningService, session_service_paused, start_service, stop_service, wait_for_final
from tests.service.test_student_code import CONFIG, SHEET, _correct_when_run_directly

pytestmark = [pytest.mark.service, pytest.mark.slow, pytest.mark.usefixtures("sandbox")]

# None is a default, so each message below also shows that the service's setting reached the sandbox.
WALL_S, CPU_S, MEMORY_MIB, MAX_PROCESSES = 20, 12, 5120, 48
LIMITS = {
    "GRADER_SANDBOX_WALL_S": str(WALL_S),
    # One torch thread: a normal run then uses about as much CPU time as wall time (~5 s here), well under
    # CPU_S, while a single spinning thread reaches CPU_S before WALL_S, so both limits show.
    "GRADER_SANDBOX_CPU_S": str(CPU_S),
    "GRADER_SANDBOX_THREADS": "1",
    "GRADER_SANDBOX_MEMORY_MIB": str(MEMORY_MIB),  # torch's import maps 3.3 GB; a normal run fits in 5 GiB
    "GRADER_SANDBOX_MAX_PROCESSES": str(MAX_PROCESSES),
}
TOTAL = 10_000


@dataclass
class HostileService:
    service: RunningService
    storage: Path
    tmpdir: Path
    """The worker's TMPDIR, private to this module, so leftover run folders are this service's own."""
    secret: str
    worker_pids: set[int]
    """The worker's processes (Celery main and pool child) when the module started."""

    def store_path(self, sha256: str) -> Path:
        return ArtifactStore(self.storage).path_for(sha256)


@dataclass(frozen=True)
class Starter:
    code: Path
    v1: Path
    v2: Path
    v1_correct: int
    """What the starter code scores with the v1 weights, run here directly."""


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            found[int(entry.name)] = (int(status.split("\nPPid:")[1].split()[0]), command)
    return found


def _descendants(root: int) -> dict[int, str]:
    """pid -> command line of every process below `root`."""
    processes = _processes()
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _) in processes.items() if ppid == parent]
        found.update({pid: processes[pid][1] for pid in children})
        frontier += children
    return found


def _own_sandbox_processes(hostile: HostileService) -> dict[int, str]:
    """Processes of this worker's sandboxed runs: bubblewrap, whose command line binds a run folder made in the
    worker's private TMPDIR, and everything below it (orphans in its PID namespace are adopted by its init, itself
    that bubblewrap). Any uid: the sandbox uid only differs when the worker runs as root.

    Other sandboxes on the machine (other test sessions) are left out.
    """
    processes = _processes()
    own = {}
    for pid in processes:
        chain, current = [], pid
        while current in processes and len(chain) < 64:
            chain.append(current)
            current = processes[current][0]
        ours = any(str(hostile.tmpdir) in processes[member][1] for member in chain)
        if ours and not _idle_warm_server(pid, processes):
            own[pid] = processes[pid][1][:200]
    return own


def _idle_warm_server(pid: int, processes: dict[int, tuple[int, str]]) -> bool:
    """The worker's warm sandbox server itself (its bubblewrap and the Python below it), which stays between runs; a
    run's keeper or child (forked below that Python) is not."""

    def is_warm_bwrap(member: int) -> bool:
        command = processes.get(member, (0, ""))[1]
        return command.split(" ", 1)[0].endswith("/bwrap") and "grader.sandbox.warm" in command

    return is_warm_bwrap(pid) or is_warm_bwrap(processes[pid][0])


def _worker_pids(service: RunningService) -> set[int]:
    return {pid for pid, command in _descendants(service.process.pid).items() if "celery" in command}


@pytest.fixture(scope="module")
def hostile(backends: Backends, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileService]:
    # World-traversable like /tmp, so the sandbox user reaches the run folders as it does in production.
    tmpdir = Path(tempfile.mkdtemp(prefix="hostile-worker-tmp-"))
    tmpdir.chmod(0o711)
    secret = f"canary-secret-{secrets.token_hex(8)}"
    extra = {**LIMITS, "TMPDIR": str(tmpdir), "GRADER_SECRET_KEY": secret, "DB_PASSWORD": secret}
    with session_service_paused(backends):
        running = start_service(backends, tmp_path_factory.mktemp("hostile-logs") / "service.log", extra)
        try:
            deadline = time.monotonic() + 30
            expected = 2 * len(QUEUES)  # `grader run` starts one worker per queue, each with one pool child
            while len(pids := _worker_pids(running)) < expected and time.monotonic() < deadline:
                time.sleep(0.2)  # the Celery pool children start a moment after the API answers
            assert len(pids) >= expected, _descendants(running.process.pid)
            yield HostileService(running, backends.data_dir / "storage", tmpdir, secret, pids)
        finally:
            stop_service(running)
            shutil.rmtree(tmpdir, ignore_errors=True)


@pytest.fixture(scope="module")
def starter(tmp_path_factory: pytest.TempPathFactory, cifar10_root: Path) -> Starter:
    folder = tmp_path_factory.mktemp("starter")
    code = write_submission(folder / "code")
    v1 = save_weights(code, 1, folder / "model-v1.ckpt", cifar10_root)
    v2 = save_weights(code, 2, folder / "model-v2.ckpt", cifar10_root)
    correct = _correct_when_run_directly(code, v1, 1, cifar10_root)
    # Any constant prediction (e.g. the faker's printed [0] * 10000) scores exactly 1000 on CIFAR-10's balanced
    # test set; spread-out predictions are what make an equal count show whose predictions were scored.
    assert correct != TOTAL // 10
    return Starter(code, v1, v2, correct)


def _sheet() -> bytes:
    sheet = yaml.safe_load(SHEET.read_text())
    sheet["q1"] = {"v1_config": dict(CONFIG), "v2_config": dict(CONFIG)}  # two objects: YAML aliases are refused
    return yaml.safe_dump(sheet).encode()


def _code(folder: Path, network: str = NETWORK, image_utils: str = IMAGE_UTILS) -> Path:
    return write_submission(folder, network=network, image_utils=image_utils)


def _post(client: httpx.Client, answers: bytes, **labels: tuple[Path, Path | None]) -> str:
    """Submit `answers` and, per label, (checkpoint, code folder or None for reference mode); the status URL."""
    files = [("answers", ("answers.yaml", answers))]
    for label, (checkpoint, code) in labels.items():
        files.append((label, (checkpoint.name, checkpoint.read_bytes())))
        if code is not None:
            files += [(f"{label}_code", (path.name, path.read_bytes())) for path in sorted(code.glob("*.py"))]
    response = client.post("/api/v1/assignments/csce636-hw3/submissions", files=files)
    assert response.status_code == 202, response.text
    return str(response.json()["status_url"])


def _graded(client: httpx.Client, status_url: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    body = wait_for_final(client, status_url, timeout=300)
    assert body["status"] == "graded", body
    return body, {part["id"]: part for part in body["parts"]}


def _submit(hostile: HostileService, user: str, **labels: tuple[Path, Path | None]) -> dict[str, dict[str, Any]]:
    client = hostile.service.user(user)
    return _graded(client, _post(client, _sheet(), **labels))[1]


def _assert_stopped(part: dict[str, Any], status: str, message: str) -> None:
    """The part a canary's evaluation feeds: no score, the evaluation's status, and the feedback says why."""
    assert part["status"] == "invalid" and part["points"] == 0, part
    evidence = part["evidence"] or {}
    assert evidence.get("mode") == "student_code", part
    assert evidence.get("evaluation_status") == status, part
    assert "accuracy_percent" not in evidence and "correct" not in evidence, part
    assert re.search(message, part["feedback"]), part["feedback"]


def _evaluations_done(service: RunningService) -> int:
    return len(re.findall(r"Task grader\.evaluate_checkpoint\[[^\]]+\] succeeded", service.log()))


def _assert_worker_healthy_and_next_graded(hostile: HostileService, starter: Starter, tmp_path: Path) -> None:
    """Nothing of the runs is left, the same worker processes are alive, and they grade a normal submission."""
    assert _own_sandbox_processes(hostile) == {}
    # Run folders (grader-sandbox-*, grader-code-*) must be gone; the test-image file is kept on purpose (one per
    # machine and user), and Celery's own pymp-* folder lives as long as the worker.
    leftovers = [p.name for p in hostile.tmpdir.glob("grader-*") if not p.name.startswith("grader-testset-")]
    assert leftovers == []
    assert _worker_pids(hostile.service) == hostile.worker_pids, "a worker process died or was replaced"
    log = hostile.service.log()
    assert "WorkerLostError" not in log and "exited with" not in log, log[-3000:]

    # A comment makes the code new to the cache, so the worker really runs it; its predictions are the starter's.
    code = _code(tmp_path / "next", image_utils=IMAGE_UTILS + f"\n# {tmp_path.name}\n")
    before = _evaluations_done(hostile.service)
    parts = _submit(hostile, "nora", v1=(starter.v1, code))
    accuracy = parts["q1.v1_accuracy"]
    assert accuracy["evidence"]["mode"] == "student_code", accuracy
    assert (accuracy["evidence"]["correct"], accuracy["evidence"]["total"]) == (starter.v1_correct, TOTAL), accuracy
    assert parts["q1.v1_architecture"]["status"] == "correct", parts["q1.v1_architecture"]
    # two evaluations of the new code: the v1 checkpoint through the student's network, and the code checks of
    # Q1(a)(b)(d) (each cached by the code's hash, so a new comment runs both)
    assert _evaluations_done(hostile.service) == before + 2
    assert _worker_pids(hostile.service) == hostile.worker_pids


SNOOP = """
import json
import os
import socket


def parse_record(record, training):
    report = {}
    for port in PORTS:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            report[str(port)] = "connected"
        except OSError as exc:
            report[str(port)] = type(exc).__name__
    try:
        with open(UPLOAD, "rb") as handle:
            report["upload"] = "read: " + handle.read(200).decode(errors="replace")
    except OSError as exc:
        report["upload"] = type(exc).__name__
    try:
        report["storage"] = "listed: " + ",".join(os.listdir(STORAGE))[:40]
    except OSError as exc:
        report["storage"] = type(exc).__name__
    try:
        with open("/proc/1/environ") as handle:
            report["init_environ"] = handle.read()[:200]
    except OSError as exc:
        report["init_environ"] = type(exc).__name__
    report["grader_vars"] = sorted(name for name in os.environ if name.startswith("GRADER"))
    report["omp_threads"] = os.environ.get("OMP_NUM_THREADS")
    raise RuntimeError("SNOOP " + json.dumps(report))
"""


def test_a_code_running_checkpoint_is_refused_and_code_sees_no_network_other_uploads_or_secrets(
    hostile: HostileService, starter: Starter, tmp_path: Path
) -> None:
    # Another student's upload, with the secret in it, stored by the service where the test can find it.
    victim = hostile.service.user("victor")
    sheet = yaml.safe_load(SHEET.read_text())
    sheet["q2"]["discussion"] = f"victor's own words {hostile.secret}"
    victim_url = _post(victim, yaml.safe_dump(sheet).encode())
    victim_files = victim.get(victim_url).json()["files"]
    upload = hostile.store_path(next(f["sha256"] for f in victim_files if f["field"] == "answers"))
    assert hostile.secret in upload.read_text()

    ran = tmp_path / "pickle-ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.mkdir, (str(ran),))

    pickled = tmp_path / "model-v1.pt"
    torch.save({"state_dict": Payload()}, pickled)  # torch.save pickles; nothing here unpickles
    api_port = int(hostile.service.base_url.rsplit(":", 1)[1])
    header = f"PORTS = {[6379, 5432, api_port]!r}\nUPLOAD = {str(upload)!r}\nSTORAGE = {str(hostile.storage)!r}\n"
    snoop = _code(tmp_path / "snoop", image_utils=header + SNOOP)

    # The code-running checkpoint is refused at intake (422, nothing run, nothing stored) by the pre-check, whose
    # reader builds only inert records for an allow-list of names; the sandboxed loader refuses it too (tests of
    # grader.evaluation.checkpoint), but the API never lets it get that far.
    mallory = hostile.service.user("mallory")
    files = [("answers", ("answers.yaml", _sheet())), ("v1", (pickled.name, pickled.read_bytes()))]
    refused = mallory.post("/api/v1/assignments/csce636-hw3/submissions", files=files)
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "v1", refused.text
    assert "not only tensors" in refused.json()["error"]["message"]
    assert not ran.exists()
    assert mallory.get("/api/v1/submissions").json()["total"] == 0

    parts = _submit(hostile, "mallory", v2=(starter.v2, snoop))
    stopped = parts["q1.v2_accuracy"]
    _assert_stopped(stopped, "crashed", r"failed while preprocessing records with parse_record: RuntimeError: SNOOP ")
    assert re.search(r"\(ImageUtils\.py, line \d+\)", stopped["feedback"]), stopped["feedback"]
    found = re.search(r"SNOOP (\{.*\})", stopped["feedback"])
    assert found is not None, stopped["feedback"]
    report = json.loads(found.group(1))
    assert {report[str(port)] for port in (6379, 5432, api_port)} == {"ConnectionRefusedError"}, report
    assert report["upload"] in ("FileNotFoundError", "PermissionError"), report
    assert report["storage"] in ("FileNotFoundError", "PermissionError"), report
    assert report["init_environ"] == f"PATH={SANDBOX_PATH}\x00", report  # bubblewrap's own: nothing of the worker's
    assert report["grader_vars"] == ["GRADER_RESULT_FD"], report
    assert report["omp_threads"] == LIMITS["GRADER_SANDBOX_THREADS"], report
    assert hostile.secret not in json.dumps(parts)
    _assert_worker_healthy_and_next_graded(hostile, starter, tmp_path)


def test_without_code_hostile_checkpoints_are_refused_at_intake_and_nothing_runs(
    hostile: HostileService, starter: Starter, tmp_path: Path
) -> None:
    """Reference mode: a code-running pickle and a truncated file are refused when uploaded (422, the reason named,
    nothing stored or run). The worker's sandboxed loader, which refuses them too, is tested on its own
    (tests/sandbox/test_reference_mode.py); the worker goes on grading."""
    ran = tmp_path / "pickle-ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.mkdir, (str(ran),))

    pickled = tmp_path / "model-v1.pt"
    torch.save({"state_dict": Payload()}, pickled)
    truncated = tmp_path / "model-v2.pt"
    truncated.write_bytes(starter.v2.read_bytes()[:4000])

    mallet = hostile.service.user("mallet")
    for label, path, message in (
        ("v1", pickled, "holds Python objects, not only tensors"),
        ("v2", truncated, "truncated"),
    ):
        files = [("answers", ("answers.yaml", _sheet())), (label, (path.name, path.read_bytes()))]
        refused = mallet.post("/api/v1/assignments/csce636-hw3/submissions", files=files)
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["field"] == label and message in error["message"], error
    assert not ran.exists()
    assert mallet.get("/api/v1/submissions").json()["total"] == 0
    _assert_worker_healthy_and_next_graded(hostile, starter, tmp_path)


def test_a_fork_bomb_and_a_100_gb_allocation_end_at_their_limits(
    hostile: HostileService, starter: Starter, tmp_path: Path
) -> None:
    fork_bomb = _code(tmp_path / "fork-bomb", network=HOSTILE["fork-bomb"] + NETWORK)
    hoard = _code(tmp_path / "hoard", network=HOSTILE["allocate-100GB"] + NETWORK)

    parts = _submit(hostile, "mallory", v1=(starter.v1, fork_bomb), v2=(starter.v2, hoard))

    _assert_stopped(
        parts["q1.v1_accuracy"],
        "resource_limit",
        rf"tried to start more than {MAX_PROCESSES} processes or threads \(the limit\)",
    )
    _assert_stopped(
        parts["q1.v2_accuracy"], "memory_limit", r"ran out of memory \(the limit is 5\.0 GiB\).*MemoryError"
    )
    _assert_worker_healthy_and_next_graded(hostile, starter, tmp_path)


def test_code_that_spins_or_sleeps_forever_is_stopped_at_the_configured_time_limits(
    hostile: HostileService, starter: Starter, tmp_path: Path
) -> None:
    spin = _code(tmp_path / "spin", network=HOSTILE["spin"] + NETWORK)
    sleep = _code(tmp_path / "sleep", network=HOSTILE["sleep"] + NETWORK)

    client = hostile.service.user("mallory")
    status_url = _post(client, _sheet(), v1=(starter.v1, spin), v2=(starter.v2, sleep))
    # Seen while they run, the sandbox's processes are recognised as this worker's: "none left" below means it.
    deadline = time.monotonic() + 60
    while not (running := _own_sandbox_processes(hostile)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running, "no sandbox process of this worker was seen while its runs took seconds"
    parts = _graded(client, status_url)[1]

    _assert_stopped(parts["q1.v1_accuracy"], "timed_out", rf"stopped after using {CPU_S} s of CPU time \(the limit\)")
    _assert_stopped(parts["q1.v2_accuracy"], "timed_out", rf"stopped after {WALL_S} s of wall-clock time \(the limit\)")
    _assert_worker_healthy_and_next_graded(hostile, starter, tmp_path)


FAKE_SCORE = """

import json as _json

_StudentResNet = ResNet


def ResNet(*arguments):
    print(_json.dumps({"status": "evaluated", "accuracy_percent": 100.0, "correct": 10000, "predictions": [0] * 10000}))
    outcome = {}
    for path in TARGETS:
        try:
            with open(path, "w") as handle:
                handle.write(_json.dumps({"accuracy_percent": 100.0, "score": 200}))
            outcome[path] = "written"
        except OSError as exc:
            outcome[path] = type(exc).__name__
    if "written" in outcome.values():
        raise RuntimeError("FAKE " + _json.dumps(outcome))
    return _StudentResNet(*arguments)
"""


def test_printed_floods_and_fake_score_files_change_nothing_and_the_score_is_the_graders(
    hostile: HostileService, starter: Starter, tmp_path: Path
) -> None:
    answers = _sheet()
    own_answers = hostile.store_path(hashlib.sha256(answers).hexdigest())
    fake_score = hostile.storage / "scores.json"
    targets = [
        str(fake_score),
        str(own_answers),  # overwrite the submission's own stored sheet
        str(hostile.tmpdir / "scores.json"),  # the worker's temp folder, where the run folders are made
        "/sandbox/code/scores.json",
        "/sandbox/code/NetWork.py",
        "/sandbox/input/result.json",
    ]
    faker = _code(tmp_path / "fake-score", network=NETWORK + f"\nTARGETS = {targets!r}\n" + FAKE_SCORE)
    flood = _code(tmp_path / "flood", network=HOSTILE["print-100MB"] + NETWORK)

    client = hostile.service.user("mallory")
    body, parts = _graded(client, _post(client, answers, v1=(starter.v1, faker), v2=(starter.v2, flood)))

    scored = parts["q1.v1_accuracy"]
    # Evaluated, not `crashed`: the faker raises when any of its writes gets through.
    assert scored["status"] != "invalid" and scored["evidence"].get("mode") == "student_code", scored
    assert (scored["evidence"]["correct"], scored["evidence"]["total"]) == (starter.v1_correct, TOTAL), scored
    assert scored["evidence"]["accuracy_percent"] == round(100 * starter.v1_correct / TOTAL, 2), scored
    assert scored["points"] < scored["max_points"]  # untrained weights: near chance, whatever the code claimed
    assert not fake_score.exists() and not (hostile.tmpdir / "scores.json").exists()
    assert hashlib.sha256(own_answers.read_bytes()).digest() == hashlib.sha256(answers).digest()
    stored = {f["field"]: f["sha256"] for f in body["files"] if f["field"].endswith("_code")}
    for sha in stored.values():
        assert hashlib.sha256(hostile.store_path(sha).read_bytes()).hexdigest() == sha
    _assert_stopped(
        parts["q1.v2_accuracy"],
        "resource_limit",
        r"stopped for printing more than 1048576 bytes to stdout \(the limit\)",
    )
    _assert_worker_healthy_and_next_graded(hostile, starter, tmp_path)
