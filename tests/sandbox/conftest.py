"""Fixtures for the sandbox tests: a working bubblewrap (required in CI), the HW3 model interface, fast limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.sandbox import ModelInterface, SandboxLimits, read_model_interface
from tests.conftest import REPO_ROOT

FAST = SandboxLimits(wall_seconds=10, cpu_seconds=5, memory_bytes=1 << 30, max_output_bytes=100_000)
"""For runs of plain Python (no torch): a second or two is plenty."""


@pytest.fixture(scope="session")
def interface() -> ModelInterface:
    found = read_model_interface(Path(REPO_ROOT / "rubrics" / "csce636-hw3.yaml"))
    assert found is not None
    return found
