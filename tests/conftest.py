"""Shared fixtures: the backends under test (embedded by default, PostgreSQL/Redis when asked), and data roots.

`GRADER_TEST_DATABASE_URL` / `GRADER_TEST_BROKER_URL` select server backends; each test session then gets a
database of its own (created and dropped here) and a flushed Redis database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from grader.sandbox.limits import SandboxLimits

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Backends:
    database_url: str
    broker_url: str
    data_dir: Path

    @property
    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("GRADER_")}
        env.update(
            GRADER_DATA_DIR=str(self.data_dir),
            GRADER_DATABASE_URL=self.database_url,
            GRADER_BROKER_URL=self.broker_url,
            GRADER_TASK_TIME_LIMIT_S=os.environ.get("GRADER_TEST_TASK_TIME_LIMIT_S", "300"),
            PYTHONUNBUFFERED="1",
        )
        if cifar := os.environ.get("GRADER_CIFAR10_ROOT"):
            env["GRADER_CIFAR10_ROOT"] = cifar
        return env

    @property
    def label(self) -> str:
        return f"{self.database_url.split(':', 1)[0]} + {self.broker_url.split(':', 1)[0]}"


def _create_postgres_database(admin_url: str) -> tuple[str, str]:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    name = f"grader_test_{uuid.uuid4().hex[:10]}"
    conninfo = url.set(drivername="postgresql", database=url.database or "postgres").render_as_string(False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False), name


def _drop_postgres_database(admin_url: str, name: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    conninfo = url.set(drivername="postgresql", database=url.database or "postgres").render_as_string(False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    data_dir = tmp_path_factory.mktemp("grader-data")
    database_url = os.environ.get("GRADER_TEST_DATABASE_URL", "")
    broker_url = os.environ.get("GRADER_TEST_BROKER_URL", "")
    created_db = None
    if database_url.startswith("postgresql"):
        admin_url = database_url
        database_url, created_db = _create_postgres_database(admin_url)
    if broker_url.startswith("redis"):
        import redis

        redis.Redis.from_url(broker_url).flushdb()
    yield Backends(
        database_url=database_url or f"sqlite:///{data_dir / 'grader.db'}",
        broker_url=broker_url or f"sqla+sqlite:///{data_dir / 'broker.db'}",
        data_dir=data_dir,
    )
    if created_db:
        _drop_postgres_database(os.environ["GRADER_TEST_DATABASE_URL"], created_db)


def _missing_shared_data(reason: str) -> None:
    # In CI the course data is always beside the clone: a missing folder is a broken setup, not a skip.
    if os.environ.get("CI"):
        pytest.fail(f"CI must provide the course data: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    root = os.environ.get("GRADER_CIFAR10_ROOT")
    if not root or not (Path(root) / "cifar-10-batches-py" / "test_batch").is_file():
        _missing_shared_data("GRADER_CIFAR10_ROOT is not set to a folder holding cifar-10-batches-py/test_batch")
    return Path(str(root))


@pytest.fixture(scope="session")
def resnet20_checkpoint() -> Path:
    """The real, third-party trained ResNet-20 (v1, option A shortcuts) that scores 91.73 %."""
    folder = os.environ.get("GRADER_TEST_CHECKPOINTS_DIR", "")
    path = Path(folder) / "resnet20-v1-optionA" / "resnet20-12fca82f.th"
    if not folder or not path.is_file():
        _missing_shared_data("GRADER_TEST_CHECKPOINTS_DIR does not hold resnet20-v1-optionA/resnet20-12fca82f.th")
    return path


@pytest.fixture(scope="session")
def sandbox() -> None:
    """Skip without bubblewrap; in CI (which installs it) a missing sandbox is a broken setup: fail."""
    from grader.sandbox import sandbox_available

    reason = sandbox_available()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must be able to run the sandbox (apt-get install bubblewrap): {reason}")
    pytest.skip(reason)


def sandbox_limits(**overrides: Any) -> SandboxLimits:
    """The limits a service on its default settings gives each run, with `overrides` (e.g. a shorter wall time)."""
    from grader.sandbox.limits import SandboxLimits
    from grader.settings import Settings

    return replace(SandboxLimits.from_settings(Settings()), **overrides)
