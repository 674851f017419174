"""Run folders and cgroups left behind by a killed process, and removing them.

Every sandboxed run makes a folder in the temp folder (`grader-sandbox-*`, `grader-sandbox-stage-*`,
`grader-reference-*`, `grader-insecure-*`, `grader-fingerprint-*`, and `grader-code-*` for a student's code; a copy
of the checkpoint or the code inside) and, as root, a `grader-sandbox-*` cgroup per controller. The run removes them
when it ends, but a process killed with SIGKILL never gets there. Each name therefore starts with the pid of the
process that made it (`grader-reference-<pid>-<random>`), and a sweep on the same machine removes what belongs to no
live process: the pid is gone, or is a process started after the leftover was made (a reused pid). A live run's
folder or cgroup is never touched.

Names from before the pid was in them cannot be told apart that way: they go only once far older than any run lasts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from grader.sandbox import cgroups

log = logging.getLogger(__name__)

RUN_KINDS = ("sandbox-stage", "sandbox", "reference", "insecure", "fingerprint", "code")
"""What follows `grader-` in the name of each kind of run folder (`sandbox` is also the cgroups' name)."""
_KINDS = "|".join(RUN_KINDS)
_OWNED = re.compile(rf"grader-(?:{_KINDS})-(\d+)-[A-Za-z0-9_]+")
_UNOWNED = re.compile(rf"grader-(?:{_KINDS})-(?:[a-z0-9_]{{8}}|[0-9a-f]{{12}})")
"""Names made before the pid was in them: tempfile's 8 random characters; a cgroup's 12 hex digits."""
UNOWNED_AGE_S = 24 * 3600
"""Unowned leftovers go once this old (and older than the caller's age limit): no run lasts that long."""
PID_START_SLACK_S = 2.0
"""Clock-tick and mtime rounding: a process started this little after a leftover's mtime may still have made it."""


def owned_prefix(prefix: str) -> str:
    """A run folder's (or cgroup's) name prefix carrying this process's pid: `grader-code-` → `grader-code-1234-`."""
    return f"{prefix}{os.getpid()}-"


def remove_leftovers(
    *, min_age_s: float, tmp_dir: Path | None = None, cgroup_parents: Iterable[Path] | None = None
) -> list[Path]:
    """Remove this machine's run folders and empty sandbox cgroups that belong to no live process and are older than
    `min_age_s` (the task time limit: no run outlives it); what was removed.

    `tmp_dir`: where run folders are made (the temp folder); `cgroup_parents`: where sandbox cgroups are made (below
    this process's own cgroup, per controller). Only this user's folders are considered."""
    now = time.time()
    removed = []
    folder = tmp_dir or Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            if _is_leftover(entry, now=now, min_age_s=min_age_s, uid=os.getuid()):
                shutil.rmtree(entry, ignore_errors=True)
                if not entry.exists():
                    removed.append(entry)
    parents = cgroups.sandbox_parents() if cgroup_parents is None else list(cgroup_parents)
    for parent in parents:
        with contextlib.suppress(OSError):
            for entry in parent.iterdir():
                if not entry.name.startswith("grader-sandbox-") or cgroups.has_processes(entry):
                    continue
                if _is_leftover(entry, now=now, min_age_s=min_age_s, uid=None):
                    with contextlib.suppress(OSError):  # a process may have joined it since: then it stays
                        entry.rmdir()
                        removed.append(entry)
    if removed:
        log.warning("removed %d leftovers of killed runs: %s", len(removed), ", ".join(str(p) for p in removed[:20]))
    return removed


def _is_leftover(entry: Path, *, now: float, min_age_s: float, uid: int | None) -> bool:
    owned = _OWNED.fullmatch(entry.name)
    if owned is None and _UNOWNED.fullmatch(entry.name) is None:
        return False
    try:
        info = entry.lstat()
    except OSError:
        return False
    if not entry.is_dir() or entry.is_symlink() or (uid is not None and info.st_uid != uid):
        return False
    age = now - info.st_mtime
    if owned is None:
        return age > max(UNOWNED_AGE_S, min_age_s)
    return age >= min_age_s and not owner_alive(int(owned.group(1)), made_at=info.st_mtime)


def owner_alive(pid: int, *, made_at: float) -> bool:
    """Whether process `pid` runs and could have made something last changed at `made_at` (it started before)."""
    started = _start_time(pid)
    if started is None:
        return False
    return started <= made_at + PID_START_SLACK_S


def _start_time(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), None when there is none; where /proc cannot say,
    only whether it exists (then any time before now)."""
    boot = _boot_time()
    if boot is None:
        return _exists(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return _exists(pid)
    try:
        # The command name (field 2) may hold spaces and parentheses: fields are counted after its closing one.
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return _exists(pid)
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _exists(pid: int) -> float | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # someone else's process: it exists
    return 0.0


@cache
def _boot_time() -> float | None:
    """The machine's boot time from /proc/stat (process start times count from it); None without /proc."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    return None
