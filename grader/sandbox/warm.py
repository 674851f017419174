"""The warm sandbox: a long-lived server that has imported the grader's programs (and torch) once, and forks one
fresh, isolated child per run, so that a run no longer pays for starting Python and importing torch.

The server (`python -m grader.sandbox.warm MODULE...`) runs under bubblewrap like a cold run: no network, a
read-only view of only the system, Python and the grader's package (plus the binds given at start), as a uid of its
own. It runs only the grader's own code and never reads an upload: a run's inputs arrive as file descriptors and are
opened only by the run's child, after it is isolated. For each run:

1. the server forks a *keeper*, which enters new user, PID, mount, network, IPC and UTS namespaces (mapping only
   its own uid) and forks the run's child, then waits for it and reports how it ended;
2. the child is PID 1 of its own PID namespace, so it can name no other process (not the server, not the keeper,
   not another run), and everything it starts dies with it. Before it touches an input it mounts a fresh /proc
   (its namespace only) and a private, size-capped /tmp, forbids further user namespaces, sets the run's RLIMITs,
   drops every capability and sets no-new-privileges; then it copies its inputs into its /tmp and calls the
   program's `main(argv)` in-process (already imported: that is the saving).

The worker's process holds the reading ends of the run's result, stdout and stderr pipes and supervises them as for
a cold run (grader/sandbox/supervise.py): caps, the wall-time deadline (it then asks the server to kill the keeper,
whose death kills the child), and the classification of how the run ended. The keeper's report (wait status, CPU
time) comes on a pipe of its own. Where the warm path cannot work (no bubblewrap, no nested user namespaces, a GPU
run: a CUDA context does not survive fork) callers use the cold path; the result's `start` says which ran.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib
import json
import logging
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import grader
from grader.sandbox import bwrap, process, protocol, runner, supervise
from grader.sandbox.bwrap import Bind
from grader.sandbox.limits import SandboxLimits

log = logging.getLogger(__name__)

PACKAGE = Path(grader.__file__).resolve().parent
LIB_TARGET = "/sandbox/lib"
"""Where the server sees the grader's package."""
RESULT_FD = 3
"""The result pipe's number in a run's child (named by protocol.RESULT_FD_ENV)."""
MAX_MESSAGE = 1 << 16
MAX_FDS = 64
READY = b"ready"
INPUT_DIR = "/tmp/input"

_CLONE_NEWNS, _CLONE_NEWUTS, _CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
_CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT = 0x1, 0x2, 0x4, 0x8, 0x20
_MS_BIND, _MS_REC, _MS_PRIVATE = 0x1000, 0x4000, 0x40000
_PR_SET_PDEATHSIG, _PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS = 1, 24, 38
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
_CAP_LAST = 63
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


# ------------------------------------------------------------------------------------------------ the server


def serve(control: socket.socket, preload: Sequence[str]) -> None:
    """Import `preload`, say ready, then fork a keeper per run request until the control socket closes."""
    for name in preload:
        module = importlib.import_module(name)
        if callable(warm_up := getattr(module, "warm_up", None)):
            warm_up()  # the program's own preparation (the grader's code, no upload): shared by every fork
    libc = ctypes.CDLL(None, use_errno=True)
    keepers: set[int] = set()

    def reap(*_: object) -> None:  # a keeper's zombie is gone as soon as it ends (keepers are our only children)
        with contextlib.suppress(ChildProcessError):
            while (pid := os.waitpid(-1, os.WNOHANG)[0]) > 0:
                keepers.discard(pid)

    signal.signal(signal.SIGCHLD, reap)
    control.sendall(READY)
    while True:
        message, fds, _, _ = socket.recv_fds(control, MAX_MESSAGE, MAX_FDS)
        if not message:
            return  # the worker went away: so do we (bwrap's --die-with-parent ends what is left)
        request = json.loads(message)
        if request.get("kill"):
            for pid in keepers:  # at most one: the worker runs one at a time
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        else:
            keeper = os.fork()
            if keeper == 0:
                try:
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    control.close()
                    _keep(libc, request, fds)
                finally:
                    os._exit(70)
            keepers.add(keeper)
        for fd in fds:
            os.close(fd)


def _keep(libc: ctypes.CDLL, request: Mapping[str, Any], fds: list[int]) -> None:
    """The keeper: new namespaces, then the run's child; report how it ended on the report pipe."""
    result, stdout, stderr, report, *inputs = fds
    uid, gid = os.getuid(), os.getgid()
    flags = _CLONE_NEWUSER | _CLONE_NEWPID | _CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWIPC | _CLONE_NEWUTS
    if libc.unshare(flags) != 0:
        _report(report, {"error": f"unshare: {os.strerror(ctypes.get_errno())}"})
        return
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
    Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
    alive, keeper_alive = os.pipe()  # at EOF the keeper is gone: the child's PDEATHSIG may have come too late
    child = os.fork()
    if child == 0:
        try:
            os.close(report)
            os.close(keeper_alive)
            _run(libc, request, result, stdout, stderr, inputs, alive)
        finally:
            os._exit(71)
    for fd in (result, stdout, stderr, alive, *inputs):
        os.close(fd)
    # Asked to stop (SIGKILL from the server comes with no warning): the child dies with us (PDEATHSIG).
    _, status, usage = os.wait4(child, 0)
    _report(report, {"wait_status": status, "cpu_seconds": usage.ru_utime + usage.ru_stime})


def _report(fd: int, report: Mapping[str, Any]) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, json.dumps(report).encode())
    os.close(fd)


def _run(
    libc: ctypes.CDLL,
    request: Mapping[str, Any],
    result: int,
    stdout: int,
    stderr: int,
    inputs: list[int],
    alive: int,
) -> None:
    """The run's child, PID 1 of its namespace: isolate, then take the inputs and run the program."""
    _check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
    if select.select([alive], [], [], 0)[0]:
        os._exit(72)  # the keeper was killed before PDEATHSIG was set: nobody would stop this run
    _check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "making / private")
    _check(libc.mount(b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None), "mounting /proc")
    _private_tmp(libc, int(request["tmp_bytes"]), request.get("keep", []))
    Path("/proc/sys/user/max_user_namespaces").write_text("0")  # as bwrap's --disable-userns does
    os.makedirs(INPUT_DIR, mode=0o755)
    for (name, _), fd in zip(request["inputs"], inputs, strict=True):
        with open(f"{INPUT_DIR}/{name}", "xb") as target:
            os.lseek(fd, 0, os.SEEK_SET)
            while chunk := os.read(fd, 1 << 20):
                target.write(chunk)
    # Numbers 0-3 may be any of the received descriptors: move the result pipe out of the way first.
    result = os.dup(result)
    os.dup2(stdout, 1)
    os.dup2(stderr, 2)
    os.dup2(result, RESULT_FD)
    os.dup2(os.open("/dev/null", os.O_RDONLY), 0)
    os.closerange(RESULT_FD + 1, 1 << 16)  # the inputs, the control socket's copies: nothing else stays open
    for kind, soft, hard in request["rlimits"]:
        resource.setrlimit(kind, (soft, hard))
    _drop_capabilities(libc)
    os.chdir("/tmp")
    os.environ[protocol.RESULT_FD_ENV] = str(RESULT_FD)
    sys.argv = list(request["argv"])
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = 1
    try:
        code = int(importlib.import_module(request["module"]).main(sys.argv) or 0)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _private_tmp(libc: ctypes.CDLL, size: int, keep: Sequence[str]) -> None:
    """A fresh, size-capped /tmp of the run's own; the server's binds that lie under /tmp (a Python or checkout
    there, as in a CI clone) are bound again on top of it, read-only, as bubblewrap does for a cold run."""
    held = [(target, os.open(target, os.O_PATH)) for target in keep]
    options = f"size={size},mode=1777".encode()
    _check(libc.mount(b"tmpfs", b"/tmp", b"tmpfs", _MS_NOSUID | _MS_NODEV, options), "mounting /tmp")
    for target, fd in held:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            Path(target).touch()
        source = f"/proc/self/fd/{fd}".encode()
        _check(libc.mount(source, target.encode(), None, _MS_BIND | _MS_REC, None), f"binding {target}")
        flags = _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV
        _check(libc.mount(None, target.encode(), None, flags, None), f"making {target} read-only")
        os.close(fd)


def _drop_capabilities(libc: ctypes.CDLL) -> None:
    """No capability left (in the run's own user namespace), none to regain: the mounts stay as they are."""
    for cap in range(_CAP_LAST + 1):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # fails quietly past the kernel's last capability
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(libc.capset(header, data), "capset")
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")


def _check(returned: int, what: str) -> None:
    if returned != 0:
        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


# ------------------------------------------------------------------------------------------------ the worker's side


class WarmUnavailable(Exception):
    """The warm path cannot work here (the caller runs cold); the message says why."""


class _SetupFailed(Exception):
    """The keeper could not make the run's namespaces: this machine cannot run warm."""


class WarmServer:
    """One server for this process, started on first use with `preload` imported and `binds` visible."""

    def __init__(self, preload: Sequence[str], binds: Sequence[Bind], env: Mapping[str, str]) -> None:
        self.preload, self.binds, self.env = tuple(preload), tuple(binds), dict(env)
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._uid: int | None = None
        self._under_tmp: list[str] = []
        """Targets of the server's binds under /tmp, which a run's private /tmp must not hide."""
        self._unusable: str | None = None
        """Why the warm path cannot work here (it failed to start, or a run could not isolate itself): runs then
        start cold at once instead of trying again each time."""
        self._lock = threading.Lock()

    def run(self, module: str, argv: Sequence[str], inputs: Mapping[str, bytes], limits: SandboxLimits) -> Any:
        """One run of `module.main(argv)` in a fresh child; `inputs` (file name → bytes) are in INPUT_DIR.
        Returns a SandboxResult (start "warm"); raises WarmUnavailable when the server cannot start."""
        with self._lock:
            if self._unusable is not None:
                raise WarmUnavailable(self._unusable)
            if self._process is None or self._process.poll() is not None:
                try:
                    self._start(limits)
                except WarmUnavailable as exc:
                    self._unusable = str(exc)
                    raise
            try:
                return self._run(module, argv, inputs, limits)
            except _SetupFailed as exc:
                self._unusable = str(exc)
                self.close()
                raise WarmUnavailable(str(exc)) from exc
            except (BrokenPipeError, ConnectionError) as exc:  # the server died: the next run starts another
                self.close()
                raise WarmUnavailable(f"the warm sandbox's server went away ({exc})") from exc

    def close(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
            self._process = None

    def _start(self, limits: SandboxLimits) -> None:
        self.close()
        found = bwrap.find_bubblewrap()
        if found is None or runner.sandbox_available() is not None:
            raise WarmUnavailable(runner.sandbox_available() or "bubblewrap is not installed")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # The server is the grader's own code: its package is always shown, and found first.
        all_binds = [*bwrap.python_binds(), Bind(PACKAGE, f"{LIB_TARGET}/{PACKAGE.name}"), *self.binds]
        self._under_tmp = sorted({b.target for b in all_binds if b.target.startswith("/tmp/")})
        with runner.run_folder("grader-sandbox-stage-") as stage_root, tempfile.TemporaryFile() as errors:
            staged = runner.stage(all_binds, stage_root)
            python_path = ":".join(filter(None, [LIB_TARGET, self.env.get("PYTHONPATH")]))
            extra = {**self.env, "PYTHONPATH": python_path, CONTROL_ENV: str(theirs.fileno())}
            env = bwrap.sandbox_env(limits, gpu=False, extra=extra)
            command = [sys.executable, "-B", "-m", __name__, *self.preload]
            argv = bwrap.command_line(
                found, command, binds=all_binds, sources=staged, limits=limits, env=env, gpu=False, nested_userns=True
            )
            self._uid = process.sandbox_uid()
            server_limits = [(resource.RLIMIT_CORE, 0, 0), (resource.RLIMIT_NOFILE, 1024, 1024)]
            preexec = process.child_setup(None, staged, server_limits, self._uid)
            try:
                self._process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                    pass_fds=(theirs.fileno(),),
                    env={"PATH": bwrap.SANDBOX_PATH},
                    cwd="/",
                    start_new_session=True,
                    preexec_fn=preexec,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise WarmUnavailable(f"cannot start the warm sandbox: {exc}") from exc
            finally:
                theirs.close()
            ours.settimeout(START_TIMEOUT_S)
            try:
                ready = ours.recv(MAX_MESSAGE)
            except OSError:
                ready = b""
            if ready != READY:
                self._control = ours
                self.close()
                errors.seek(0)
                tail = errors.read()[-1000:].decode("utf-8", errors="replace").strip()
                raise WarmUnavailable(f"the warm sandbox did not start: {tail or 'no reason given'}")
        ours.settimeout(None)
        self._control = ours
        log.info("warm sandbox started (pid %d) with %s preloaded", self._process.pid, ", ".join(self.preload))

    def _run(self, module: str, argv: Sequence[str], inputs: Mapping[str, bytes], limits: SandboxLimits) -> Any:
        assert self._control is not None
        pipes = [os.pipe() for _ in range(4)]  # result, stdout, stderr, the keeper's report
        files = []
        for name, data in inputs.items():
            fd = os.memfd_create(f"input-{name}", os.MFD_CLOEXEC)
            files.append(fd)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        request = {
            "module": module,
            "argv": list(argv),
            "inputs": [[name, len(data)] for name, data in inputs.items()],
            "rlimits": self._rlimits(limits),
            "tmp_bytes": limits.tmp_bytes,
            "keep": self._under_tmp,
        }
        try:
            socket.send_fds(self._control, [json.dumps(request).encode()], [w for _, w in pipes] + files)
        finally:
            for fd in [w for _, w in pipes] + files:
                os.close(fd)
        (result, _), (stdout, _), (stderr, _), (report, _) = pipes
        started = time.monotonic()
        captures = {
            stdout: ("stdout", supervise.Capture(limits.max_output_bytes)),
            stderr: ("stderr", supervise.Capture(limits.max_output_bytes)),
            result: ("result", supervise.Capture(limits.max_result_bytes, keep_all=True)),
        }
        try:
            stopped_for = supervise.read_all(captures, started + limits.wall_seconds)
            if stopped_for is not None:
                self._control.send(json.dumps({"kill": True}).encode())
            ended = _read_report(report, time.monotonic() + process.EXIT_WAIT_S + 5)
        finally:
            for fd in (result, stdout, stderr, report):
                os.close(fd)
        if "error" in ended:  # the keeper could not isolate the run (e.g. nested user namespaces are refused here)
            raise _SetupFailed(f"a warm run could not isolate itself: {str(ended['error'])[:300]}")
        if "wait_status" not in ended and stopped_for is None:
            raise ConnectionError(f"no report from the run's keeper: {ended.get('error', 'it ended without one')}")
        outcome = supervise.Outcome(
            *(capture for _, capture in captures.values()),
            stopped_for=stopped_for,
            wait_status=ended.get("wait_status") if stopped_for is None else None,
            wall_seconds=time.monotonic() - started,
            cpu_seconds=float(ended.get("cpu_seconds", 0.0)),
        )
        return supervise.result_of(outcome, limits, None, insecure=False, start="warm")

    @property
    def pid(self) -> int | None:
        """The server's process (bwrap's, on this side), while it runs."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    @property
    def uid(self) -> int | None:
        """The uid the server and its runs have (drawn when the worker is root), else None: the worker's own."""
        return self._uid

    def _rlimits(self, limits: SandboxLimits) -> list[tuple[int, int, int]]:
        """The run's RLIMITs; RLIMIT_NPROC counts the server's own tasks too (they share its uid)."""
        uid = self._uid if self._uid is not None else os.getuid()
        tasks = sum(threads for _, threads, _ in process.tasks_by_real_uid(uid))
        found = process.rlimits(limits, gpu=False, cgroup=None, uid=uid)
        return [
            (kind, soft + tasks, hard + tasks) if kind == resource.RLIMIT_NPROC else (kind, soft, hard)
            for kind, soft, hard in found
        ]


CONTROL_ENV = "GRADER_WARM_CONTROL_FD"
WARM_ENV = "GRADER_SANDBOX_WARM"
START_TIMEOUT_S = 120.0


def _read_report(fd: int, deadline: float) -> dict[str, Any]:
    """The keeper's report (wait status, CPU seconds), or {} when none comes before `deadline`."""
    data = b""
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    try:
        report = json.loads(data) if data else {}
    except ValueError:
        return {}
    return report if isinstance(report, dict) else {}


_SERVERS: dict[tuple[tuple[str, ...], tuple[Bind, ...]], WarmServer] = {}
_SERVERS_LOCK = threading.Lock()


def warm_server(preload: Sequence[str], binds: Sequence[Bind], env: Mapping[str, str]) -> WarmServer:
    """This process's server for `preload` and `binds` (one at a time: another set replaces it)."""
    key = (tuple(preload), tuple(binds))
    with _SERVERS_LOCK:
        if key not in _SERVERS:
            for old in _SERVERS.values():
                old.close()
            _SERVERS.clear()
            _SERVERS[key] = WarmServer(preload, binds, env)
            atexit.register(close_servers)  # bwrap's --die-with-parent would end it too; this reaps it
        return _SERVERS[key]


def close_servers() -> None:
    with _SERVERS_LOCK:
        for server in _SERVERS.values():
            server.close()
        _SERVERS.clear()


def main(argv: list[str]) -> int:
    control = socket.socket(fileno=int(os.environ.pop(CONTROL_ENV)))
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    serve(control, argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
