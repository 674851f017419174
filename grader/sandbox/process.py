"""The raw system calls of starting a sandboxed run: RLIMITs, a uid of the run's own, a private mount namespace for
sources an unprivileged user cannot reach, joining the run's cgroup, and reaping everything the run left.

How the child is started (preexec_fn, run as the forked child before it execs bwrap):
1. join the run's cgroup, when there is one (root only);
2. when a bind source is not reachable by an unprivileged user (e.g. Python under /root, mode 0700): enter a
   private mount namespace and bind it into the run's staging folder, which bwrap then binds onwards;
3. set the RLIMITs; 4. drop to a uid of the run's own (root only), so RLIMIT_NPROC counts only this run's
   processes and threads (root ignores RLIMIT_NPROC) and bwrap builds an unprivileged user namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from grader.errors import InfrastructureError
from grader.sandbox import bwrap, cgroups
from grader.sandbox.limits import SandboxLimits

log = logging.getLogger(__name__)

UID_FIRST = 1_900_000_000

UID_COUNT = 100_000
"""Sandbox uids are drawn from [UID_FIRST, UID_FIRST + UID_COUNT): no account has them, runs rarely share one."""

CPU_GRACE_S = 5
"""Between SIGXCPU (soft CPU limit, a clear signal of the cause) and SIGKILL (hard limit)."""

EXIT_WAIT_S = 5.0

_CLONE_NEWNS = 0x00020000

_PR_SET_CHILD_SUBREAPER = 36

_SUBREAPER_LOCK = threading.Lock()

_subreaper_runs = 0

_MS_BIND, _MS_REC, _MS_PRIVATE = 0x1000, 0x4000, 0x40000


def sandbox_uid() -> int | None:
    """A uid of this run's own when running as root; None (keep the current uid) otherwise."""
    return UID_FIRST + secrets.randbelow(UID_COUNT) if os.geteuid() == 0 else None


def rlimits(
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
def subreaper() -> Iterator[None]:
    """Make this process the child subreaper while runs are in flight.

    bwrap's monitor can exit before reaping the sandbox's init; that orphan would then wait for the host's
    init (seconds on some machines). As subreaper this process adopts it and `await_exit` reaps it at once,
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


def await_exit(uid: int) -> None:
    """Return once no process of the run's uid is left, zombies included: a finished run leaves nothing."""
    deadline = time.monotonic() + EXIT_WAIT_S
    while (left := tasks_by_real_uid(uid)) and time.monotonic() < deadline:
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
    return sum(threads for _, threads, _ in tasks_by_real_uid(os.getuid()))


def tasks_by_real_uid(uid: int) -> list[tuple[int, int, int]]:
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


def child_setup(
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


def start(
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
