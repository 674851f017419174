"""The warm sandbox: one pre-imported server, a fresh isolated child per run. Each canary below is a hostile run;
none of them may reach the server, another run, the network or anything that outlives it."""

from __future__ import annotations

import json
import os
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from grader.sandbox import SandboxLimits, SandboxResult, SandboxStatus, bwrap, process
from grader.sandbox.bwrap import Bind
from grader.sandbox.warm import INPUT_DIR, WarmServer, WarmUnavailable
from tests.sandbox.conftest import FAST, HEAP_FAULTS

pytestmark = pytest.mark.usefixtures("sandbox")

CANARY_TARGET = "/tmp/canary-lib"
FRESH_TMP = {"input", "canary-lib"} | {
    b.target.split("/")[2] for b in bwrap.python_binds() if b.target.startswith("/tmp/")
}
"""What a run's /tmp holds: its inputs and the mount points of binds that lie under /tmp."""

CANARY = """
import ctypes, json, os, signal, socket, subprocess, sys, time

def reply(value):
    os.write(int(os.environ["GRADER_RESULT_FD"]), json.dumps(value).encode())

def main(argv):
    job = json.loads(open(argv[1]).read())
    action = job["action"]
    if action == "echo":
        reply({"pid": os.getpid(), "inputs": sorted(os.listdir("/tmp/input")), "data": open(argv[1]).read()})
    elif action == "look":
        pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        tmp = sorted(os.listdir("/tmp"))
        try:
            socket.create_connection(("127.0.0.1", 6379), timeout=2)
            network = "connected"
        except OSError as exc:
            network = type(exc).__name__
        libc = ctypes.CDLL(None, use_errno=True)
        outcomes = {}
        for name, call in [
            ("setuid", lambda: os.setuid(1)),
            ("unshare_user", lambda: libc.unshare(0x10000000) == 0 or 1 / 0),
            ("unmount_proc", lambda: libc.umount2(b"/proc", 2) == 0 or 1 / 0),
            ("mount_tmpfs", lambda: libc.mount(b"t", b"/usr", b"tmpfs", 0, None) == 0 or 1 / 0),
            ("write_usr", lambda: open("/usr/canary", "w")),
            ("write_canary", lambda: open("/tmp/canary-lib/canary.py", "a")),
        ]:
            try:
                call()
                outcomes[name] = "allowed"
            except BaseException:
                outcomes[name] = "refused"
        reply({"pids": pids, "tmp": tmp, "network": network, "outcomes": outcomes, "uid": os.getuid()})
    elif action == "plant":
        open("/tmp/planted", "w").write("from an earlier run")
        subprocess.Popen(["sleep", "300"], start_new_session=True)
        pid = os.fork()
        if pid == 0:
            time.sleep(300)
        reply({"planted": True})
    elif action == "kill_everything":
        for sig in (signal.SIGKILL,):
            try:
                os.kill(-1, sig)
            except OSError:
                pass
        reply({"killed": "tried"})
    elif action == "lazy":
        import lazy_canary  # not imported by the server: read from its bind under /tmp in the run
        reply({"seen": lazy_canary.SEEN})
    elif action == "heap":
        reply({"faults": heap_faults()})
    elif action == "hang":
        time.sleep(600)
    elif action == "memory":
        blocks = []
        while True:
            blocks.append(bytearray(64 << 20))
    elif action == "crash":
        raise RuntimeError("the canary's own error")
    return 0
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[WarmServer]:
    folder = tmp_path / "canary"
    folder.mkdir()
    (folder / "canary.py").write_text(textwrap.dedent(CANARY) + HEAP_FAULTS)
    os.chmod(tmp_path, 0o755)
    (folder / "lazy_canary.py").write_text("SEEN = 'imported in the run'\n")
    # Under /tmp on purpose: a run's private /tmp must not hide it (a CI clone keeps Python and the code there).
    warm = WarmServer(["canary"], [Bind(folder, CANARY_TARGET)], {"PYTHONPATH": CANARY_TARGET})
    yield warm
    warm.close()


def run(server: WarmServer, action: str, limits: SandboxLimits = FAST, **extra: Any) -> SandboxResult:
    job = json.dumps({"action": action, **extra}).encode()
    return server.run("canary", ["canary", f"{INPUT_DIR}/job.json"], {"job.json": job}, limits)


def test_a_run_gets_its_own_inputs_and_its_reply_comes_back_warm(server: WarmServer) -> None:
    first = run(server, "echo", secret="first")
    second = run(server, "echo", secret="second")
    assert first.status is SandboxStatus.OK and first.start == "warm", first
    assert first.payload["pid"] == 1  # PID 1 of its own namespace
    assert first.payload["inputs"] == ["job.json"] and '"secret": "first"' in first.payload["data"]
    assert '"secret": "second"' in second.payload["data"] and "first" not in second.payload["data"]
    assert server.pid is not None and first.evidence()["start"] == "warm"


def test_code_under_tmp_stays_importable_in_a_runs_private_tmp(server: WarmServer) -> None:
    result = run(server, "lazy")
    assert (result.status, result.payload) == (SandboxStatus.OK, {"seen": "imported in the run"}), result


def test_a_run_sees_no_other_process_no_network_and_cannot_regain_privileges(server: WarmServer) -> None:
    result = run(server, "look")
    assert result.status is SandboxStatus.OK, result
    found = result.payload
    assert found["pids"] == [1], found  # not the server, not the keeper, not another run
    assert found["network"] != "connected"
    assert set(found["tmp"]) == FRESH_TMP
    assert set(found["outcomes"].values()) == {"refused"}, found


@pytest.mark.skipif(os.geteuid() != 0, reason="counts the server uid's processes: its own only when drawn as root")
def test_nothing_a_run_starts_or_writes_outlives_it(server: WarmServer) -> None:
    run(server, "echo")
    idle = _server_tasks(server)  # the server's own (a keeper that just ended may still be counted: never more)
    planted = run(server, "plant")  # two processes sleeping for 5 minutes, one in a session of its own
    assert planted.status is SandboxStatus.OK, planted
    deadline = time.monotonic() + 5
    while len(_server_tasks(server)) > len(idle) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_server_tasks(server)) <= len(idle), (idle, _server_tasks(server))  # they died with the run
    assert set(run(server, "look").payload["tmp"]) == FRESH_TMP  # nothing planted survives


def test_a_run_that_kills_everything_it_can_name_kills_only_itself(server: WarmServer) -> None:
    run(server, "echo")
    pid = server.pid
    assert pid is not None
    run(server, "kill_everything")
    after = run(server, "echo")
    assert after.status is SandboxStatus.OK and server.pid == pid  # the same server still serves


def test_limits_and_crashes_end_in_their_statuses_and_the_server_serves_on(server: WarmServer) -> None:
    from dataclasses import replace

    hang = run(server, "hang", limits=replace(FAST, wall_seconds=2))
    assert hang.status is SandboxStatus.TIMED_OUT, hang
    memory = run(server, "memory")
    assert memory.status is SandboxStatus.MEMORY_LIMIT, memory
    crash = run(server, "crash")
    assert crash.status is SandboxStatus.CRASHED and "the canary's own error" in crash.stderr_tail, crash
    assert run(server, "echo").status is SandboxStatus.OK


def test_a_run_keeps_the_memory_it_freed_for_its_next_batch(server: WarmServer) -> None:
    """glibc's defaults hand freed activations back to the kernel after every batch and fault them in again (a
    sandboxed evaluation ran 1.3-1.5x slower than in a long-lived process); the runs' malloc settings keep them."""
    result = run(server, "heap")
    assert result.status is SandboxStatus.OK, result
    first, *later = result.payload["faults"]
    assert first > 10_000 and max(later) < first // 10, result.payload


def _server_tasks(server: WarmServer) -> list[tuple[int, int, int]]:
    """(pid, threads, parent) of every process of the server's uid (its runs have it too)."""
    uid = server.uid if server.uid is not None else os.getuid()
    return process.tasks_by_real_uid(uid)


def test_a_server_that_cannot_start_says_why_once_and_runs_start_cold_after(tmp_path: Path) -> None:
    broken = WarmServer(["no_such_module_anywhere"], [], {})
    try:
        with pytest.raises(WarmUnavailable, match="no_such_module_anywhere"):
            broken.run("no_such_module_anywhere", ["x"], {}, FAST)
        assert broken.pid is None
        with pytest.raises(WarmUnavailable, match="no_such_module_anywhere"):  # at once: no second start
            broken.run("no_such_module_anywhere", ["x"], {}, FAST)
        assert broken.pid is None
    finally:
        broken.close()
