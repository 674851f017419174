"""Supervising a started run and saying how it ended: the parent reads stdout, stderr and the result pipe with caps,
kills the whole process group on the wall-time deadline or an exceeded cap (bwrap's `--die-with-parent` then takes
the PID namespace down), reaps, and classifies the end as a `SandboxStatus` with a message in the student's terms.

Results come back only through the result pipe (grader/sandbox/protocol.py), as UTF-8 JSON with a size cap; what
the program prints is kept as evidence only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from grader.domain.status import SandboxStatus
from grader.sandbox import cgroups
from grader.sandbox.limits import SandboxLimits

log = logging.getLogger(__name__)

TAIL_BYTES = 4096

READ_CHUNK = 65536

MEMORY_MARKERS = (
    "MemoryError",
    "Cannot allocate memory",
    "can't allocate memory",
    "std::bad_alloc",
    "failed to map segment",
    "out of memory",
)

PROCESS_MARKERS = ("Resource temporarily unavailable", "can't start new thread", "BlockingIOError")

FILE_SIZE_MARKERS = ("File too large",)
"""Python ignores SIGXFSZ, so RLIMIT_FSIZE shows as EFBIG."""


@dataclass(frozen=True, slots=True)
class SandboxResult:
    """How one run ended. `message` is one line for the student; the tails are the child's own output."""

    status: SandboxStatus
    message: str
    exit_code: int | None
    """The program's exit status, 128 + N when killed by signal N, or None when the parent killed it."""
    payload: Any = None
    """The JSON the program wrote to the result pipe, or None (nothing written, invalid, or over the cap)."""
    payload_error: str | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    insecure: bool = False
    isolation: str = "bubblewrap"
    """"bubblewrap", or "process": a plain child process with RLIMITs only (see `isolation_here`)."""
    start: str = "cold"
    """"cold": a fresh program started for the run; "warm": a child forked from the warm sandbox's server."""

    def evidence(self) -> dict[str, Any]:
        """JSON-ready facts about the run (no payload), for results and logs."""
        return {
            "status": str(self.status),
            "exit_code": self.exit_code,
            "wall_seconds": round(self.wall_seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "stderr_tail": self.stderr_tail[-1000:],
            "insecure_dev_mode": self.insecure,
            "isolation": self.isolation,
            "start": self.start,
        }


@dataclass(slots=True)
class Capture:
    """One pipe's bytes: everything up to `cap` (result) or only a tail (stdout, stderr), and the total."""

    cap: int
    keep_all: bool = False
    total: int = 0
    data: bytearray = field(default_factory=bytearray)

    def add(self, chunk: bytes) -> bool:
        """Keep `chunk`; False once more than `cap` bytes arrived."""
        self.total += len(chunk)
        self.data += chunk
        if not self.keep_all and len(self.data) > TAIL_BYTES:
            del self.data[: len(self.data) - TAIL_BYTES]
        return self.total <= self.cap

    def text(self) -> str:
        return bytes(self.data).decode("utf-8", errors="replace")


@dataclass(slots=True)
class Outcome:
    stdout: Capture
    stderr: Capture
    result: Capture
    stopped_for: str | None
    """Why the parent killed the run: "wall", "stdout", "stderr" or "result"; None when it exited by itself."""
    wait_status: int | None
    wall_seconds: float
    cpu_seconds: float


def supervise(
    process: subprocess.Popen[bytes], result_fd: int, limits: SandboxLimits, group: cgroups.Cgroup | None
) -> Outcome:
    started = time.monotonic()
    deadline = started + limits.wall_seconds
    assert process.stdout is not None and process.stderr is not None
    captures = {
        process.stdout.fileno(): ("stdout", Capture(limits.max_output_bytes)),
        process.stderr.fileno(): ("stderr", Capture(limits.max_output_bytes)),
        result_fd: ("result", Capture(limits.max_result_bytes, keep_all=True)),
    }
    stopped_for = read_all(captures, deadline)
    waited = None if stopped_for else _wait(process.pid, deadline)
    if waited is None:
        stopped_for = stopped_for or "wall"
        _kill(process, group)
        _wait(process.pid, None)
    process.returncode = os.waitstatus_to_exitcode(waited[0]) if waited is not None else -signal.SIGKILL
    process.stdout.close()
    process.stderr.close()
    return Outcome(
        *(capture for _, capture in captures.values()),
        stopped_for=stopped_for,
        wait_status=waited[0] if waited is not None else None,
        wall_seconds=time.monotonic() - started,
        # bwrap's rusage: only what it reaped itself (its monitor may exit before reaping the sandbox's init).
        cpu_seconds=(waited[1].ru_utime + waited[1].ru_stime) if waited is not None else 0.0,
    )


def read_all(captures: dict[int, tuple[str, Capture]], deadline: float) -> str | None:
    """Read every pipe until all are closed; the reason to stop early, if any."""
    with selectors.DefaultSelector() as selector:
        for fd in captures:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "wall"
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, READ_CHUNK)
                name, capture = captures[key.fd]
                if not chunk:
                    selector.unregister(key.fd)
                elif not capture.add(chunk):
                    return name
    return None


def _wait(pid: int, deadline: float | None) -> tuple[int, resource.struct_rusage] | None:
    """(wait status, rusage) once `pid` exits (blocking when `deadline` is None), or None at the deadline."""
    while True:
        try:
            found, status, usage = os.wait4(pid, 0 if deadline is None else os.WNOHANG)
        except ChildProcessError:
            return None
        if found:
            return status, usage
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


def _kill(process: subprocess.Popen[bytes], group: cgroups.Cgroup | None) -> None:
    """SIGKILL bwrap's process group; with --die-with-parent the sandbox's PID namespace goes with it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if group is not None:
        group.kill_all()


def result_of(
    outcome: Outcome,
    limits: SandboxLimits,
    group: cgroups.Cgroup | None,
    *,
    insecure: bool,
    isolation: str = "bubblewrap",
    start: str = "cold",
) -> SandboxResult:
    status, message = _classify(outcome, limits, group)
    outcome.cpu_seconds = _cpu_seconds(outcome, group)
    payload, payload_error = _parse_payload(outcome.result) if outcome.stopped_for != "result" else (None, None)
    exit_code = None
    if outcome.wait_status is not None:
        code = os.waitstatus_to_exitcode(outcome.wait_status)
        exit_code = 128 - code if code < 0 else code
    return SandboxResult(
        status=status,
        message=message,
        exit_code=exit_code,
        payload=payload,
        payload_error=payload_error,
        stdout_tail=outcome.stdout.text(),
        stderr_tail=outcome.stderr.text(),
        wall_seconds=outcome.wall_seconds,
        cpu_seconds=outcome.cpu_seconds,
        insecure=insecure,
        isolation=isolation,
        start=start,
    )


def _classify(outcome: Outcome, limits: SandboxLimits, group: cgroups.Cgroup | None) -> tuple[SandboxStatus, str]:
    stopped = _stopped_message(outcome.stopped_for, limits)
    if stopped is not None:
        return stopped
    assert outcome.wait_status is not None
    code = os.waitstatus_to_exitcode(outcome.wait_status)
    code = 128 - code if code < 0 else code  # killed directly, or bwrap reporting its child's signal as 128 + N
    stderr = outcome.stderr.text()
    if group is not None and group.oom_killed():
        return SandboxStatus.MEMORY_LIMIT, _memory_message(limits)
    if code == 0:
        return SandboxStatus.OK, "finished"
    cpu = _cpu_seconds(outcome, group)
    if code == 128 + signal.SIGXCPU or (code == 128 + signal.SIGKILL and cpu >= 0.95 * limits.cpu_seconds):
        return SandboxStatus.TIMED_OUT, f"stopped after using {limits.cpu_seconds} s of CPU time (the limit)"
    if code == 128 + signal.SIGXFSZ or any(marker in stderr for marker in FILE_SIZE_MARKERS):
        return SandboxStatus.RESOURCE_LIMIT, (
            f"stopped for writing a file over {limits.max_file_bytes} bytes (the limit)" + _last_line(stderr)
        )
    if any(marker in stderr for marker in MEMORY_MARKERS):
        return SandboxStatus.MEMORY_LIMIT, _memory_message(limits) + _last_line(stderr)
    if (group is not None and group.fork_refused()) or any(marker in stderr for marker in PROCESS_MARKERS):
        return SandboxStatus.RESOURCE_LIMIT, (
            f"tried to start more than {limits.max_processes} processes or threads (the limit)" + _last_line(stderr)
        )
    return SandboxStatus.CRASHED, _exit_text(code) + _last_line(stderr)


def _stopped_message(stopped_for: str | None, limits: SandboxLimits) -> tuple[SandboxStatus, str] | None:
    if stopped_for == "wall":
        return SandboxStatus.TIMED_OUT, f"stopped after {limits.wall_seconds:g} s of wall-clock time (the limit)"
    if stopped_for in ("stdout", "stderr"):
        return SandboxStatus.RESOURCE_LIMIT, (
            f"stopped for printing more than {limits.max_output_bytes} bytes to {stopped_for} (the limit)"
        )
    if stopped_for == "result":
        return SandboxStatus.RESOURCE_LIMIT, f"the result was larger than {limits.max_result_bytes} bytes (the limit)"
    return None


def _cpu_seconds(outcome: Outcome, group: cgroups.Cgroup | None) -> float:
    measured = group.cpu_seconds() if group is not None else None
    return measured if measured is not None else outcome.cpu_seconds


def _memory_message(limits: SandboxLimits) -> str:
    return f"ran out of memory (the limit is {limits.memory_bytes / 2**30:.1f} GiB)"


def _exit_text(code: int) -> str:
    if code > 128 and code - 128 in signal.valid_signals():
        return f"killed by signal {signal.Signals(code - 128).name}"
    return f"exited with status {code}"


def _last_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return f"; last error output: {lines[-1][:300]}" if lines else ""


def _parse_payload(capture: Capture) -> tuple[Any, str | None]:
    if not capture.data:
        return None, "nothing was written to the result pipe"
    try:
        return json.loads(bytes(capture.data).decode("utf-8")), None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return None, f"the result pipe did not hold valid JSON ({type(exc).__name__})"
