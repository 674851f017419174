"""Layering rules users never see but every change depends on."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def _imports_after(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_importing_the_api_does_not_import_torch() -> None:
    loaded = _imports_after("grader.api.app")
    assert "torch" not in loaded
    assert "fastapi" in loaded


def test_domain_and_rubric_import_no_web_db_or_queue_framework() -> None:
    loaded = _imports_after("grader.rubric.engine")
    assert not {"fastapi", "sqlalchemy", "celery"} & loaded


def test_the_students_client_is_only_a_client_of_the_rest_api() -> None:
    loaded = _imports_after("grader.client")
    assert not {"fastapi", "sqlalchemy", "celery", "torch"} & loaded
    assert not {name for name in loaded if name.startswith(("grader.api", "grader.services", "grader.db", "worker"))}
