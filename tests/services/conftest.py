"""A database of the test's own for service-level tests: SQLite in the test's folder, or a fresh PostgreSQL
database when GRADER_TEST_DATABASE_URL names a server (dropped afterwards)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from grader.db.migrate import upgrade_database
from grader.settings import Settings
from tests.conftest import REPO_ROOT, _create_postgres_database, _drop_postgres_database


@pytest.fixture()
def database(tmp_path: Path) -> Iterator[str]:
    """The URL of a migrated, empty database."""
    admin = os.environ.get("GRADER_TEST_DATABASE_URL", "")
    if admin.startswith("postgresql"):
        url, name = _create_postgres_database(admin)
        upgrade_database(url)
        yield url
        _drop_postgres_database(admin, name)
    else:
        url = f"sqlite:///{tmp_path / 'service.db'}"
        upgrade_database(url)
        yield url


@pytest.fixture()
def settings(tmp_path: Path, database: str) -> Settings:
    """Settings on that database, with the repository's rubrics and uploads in the test's folder."""
    return Settings(data_dir=tmp_path, database_url=database, rubrics_dir=REPO_ROOT / "rubrics")
