"""Running one command in a sandbox: choosing the isolation (bubblewrap, or a plain child process with the same
RLIMITs where that is allowed), staging what it may see, starting it (grader/sandbox/process.py) and supervising it
to a typed result (grader/sandbox/supervise.py). The program hands back its one reply through the result pipe
(grader/sandbox/protocol.py).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from grader.domain.status import SandboxStatus
from grader.errors import InfrastructureError
from grader.sandbox import bwrap, cgroups
from grader.sandbox.bwrap import Bind
from grader.sandbox.leftovers import owned_prefix
from grader.sandbox.limits import SandboxLimits
from grader.sandbox.process import await_exit, child_setup, rlimits, sandbox_uid, start, subreaper
from grader.sandbox.protocol import RESULT_FD_ENV
from grader.sandbox.supervise import SandboxResult, result_of, supervise

log = logging.getLogger(__name__)

INSECURE_ENV = "GRADER_SANDBOX_INSECURE_DEV_MODE"


class SandboxUnavailable(InfrastructureError):
    """The sandbox cannot run here (bubblewrap missing, user namespaces disabled): student code is not run."""


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
            staged = stage(all_binds, stage_root)
            env = bwrap.sandbox_env(limits, gpu=gpu, extra={**extra_env, RESULT_FD_ENV: str(write_fd)})
            argv = bwrap.command_line(found, command, binds=all_binds, sources=staged, limits=limits, env=env, gpu=gpu)
            uid = sandbox_uid()
            preexec = child_setup(group, staged, rlimits(limits, gpu=gpu, cgroup=group, uid=uid), uid)
            with subreaper():
                process = start(argv, write_fd, preexec)
                os.close(write_fd)
                write_fd = -1
                outcome = supervise(process, read_fd, limits, group)
                if uid is not None:
                    await_exit(uid)
            return result_of(outcome, limits, group, insecure=False)
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
            preexec = child_setup(None, {}, rlimits(limits, gpu=gpu, cgroup=None, uid=None), None)
            process = start(list(command), write_fd, preexec, env=env, cwd=str(home))
            os.close(write_fd)
            write_fd = -1
            outcome = supervise(process, read_fd, limits, None)
            return result_of(outcome, limits, None, insecure=insecure, isolation="process")
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)


def stage(binds: Sequence[Bind], stage_root: Path) -> dict[Path, Path]:
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
