"""Fixtures for the sandbox tests: a working bubblewrap (required in CI), the HW3 model interface, fast limits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from grader.evaluation.student import ModelInterface, read_model_interface
from grader.sandbox import runner
from grader.sandbox.warm import close_servers
from tests.conftest import REPO_ROOT, sandbox_limits

FAST = sandbox_limits(wall_seconds=10, cpu_seconds=5, memory_bytes=1 << 30, max_output_bytes=100_000)
"""For runs of plain Python (no torch): a second or two is plenty."""

OWN_SANDBOX_UIDS: set[int] = set()
"""The sandbox uids this test process's runs were given: a check for processes left behind looks only at these."""


@pytest.fixture(scope="session", autouse=True)
def _record_own_sandbox_uids() -> Iterator[None]:
    """Note each uid a run in this process draws (the runner's own choice, unchanged), since other processes on the
    machine (another test run, a service's workers) may be running sandboxes at the same time."""
    draw = runner.sandbox_uid

    def drawn() -> int | None:
        uid = draw()
        if uid is not None:
            OWN_SANDBOX_UIDS.add(uid)
        return uid

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "sandbox_uid", drawn)
        yield


@pytest.fixture(autouse=True)
def _close_warm_servers() -> Iterator[None]:
    """A test's warm sandbox server (started by its runs) ends with the test: the next test's check for processes
    left behind then sees none of it."""
    yield
    close_servers()


@pytest.fixture(scope="session")
def interface() -> ModelInterface:
    found = read_model_interface(Path(REPO_ROOT / "rubrics" / "csce636-hw3.yaml"))
    assert found is not None
    return found


HEAP_FAULTS = """
def heap_faults(rounds=4, size=20 << 20, count=3):
    # Page faults of each round of allocating, touching and freeing `count` blocks: what a network's activations
    # cost a run per batch.
    import ctypes, resource
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    faults = []
    for _ in range(rounds):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        blocks = [libc.malloc(size) for _ in range(count)]
        for block in blocks:
            ctypes.memset(block, 1, size)
        for block in blocks:
            libc.free(block)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return faults
"""
"""A sandboxed program's function: with glibc's defaults every round faults its 60 MiB in again; with the runs' malloc
settings (grader/sandbox/bwrap.py) only the first does."""
