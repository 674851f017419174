"""Running one command under bubblewrap with resource limits, and turning how it ended into a typed result.

How the child is started (preexec_fn, run as the forked child before it execs bwrap):
1. join the run's cgroup, when there is one (root only);
2. when a bind source is not reachable by an unprivileged user (e.g. Python under /root, mode 0700): enter a
   private mount namespace and bind it into the run's staging folder, which bwrap then binds onwards;
3. set the RLIMITs; 4. drop to a uid of the run's own (root only), so RLIMIT_NPROC counts only this run's
   processes and threads (root ignores RLIMIT_NPROC) and bwrap builds an unprivileged user namespace.
The parent then reads stdout, stderr and the result pipe with caps, kills the whole process group on the wall-time
deadline or an exceeded cap (bwrap's `--die-with-parent` then takes the PID namespace down), and reaps.

Results come back only through the result pipe (fd number in `$GRADER_RESULT_FD` inside the sandbox), as
UTF-8 JSON with a size cap; what the program prints is kept as evidence only.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import logging
import os
import resource
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.domain.status import SandboxStatus
from grader.errors import InfrastructureError
from grader.sandbox import bwrap, cgroups
from grader.sandbox.bwrap import Bind
from grader.sandbox.leftovers import owned_prefix
from grader.sandbox.limits import SandboxLimits

log = logging.getLogger(__name__)

INSECURE_ENV = "GRADER_SANDBOX_INSECURE_DEV_MODE"
RESULT_FD_ENV = "GRADER_RESULT_FD"
UID_FIRST = 1_900_000_000
UID_COUNT = 100_000
"""Sandbox uids are drawn from [UID_FIRST, UID_FIRST + UID_COUNT): no account has them, runs rarely share one."""
CPU_GRACE_S = 5
"""Between SIGXCPU (soft CPU limit, a clear signal of the cause) and SIGKILL (hard limit)."""
EXIT_WAIT_S = 5.0
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

_CLONE_NEWNS = 0x00020000
_PR_SET_CHILD_SUBREAPER = 36
_SUBREAPER_LOCK = threading.Lock()
_subreaper_runs = 0
_MS_BIND, _MS_REC, _MS_PRIVATE = 0x1000, 0x4000, 0x40000


class SandboxUnavailable(InfrastructureError):
    """The sandbox cannot run here (bubblewrap missing, user namespaces disabled): student code is not run."""


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
        }


def insecure_dev_mode() -> bool:
    """`GRADER_SANDBOX_INSECURE_DEV_MODE=1`: run student code WITHOUT isolation (development only)."""
    return os.environ.get(INSECURE_ENV, "") == "1"


def isolation_here(*, process_fallback: bool = False) -> str:
    """How a run started now is isolated: "bubblewrap", or "process" in insecure development mode or, with
    `process_fallback`, where no sandbox can be made. Raises SandboxUnavailable when neither applies."""
    if insecure_dev_mode():
        return "process"
    reason = sandbox_available()
    if reason is None:
        return "bubblewrap"
    if process_fallback:
        return "process"
    raise SandboxUnavailable(reason)


def path_inside(bind: Bind, isolation: str | None = None) -> str:
    """Where the program sees `bind`: its target in the sandbox, its source when run as a plain process."""
    isolation = isolation or ("process" if insecure_dev_mode() else "bubblewrap")
    return bind.target if isolation == "bubblewrap" else str(bind.source)


@contextlib.contextmanager
def run_folder(prefix: str = "grader-sandbox-") -> Iterator[Path]:
    """A fresh folder the sandbox user can traverse (0711: no listing) but not write; removed afterwards (its name
    carries this process's pid, so that a killed run's folder is found and removed later: grader.sandbox.leftovers)."""
    folder = Path(tempfile.mkdtemp(prefix=owned_prefix(prefix)))
    try:
        os.chmod(folder, 0o711)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sandbox_available() -> str | None:
    """None when sandboxed runs work here, else the reason (bwrap missing, namespaces refused...)."""
    return _probe()


@functools.cache
def _probe() -> str | None:
    found = bwrap.find_bubblewrap()
    if found is None:
        return "bubblewrap (bwrap) is not installed; install the 'bubblewrap' package to evaluate student code"
    limits = SandboxLimits(  # the grader's own one-line probe
        wall_seconds=30, cpu_seconds=30, memory_bytes=1 << 30, max_processes=16, max_output_bytes=1 << 16, threads=1
    )
    try:
        result = _run_bwrap(found, [sys.executable, "-S", "-c", "print('sandbox-ok')"], (), limits, False, {})
    except (InfrastructureError, OSError) as exc:
        return f"bubblewrap cannot start a sandbox here: {exc}"
    if result.status is not SandboxStatus.OK or "sandbox-ok" not in result.stdout_tail:
        detail = result.stderr_tail.strip().splitlines()[-1:] or [result.message]
        return f"bubblewrap ({found.version}) cannot start a sandbox here: {detail[0][:300]}"
    return None


def run_sandboxed(
    command: Sequence[str],
    *,
    binds: Sequence[Bind] = (),
    limits: SandboxLimits,
    gpu: bool = False,
    env: Mapping[str, str] | None = None,
    process_fallback: bool = False,
) -> SandboxResult:
    """Run `command` in a fresh sandbox; `binds` are shown read-only. Raises SandboxUnavailable when no sandbox
    can be made, InfrastructureError when the start itself fails.

    Without a sandbox the command runs as a plain child process with the RLIMITs (`isolation: "process"`) in
    insecure development mode, or when `process_fallback` is set: for the grader's own code facing untrusted
    files (reference-mode checkpoint loading), never for student code."""
    if insecure_dev_mode():
        log.warning(
            "!!! %s=1: running student code WITHOUT a sandbox (no isolation of files, network or processes). "
            "Development only; never on a server that holds real submissions. !!!",
            INSECURE_ENV,
        )
        return _run_plain_process(command, limits, gpu, env or {})
    if isolation_here(process_fallback=process_fallback) == "process":
        _warn_process_fallback()
        return _run_plain_process(command, limits, gpu, env or {}, insecure=False)
    found = bwrap.find_bubblewrap()
    assert found is not None  # sandbox_available checked it
    return _run_bwrap(found, command, binds, limits, gpu, env or {})


def _run_bwrap(
    found: bwrap.Bubblewrap,
    command: Sequence[str],
    binds: Sequence[Bind],
    limits: SandboxLimits,
    gpu: bool,
    extra_env: Mapping[str, str],
) -> SandboxResult:
    all_binds = [*bwrap.python_binds(), *binds]
    group = cgroups.create(pids_max=limits.max_processes + 4, memory_max=limits.memory_bytes)
    read_fd, write_fd = os.pipe()
    try:
        with run_folder("grader-sandbox-stage-") as stage_root:
            staged = _stage(all_binds, stage_root)
            env = bwrap.sandbox_env(limits, gpu=gpu, extra={**extra_env, RESULT_FD_ENV: str(write_fd)})
            argv = bwrap.command_line(found, command, binds=all_binds, sources=staged, limits=limits, env=env, gpu=gpu)
            uid = _sandbox_uid()
            preexec = _child_setup(group, staged, _rlimits(limits, gpu=gpu, cgroup=group, uid=uid), uid)
            with _subreaper():
                process = _start(argv, write_fd, preexec)
                os.close(write_fd)
                write_fd = -1
                outcome = _supervise(process, read_fd, limits, group)
                if uid is not None:
                    _await_exit(uid)
            return _result(outcome, limits, group, insecure=False)
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)
        if group is not None:
            group.remove()


@functools.cache
def _warn_process_fallback() -> None:
    log.warning(
        "%s; checkpoints are loaded in plain child processes with resource limits but without namespaces",
        sandbox_available(),
    )


def _run_plain_process(
    command: Sequence[str], limits: SandboxLimits, gpu: bool, extra_env: Mapping[str, str], *, insecure: bool = True
) -> SandboxResult:
    read_fd, write_fd = os.pipe()
    try:
        with run_folder("grader-insecure-") as home:
            env = bwrap.sandbox_env(limits, gpu=gpu, extra={**extra_env, RESULT_FD_ENV: str(write_fd)})
            env.update(HOME=str(home), TMPDIR=str(home))
            preexec = _child_setup(None, {}, _rlimits(limits, gpu=gpu, cgroup=None, uid=None), None)
            process = _start(list(command), write_fd, preexec, env=env, cwd=str(home))
            os.close(write_fd)
            write_fd = -1
            outcome = _supervise(process, read_fd, limits, None)
            return _result(outcome, limits, None, insecure=insecure, isolation="process")
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)


def _sandbox_uid() -> int | None:
    """A uid of this run's own when running as root; None (keep the current uid) otherwise."""
    return UID_FIRST + secrets.randbelow(UID_COUNT) if os.geteuid() == 0 else None


def _stage(binds: Sequence[Bind], stage_root: Path) -> dict[Path, Path]:
    """Mount points in `stage_root` for sources the sandbox user cannot reach; filled in by the child."""
    staged: dict[Path, Path] = {}
    for number, source in enumerate(dict.fromkeys(b.source for b in binds)):
        if bwrap.reachable_by_others(source):
            continue
        if os.geteuid() != 0:
            raise SandboxUnavailable(f"{source} is not readable by other users, so the sandbox cannot show it")
        point = stage_root / str(number)
        if source.is_dir():
            point.mkdir(mode=0o755)
        else:
            point.touch(mode=0o644)
        staged[source] = point
    return staged


def _rlimits(
    limits: SandboxLimits, *, gpu: bool, cgroup: cgroups.Cgroup | None, uid: int | None
) -> list[tuple[int, int, int]]:
    """(resource, soft, hard) for the child; CPU time gets SIGXCPU at the limit and SIGKILL 5 s later."""
    processes = limits.max_processes + 4 + (0 if uid is not None else _own_tasks())
    rlimits = [
        (resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + CPU_GRACE_S),
        (resource.RLIMIT_FSIZE, limits.max_file_bytes, limits.max_file_bytes),
        (resource.RLIMIT_NOFILE, limits.max_open_files, limits.max_open_files),
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_NPROC, processes, processes),
    ]
    if not gpu:
        rlimits.append((resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes))
    elif cgroup is None or not cgroup.limits_memory:
        # CUDA maps huge address ranges, so no RLIMIT_AS; RLIMIT_DATA still bounds what it can fill.
        rlimits.append((resource.RLIMIT_DATA, limits.memory_bytes, limits.memory_bytes))
    return rlimits


@contextlib.contextmanager
def _subreaper() -> Iterator[None]:
    """Make this process the child subreaper while runs are in flight.

    bwrap's monitor can exit before reaping the sandbox's init; that orphan would then wait for the host's
    init (seconds on some machines). As subreaper this process adopts it and `_await_exit` reaps it at once,
    choosing by the run's uid so no other child's exit status is taken.
    """
    global _subreaper_runs
    with _SUBREAPER_LOCK:
        if _subreaper_runs == 0:
            _prctl(_PR_SET_CHILD_SUBREAPER, 1)
        _subreaper_runs += 1
    try:
        yield
    finally:
        with _SUBREAPER_LOCK:
            _subreaper_runs -= 1
            if _subreaper_runs == 0:
                _prctl(_PR_SET_CHILD_SUBREAPER, 0)


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        log.info("prctl(%d, %d) failed: %s", option, value, os.strerror(ctypes.get_errno()))


def _await_exit(uid: int) -> None:
    """Return once no process of the run's uid is left, zombies included: a finished run leaves nothing."""
    deadline = time.monotonic() + EXIT_WAIT_S
    while (left := _tasks_by_real_uid(uid)) and time.monotonic() < deadline:
        for pid, _, parent in left:
            with contextlib.suppress(ChildProcessError, ProcessLookupError, PermissionError):
                if parent == os.getpid():
                    os.waitpid(pid, os.WNOHANG)  # adopted as subreaper: reap it
                else:
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.002)
    if left:
        log.warning("sandbox uid %d still has processes %s after %.0f s", uid, left, EXIT_WAIT_S)


def _own_tasks() -> int:
    """Processes and threads of this uid now: RLIMIT_NPROC counts them too when the uid cannot change."""
    return sum(threads for _, threads, _ in _tasks_by_real_uid(os.getuid()))


def _tasks_by_real_uid(uid: int) -> list[tuple[int, int, int]]:
    """(pid, threads, parent pid) of the processes whose real uid is `uid` (from /proc/PID/status: zombies too)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                status = Path(entry.path, "status").read_text()
                if int(status.split("\nUid:")[1].split()[0]) == uid:
                    threads = status.split("\nThreads:")
                    parent = int(status.split("\nPPid:")[1].split()[0])
                    found.append((int(entry.name), int(threads[1].split()[0]) if len(threads) > 1 else 1, parent))
    return found


def _child_setup(
    group: cgroups.Cgroup | None, staged: Mapping[Path, Path], rlimits: list[tuple[int, int, int]], uid: int | None
) -> Callable[[], None]:
    """The preexec_fn: everything is computed beforehand, the child only makes system calls."""
    procs_files = group.procs_files if group is not None else []
    mounts = [(str(source).encode(), str(point).encode()) for source, point in staged.items()]
    libc = ctypes.CDLL(None, use_errno=True) if mounts else None

    def setup() -> None:
        for procs in procs_files:
            with open(procs, "w") as handle:
                handle.write(str(os.getpid()))
        if libc is not None:
            _private_mounts(libc, mounts)
        for kind, soft, hard in rlimits:
            resource.setrlimit(kind, (soft, hard))
        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)

    return setup


def _private_mounts(libc: ctypes.CDLL, mounts: list[tuple[bytes, bytes]]) -> None:
    """Bind the unreachable sources into the staging folder, in a mount namespace only this child has."""
    if libc.unshare(_CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "making / private")
    for source, point in mounts:
        if libc.mount(source, point, None, _MS_BIND | _MS_REC, None) != 0:
            raise OSError(ctypes.get_errno(), f"bind-mounting {source.decode()}")


def _start(
    argv: list[str],
    result_fd: int,
    preexec: Callable[[], None],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(result_fd,),
            close_fds=True,
            # bwrap's own environment (readable in the sandbox as /proc/1/environ) holds nothing of ours.
            env=dict(env) if env is not None else {"PATH": bwrap.SANDBOX_PATH},
            cwd=cwd or "/",
            start_new_session=True,
            preexec_fn=preexec,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise InfrastructureError(f"cannot start the sandbox: {exc}") from exc


@dataclass(slots=True)
class _Capture:
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
class _Outcome:
    stdout: _Capture
    stderr: _Capture
    result: _Capture
    stopped_for: str | None
    """Why the parent killed the run: "wall", "stdout", "stderr" or "result"; None when it exited by itself."""
    wait_status: int | None
    wall_seconds: float
    cpu_seconds: float


def _supervise(
    process: subprocess.Popen[bytes], result_fd: int, limits: SandboxLimits, group: cgroups.Cgroup | None
) -> _Outcome:
    started = time.monotonic()
    deadline = started + limits.wall_seconds
    assert process.stdout is not None and process.stderr is not None
    captures = {
        process.stdout.fileno(): ("stdout", _Capture(limits.max_output_bytes)),
        process.stderr.fileno(): ("stderr", _Capture(limits.max_output_bytes)),
        result_fd: ("result", _Capture(limits.max_result_bytes, keep_all=True)),
    }
    stopped_for = _read_all(captures, deadline)
    waited = None if stopped_for else _wait(process.pid, deadline)
    if waited is None:
        stopped_for = stopped_for or "wall"
        _kill(process, group)
        _wait(process.pid, None)
    process.returncode = os.waitstatus_to_exitcode(waited[0]) if waited is not None else -signal.SIGKILL
    process.stdout.close()
    process.stderr.close()
    return _Outcome(
        *(capture for _, capture in captures.values()),
        stopped_for=stopped_for,
        wait_status=waited[0] if waited is not None else None,
        wall_seconds=time.monotonic() - started,
        # bwrap's rusage: only what it reaped itself (its monitor may exit before reaping the sandbox's init).
        cpu_seconds=(waited[1].ru_utime + waited[1].ru_stime) if waited is not None else 0.0,
    )


def _read_all(captures: dict[int, tuple[str, _Capture]], deadline: float) -> str | None:
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


def _result(
    outcome: _Outcome,
    limits: SandboxLimits,
    group: cgroups.Cgroup | None,
    *,
    insecure: bool,
    isolation: str = "bubblewrap",
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
    )


def _classify(outcome: _Outcome, limits: SandboxLimits, group: cgroups.Cgroup | None) -> tuple[SandboxStatus, str]:
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


def _cpu_seconds(outcome: _Outcome, group: cgroups.Cgroup | None) -> float:
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


def _parse_payload(capture: _Capture) -> tuple[Any, str | None]:
    if not capture.data:
        return None, "nothing was written to the result pipe"
    try:
        return json.loads(bytes(capture.data).decode("utf-8")), None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return None, f"the result pipe did not hold valid JSON ({type(exc).__name__})"
