"""A cgroup of its own for one sandboxed run (v2, or v1 `pids` + `memory` + `cpuacct`), when one can be made.

The cgroup bounds processes and memory (tmpfs pages included), measures CPU time, tells whether the kernel
OOM-killed a process or refused a fork, and lets the parent kill everything in it. Creation is best effort:
without a writable cgroup hierarchy (not root, a container without delegation) the run keeps its RLIMITs and
`create` returns None.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("pids", "memory", "cpuacct")
REMOVE_WAIT_S = 5.0


@dataclass(slots=True)
class Cgroup:
    """The run's cgroup: one folder (v2) or one per v1 controller, by controller name."""

    version: int
    folders: dict[str, Path]

    @property
    def procs_files(self) -> list[str]:
        """Written with the child's pid before it execs (root only, in preexec_fn)."""
        return [str(folder / "cgroup.procs") for folder in dict.fromkeys(self.folders.values())]

    @property
    def limits_memory(self) -> bool:
        return "memory" in self.folders

    def oom_killed(self) -> bool:
        folder = self.folders.get("memory")
        if folder is None:
            return False
        events = "memory.events" if self.version == 2 else "memory.oom_control"
        return _counter(folder / events, "oom_kill") > 0

    def fork_refused(self) -> bool:
        folder = self.folders.get("pids")
        return folder is not None and _counter(folder / "pids.events", "max") > 0

    def cpu_seconds(self) -> float | None:
        if self.version == 2 and "cpu" in self.folders:
            return _counter(self.folders["cpu"] / "cpu.stat", "usage_usec") / 1e6
        folder = self.folders.get("cpuacct")
        if folder is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            return int((folder / "cpuacct.usage").read_text()) / 1e9
        return None

    def kill_all(self) -> None:
        for folder in dict.fromkeys(self.folders.values()):
            if (folder / "cgroup.kill").exists():
                with contextlib.suppress(OSError):
                    (folder / "cgroup.kill").write_text("1")
            for pid in _pids(folder):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        """Kill what is left and remove the folders (a cgroup can only go once it is empty)."""
        deadline = time.monotonic() + REMOVE_WAIT_S
        for folder in dict.fromkeys(self.folders.values()):
            while True:
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        log.error("cgroup %s still holds processes after %.0f s; left behind", folder, REMOVE_WAIT_S)
                        break
                    self.kill_all()
                    time.sleep(0.02)


def create(*, pids_max: int, memory_max: int) -> Cgroup | None:
    """A new cgroup below this process's own with the limits set; None when cgroups cannot be used here."""
    if os.geteuid() != 0:
        return None
    # The pid in the name tells a leftover of a killed run from a live one (grader.sandbox.leftovers).
    name = f"grader-sandbox-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    group: Cgroup | None = None
    try:
        group = _create_v2(name) if (CGROUP_ROOT / "cgroup.controllers").is_file() else _create_v1(name)
        if group is not None:
            _configure(group, pids_max, memory_max)
        return group
    except OSError as exc:
        log.info("no cgroup for the sandbox (%s); RLIMITs only", exc)
        if group is not None:
            group.remove()
        return None


def sandbox_parents() -> list[Path]:
    """Where `create` makes the runs' cgroups: below this process's own cgroup, in each hierarchy it uses."""
    if os.geteuid() != 0:
        return []
    try:
        if (CGROUP_ROOT / "cgroup.controllers").is_file():
            own = _own_path("")
            return [] if own is None else [CGROUP_ROOT / own.lstrip("/")]
        parents = []
        for controller in V1_CONTROLLERS:
            own = _own_path(controller)
            base = CGROUP_ROOT / controller
            if own is not None and (base / "cgroup.procs").exists():
                parents.append(base / own.lstrip("/"))
        return list(dict.fromkeys(parents))
    except OSError:
        return []


def has_processes(folder: Path) -> bool:
    """Whether a cgroup holds a process (True when that cannot be read: then it is not ours to remove)."""
    try:
        return bool((folder / "cgroup.procs").read_text().split())
    except OSError:
        return True


def _create_v2(name: str) -> Cgroup | None:
    own = _own_path("")
    if own is None:
        return None
    folder = CGROUP_ROOT / own.lstrip("/") / name
    folder.mkdir()
    present = {"pids": "pids.max", "memory": "memory.max", "cpu": "cpu.stat"}
    group = Cgroup(2, {key: folder for key, file in present.items() if (folder / file).exists()})
    if "pids" not in group.folders and "memory" not in group.folders:
        folder.rmdir()  # the parent does not delegate the controllers that matter
        return None
    return group


def _create_v1(name: str) -> Cgroup | None:
    folders = {}
    for controller in V1_CONTROLLERS:
        own = _own_path(controller)
        base = CGROUP_ROOT / controller
        if own is None or not (base / "cgroup.procs").exists():
            continue
        folder = base / own.lstrip("/") / name
        with contextlib.suppress(OSError):
            folder.mkdir()
            folders[controller] = folder
    return Cgroup(1, folders) if folders else None


def _configure(group: Cgroup, pids_max: int, memory_max: int) -> None:
    if "pids" in group.folders:
        (group.folders["pids"] / "pids.max").write_text(str(pids_max))
    folder = group.folders.get("memory")
    if folder is None:
        return
    if group.version == 2:
        (folder / "memory.max").write_text(str(memory_max))
        with contextlib.suppress(OSError):
            (folder / "memory.swap.max").write_text("0")
        return
    (folder / "memory.limit_in_bytes").write_text(str(memory_max))
    with contextlib.suppress(OSError):  # absent without swap accounting
        (folder / "memory.memsw.limit_in_bytes").write_text(str(memory_max))


def _own_path(controller: str) -> str | None:
    """This process's cgroup path for `controller` ("" = the v2 hierarchy), from /proc/self/cgroup."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        names = controllers.split(",")
        if (not controller and names == [""]) or (controller and controller in names):
            return path
    return None


def _pids(folder: Path) -> list[int]:
    try:
        return [int(line) for line in (folder / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _counter(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0
