"""A torch whose weights-only loader has known bypasses is refused before any checkpoint is loaded."""

from __future__ import annotations

import pytest

from grader.errors import InfrastructureError
from grader.evaluation.safety import MINIMUM_TORCH, parse_version, require_safe_torch


@pytest.mark.parametrize("version", ["2.6.0", "2.9.1+cu128", "1.13.1"])
def test_old_torch_is_refused_naming_the_cves(version: str) -> None:
    with pytest.raises(InfrastructureError, match=r"CVE-2025-32434.*CVE-2026-24747.*>= 2\.10"):
        require_safe_torch(version)


@pytest.mark.parametrize("version", ["2.10.0", "2.14.1+cu130", "3.0.0a0"])
def test_current_torch_is_accepted(version: str) -> None:
    assert require_safe_torch(version) == version


def test_the_installed_torch_is_accepted() -> None:
    assert parse_version(require_safe_torch()) >= MINIMUM_TORCH
