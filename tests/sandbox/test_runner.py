"""The sandbox runner: each hostile program ends in its documented status, leaves nothing behind, and the next run
works. Plain Python programs (no torch), so every run takes well under a second unless it waits for a limit."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

from grader.sandbox import (
    Bind,
    SandboxLimits,
    SandboxStatus,
    SandboxUnavailable,
    bwrap,
    run_sandboxed,
    runner,
    supervise,
)
from tests.conftest import REPO_ROOT
from tests.sandbox.conftest import FAST, HEAP_FAULTS, OWN_SANDBOX_UIDS

pytestmark = pytest.mark.usefixtures("sandbox")


def python(code: str, limits: SandboxLimits = FAST, **kwargs: object) -> runner.SandboxResult:
    return run_sandboxed([sys.executable, "-S", "-c", code], limits=limits, **kwargs)  # type: ignore[arg-type]


def assert_next_run_works() -> None:
    result = python("import os; os.write(int(os.environ['GRADER_RESULT_FD']), b'[1, 2]')")
    assert (result.status, result.payload) == (SandboxStatus.OK, [1, 2])


def sandbox_processes() -> list[int]:
    """Processes of this test process's sandboxed runs still alive: running as a uid one of its runs was given, or
    bubblewrap processes it started. (Another test run on the machine may be sandboxing at the same time.)"""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        uid = int(status.split("\nUid:")[1].split()[0])
        parent = int(status.split("\nPPid:")[1].split()[0])
        bwrap_child = parent == os.getpid() and status.startswith("Name:\tbwrap")
        if uid in OWN_SANDBOX_UIDS or bwrap_child:
            found.append(int(entry.name))
    return found


def test_a_result_comes_back_through_the_pipe_and_the_environment_is_only_the_sandboxs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GRADER_DATABASE_URL", "postgresql://grader:s3cret-canary@db/grader")
    code = (
        "import os, json\n"
        "seen = {'env': dict(os.environ), 'init': open('/proc/1/environ').read(), 'uid': os.getuid(),\n"
        "        'root': sorted(os.listdir('/')), 'cwd': os.getcwd()}\n"
        "os.write(int(os.environ['GRADER_RESULT_FD']), json.dumps(seen).encode())\n"
    )
    result = python(code)
    assert result.status is SandboxStatus.OK, result.message
    seen = result.payload
    assert "s3cret-canary" not in json.dumps(seen)
    assert "GRADER_DATABASE_URL" not in seen["env"] and seen["env"]["HOME"] == "/tmp"
    assert seen["init"] == f"PATH={bwrap.SANDBOX_PATH}\x00"  # bwrap's own environment: nothing of ours
    assert seen["uid"] != 0 and seen["cwd"] == "/tmp"
    assert "home" not in seen["root"] and "var" not in seen["root"]


def test_a_run_keeps_the_memory_it_freed_for_its_next_batch() -> None:
    reply = "import json, os\nos.write(int(os.environ['GRADER_RESULT_FD']), json.dumps(heap_faults()).encode())\n"
    code = HEAP_FAULTS + reply
    result = python(code)
    assert result.status is SandboxStatus.OK, result.message
    first, *later = result.payload
    assert first > 10_000 and max(later) < first // 10, result.payload


def test_the_filesystem_is_read_only_except_a_private_tmp(tmp_path: Path) -> None:
    (tmp_path / "shown").mkdir(mode=0o755)
    (tmp_path / "shown" / "data.txt").write_text("visible")
    (tmp_path / "other-upload.py").write_text("SECRET = 'another student'")
    code = (
        "import os, json\n"
        "out = {}\n"
        f"for path in ['/sandbox/data/made.txt', '/usr/made.txt', '/made.txt', '/dev/shm/made', '/tmp/made.txt',\n"
        f"             {str(REPO_ROOT / 'made.txt')!r}]:\n"
        "    try:\n"
        "        open(path, 'w').write('x'); out[path] = 'written'\n"
        "    except OSError as e:\n"
        "        out[path] = type(e).__name__\n"
        "out['shown'] = open('/sandbox/data/data.txt').read()\n"
        f"for path in [{str(tmp_path / 'other-upload.py')!r}, {str(REPO_ROOT / 'pyproject.toml')!r}, '/etc/passwd']:\n"
        "    out[path] = os.path.exists(path)\n"
        "os.write(int(os.environ['GRADER_RESULT_FD']), json.dumps(out).encode())\n"
    )
    result = python(code, binds=[Bind(tmp_path / "shown", "/sandbox/data")])
    assert result.status is SandboxStatus.OK, result.message
    out = result.payload
    assert out.pop("/tmp/made.txt") == "written"
    assert out.pop("shown") == "visible"
    # A checkout under the host's /tmp (as in CI) lies inside the private tmpfs: a write there lands in the
    # sandbox's own /tmp, never on the host (asserted below), so only the host side is checked for it.
    if str(REPO_ROOT).startswith("/tmp/"):
        out.pop(str(REPO_ROOT / "made.txt"))
    assert all(value in ("OSError", "PermissionError", "FileNotFoundError", False) for value in out.values()), out
    assert not (tmp_path / "shown" / "made.txt").exists() and not (REPO_ROOT / "made.txt").exists()


def test_no_network_even_to_a_port_listening_on_the_host() -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        code = (
            "import socket, json, os\n"
            "out = {}\n"
            f"for port in (6379, 5432, {port}):\n"
            "    try:\n"
            "        socket.create_connection(('127.0.0.1', port), timeout=2); out[port] = 'connected'\n"
            "    except OSError as e:\n"
            "        out[port] = type(e).__name__\n"
            "try:\n"
            "    socket.create_connection(('1.1.1.1', 53), timeout=2); out['internet'] = 'connected'\n"
            "except OSError as e:\n"
            "    out['internet'] = type(e).__name__\n"
            "os.write(int(os.environ['GRADER_RESULT_FD']), json.dumps(out).encode())\n"
        )
        result = python(code)
        assert result.status is SandboxStatus.OK, result.message
        assert "connected" not in result.payload.values(), result.payload
        with pytest.raises(BlockingIOError):
            listener.accept()


FORK_BOMB = "import os, time\nwhile True:\n    if os.fork() == 0:\n        time.sleep(30)\n        os._exit(0)"
THREAD_BOMB = "import threading, time\nwhile True: threading.Thread(target=time.sleep, args=(30,), daemon=True).start()"
HUGE_RESULT = "import os\nfd = int(os.environ['GRADER_RESULT_FD'])\nwhile True: os.write(fd, b'[' * 65536)"


@pytest.mark.parametrize(
    ("code", "limits", "status", "message"),
    [
        pytest.param("while True: pass", replace(FAST, cpu_seconds=1), "timed_out", r"1 s of CPU time", id="spin"),
        pytest.param("import time; time.sleep(3600)", replace(FAST, wall_seconds=1.5), "timed_out", "wall", id="sleep"),
        pytest.param(
            "x = bytearray(100 * 2**30)", FAST, "memory_limit", r"out of memory \(the limit is 1\.0 GiB", id="100GB"
        ),
        pytest.param(
            "import sys\nfor _ in range(100): sys.stdout.write('x' * 2**20)",
            FAST,
            "resource_limit",
            r"printing more than 100000 bytes to stdout",
            id="print-100MB",
        ),
        pytest.param(FORK_BOMB, FAST, "resource_limit", r"more than 64 processes", id="fork-bomb"),
        pytest.param(THREAD_BOMB, FAST, "resource_limit", r"more than 64 processes", id="thread-bomb"),
        pytest.param(
            "open('/tmp/big', 'wb').write(b'x' * (100 * 2**20))",
            FAST,
            "resource_limit",
            r"writing a file over 67108864 bytes",
            id="big-file",
        ),
        pytest.param(
            "raise SystemExit('bye')", FAST, "crashed", r"exited with status 1; last error output: bye", id="exit"
        ),
        pytest.param(
            "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", FAST, "crashed", "signal SIGSEGV", id="segv"
        ),
        pytest.param(
            HUGE_RESULT,
            replace(FAST, max_result_bytes=1_000_000),
            "resource_limit",
            r"result was larger than 1000000 bytes",
            id="huge-result",
        ),
    ],
)
def test_hostile_programs_end_in_their_status_and_the_next_run_works(
    code: str, limits: SandboxLimits, status: str, message: str
) -> None:
    started = time.monotonic()
    result = python(code, limits)
    assert (result.status, result.payload) == (status, None), result.message
    assert re.search(message, result.message), result.message
    assert time.monotonic() - started < limits.wall_seconds + 3
    assert sandbox_processes() == []
    assert_next_run_works()


def test_a_fake_result_printed_to_stdout_is_not_a_result() -> None:
    result = python("print('{\"predictions\": [3, 3, 3]}')")
    assert result.status is SandboxStatus.OK
    assert result.payload is None and result.payload_error == "nothing was written to the result pipe"
    assert "predictions" in result.stdout_tail


def test_invalid_json_in_the_result_pipe_is_reported_not_parsed() -> None:
    deep = "import os; os.write(int(os.environ['GRADER_RESULT_FD']), b'[' * 100000 + b']' * 100000)"
    result = python(deep)
    assert result.payload is None and "not hold valid JSON" in (result.payload_error or "")


def test_fifty_runs_leave_no_processes_temp_folders_or_cgroups() -> None:
    temp = Path(tempfile.gettempdir())
    before = set(temp.glob(f"grader-*-{os.getpid()}-*"))
    for _ in range(50):
        result = run_sandboxed(["/bin/true"], limits=FAST)
        assert result.status is SandboxStatus.OK, result.message
    assert sandbox_processes() == []
    assert set(temp.glob(f"grader-*-{os.getpid()}-*")) == before  # run folders and cgroups carry their maker's pid
    assert list(Path("/sys/fs/cgroup").glob(f"*/**/grader-sandbox-{os.getpid()}-*")) == []


def test_the_wall_time_kill_takes_the_whole_sandbox_down() -> None:
    code = (
        "import os, time\nfor _ in range(5):\n    if os.fork() == 0:\n        os.setsid()\n        time.sleep(3600)\n"
    )
    result = python(code + "time.sleep(3600)", replace(FAST, wall_seconds=1))
    assert result.status is SandboxStatus.TIMED_OUT
    deadline = time.monotonic() + 2
    while sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox_processes() == []


def test_without_bubblewrap_student_code_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bwrap, "find_bubblewrap", lambda: None)
    runner._probe.cache_clear()
    try:
        assert "bubblewrap (bwrap) is not installed" in (runner.sandbox_available() or "")
        with pytest.raises(SandboxUnavailable, match="install the 'bubblewrap' package"):
            python("print(1)")
    finally:
        runner._probe.cache_clear()


def test_insecure_development_mode_runs_unsandboxed_and_warns_every_time(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(runner.INSECURE_ENV, "1")
    for _ in range(2):
        with caplog.at_level(logging.WARNING, logger="grader.sandbox.runner"):
            result = python("import os; os.write(int(os.environ['GRADER_RESULT_FD']), b'7')")
        assert (result.status, result.payload, result.insecure) == (SandboxStatus.OK, 7, True)
    assert sum("WITHOUT a sandbox" in record.message for record in caplog.records) == 2


def test_signals_are_named_in_messages() -> None:
    assert supervise._exit_text(128 + signal.SIGKILL) == "killed by signal SIGKILL"
    assert supervise._exit_text(3) == "exited with status 3"


def test_gpu_runs_bound_memory_without_an_address_space_limit() -> None:
    """CUDA needs a huge address space, so GPU runs get the cgroup's memory limit (RLIMIT_DATA without one)."""
    code = "import resource\nprint(resource.getrlimit(resource.RLIMIT_AS), flush=True)\nhoard = bytearray(3 * 2**30)"
    result = python(code, gpu=True)
    assert result.stdout_tail.startswith("(-1, -1)")
    assert result.status is SandboxStatus.MEMORY_LIMIT, result.message
