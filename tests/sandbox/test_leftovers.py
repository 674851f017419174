"""Leftovers of killed runs: run folders and empty sandbox cgroups whose process is gone are removed; a live run's,
a recent one's and anything not named like a run's are left alone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from grader.sandbox import cgroups
from grader.sandbox.leftovers import owned_prefix, remove_leftovers
from grader.sandbox.runner import run_folder

TIME_LIMIT_S = 900
HOUR = 3600


def _dead_pid() -> int:
    """A pid no process has: above the kernel's largest, or else one just reaped."""
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    except (OSError, ValueError):
        finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
        return int(finished.stdout)


@pytest.fixture()
def newcomer() -> Iterator[int]:
    """A process started now: its pid may have been a killed worker's once (pids are reused)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process.pid
    process.kill()
    process.wait()


def test_run_folders_carry_the_pid_of_their_process() -> None:
    with run_folder("grader-reference-") as folder:
        assert folder.name.startswith(f"grader-reference-{os.getpid()}-")
    assert owned_prefix("grader-code-") == f"grader-code-{os.getpid()}-"


def test_leftover_run_folders_of_gone_processes_are_removed_and_live_or_recent_ones_kept(
    tmp_path: Path, newcomer: int
) -> None:
    dead, alive = _dead_pid(), os.getpid()
    cases: list[tuple[str, float, bool]] = [
        # name, age in seconds, removed
        (f"grader-reference-{dead}-k2j4h1x_", HOUR, True),  # its worker was killed an hour ago
        (f"grader-sandbox-stage-{dead}-a8d7f6e5", HOUR, True),
        (f"grader-code-{dead}-zz9y8x7w", HOUR, True),
        (f"grader-sandbox-{newcomer}-q1w2e3r4", HOUR, True),  # its pid now belongs to a process started later
        (f"grader-reference-{alive}-m5n6b7v8", 0, False),  # a live process's run (this test's own)
        (f"grader-reference-{dead}-p0o9i8u7", 60, False),  # younger than the task time limit: left for later
        ("grader-sandbox-abcd1234", 2 * 24 * HOUR, True),  # named before pids were: only once days old
        ("grader-insecure-efgh5678", HOUR, False),
        ("grader-testset-0", 2 * 24 * HOUR, False),  # the kept test-image file's folder is no run's
        (f"other-{dead}-abcd1234", 2 * 24 * HOUR, False),
    ]
    now = time.time()
    for name, age, _ in cases:
        folder = tmp_path / name
        (folder / "input").mkdir(parents=True)
        (folder / "input" / "checkpoint.bin").write_bytes(b"weights" * 100)
        os.utime(folder, (now - age, now - age))

    removed = remove_leftovers(min_age_s=TIME_LIMIT_S, tmp_dir=tmp_path, cgroup_parents=[])

    assert sorted(path.name for path in removed) == sorted(name for name, _, gone in cases if gone)
    kept = sorted(name for name, _, gone in cases if not gone)
    assert sorted(path.name for path in tmp_path.iterdir()) == kept

    # Without the age limit, the young leftover goes too; a live process's run folder stays whatever its age.
    removed = remove_leftovers(min_age_s=0, tmp_dir=tmp_path, cgroup_parents=[])
    assert [path.name for path in removed] == [f"grader-reference-{dead}-p0o9i8u7"]
    assert (tmp_path / f"grader-reference-{alive}-m5n6b7v8" / "input" / "checkpoint.bin").is_file()


@pytest.fixture()
def cgroup_parent() -> Iterator[Path]:
    """A cgroup of the test's own, below where the sandbox makes its cgroups; skipped where none can be made. (Set up
    before `newcomer`, so torn down after it: the process has left its cgroup by then.)"""
    parents = cgroups.sandbox_parents()
    if not parents:
        pytest.skip("no writable cgroup hierarchy here (not root, or no delegation)")
    parent = parents[0] / f"grader-leftover-test-{uuid.uuid4().hex[:8]}"
    try:
        parent.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot make a cgroup here: {exc}")
    yield parent
    for child in parent.iterdir():
        if child.is_dir():
            child.rmdir()
    parent.rmdir()


def test_empty_sandbox_cgroups_of_gone_processes_are_removed(
    cgroup_parent: Path, tmp_path: Path, newcomer: int
) -> None:
    dead, alive = _dead_pid(), os.getpid()
    leftover = cgroup_parent / f"grader-sandbox-{dead}-{uuid.uuid4().hex[:12]}"
    live = cgroup_parent / f"grader-sandbox-{alive}-{uuid.uuid4().hex[:12]}"  # made, its child not yet in it
    busy = cgroup_parent / f"grader-sandbox-{dead}-{uuid.uuid4().hex[:12]}"  # a process still in it
    for group in (leftover, live, busy):
        group.mkdir()
    _join(busy, newcomer)

    removed = remove_leftovers(min_age_s=0, tmp_dir=tmp_path, cgroup_parents=[cgroup_parent])

    assert removed == [leftover]
    assert not leftover.exists() and live.is_dir() and busy.is_dir()


def _join(group: Path, pid: int) -> None:
    (group / "cgroup.procs").write_text(str(pid))
