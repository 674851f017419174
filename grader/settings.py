"""The one settings class: every knob is an environment variable with the `GRADER_` prefix."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


class Settings(BaseSettings):
    """Defaults are embedded (SQLite, a server-less broker); one env var switches each to a server."""

    model_config = SettingsConfigDict(env_prefix="GRADER_", extra="ignore")

    data_dir: Path = Field(default=PROJECT_ROOT / "var", description="Where embedded state lives.")
    database_url: str = ""
    """SQLAlchemy URL; default sqlite file in data_dir. PostgreSQL: postgresql+psycopg://user@host/db."""
    broker_url: str = ""
    """Celery broker URL; default kombu's SQLAlchemy transport on a SQLite file. Redis: redis://host:6379/0."""
    storage_dir: Path | None = None
    """Uploaded files, content-addressed by sha256; default data_dir/storage."""
    rubrics_dir: Path = PROJECT_ROOT / "rubrics"
    cifar10_root: Path | None = None
    """Folder holding cifar-10-batches-py/ (the CIFAR-10 test set); Q1 evaluation needs it."""

    max_answers_bytes: int = 256 * 1024
    max_checkpoint_bytes: int = 256 * MiB
    max_submission_bytes: int = 600 * MiB

    header_timeout_s: PositiveFloat = 10
    """`grader run` closes a connection that has not sent a whole request head (line and headers) this long after
    it opened or after its previous answer: a client trickling headers byte by byte holds no connection."""
    body_timeout_s: PositiveFloat = 600
    """A request's whole body must arrive within this after its headers; otherwise 408 and nothing is stored (600 s
    fits the largest submission at 1 MiB/s)."""
    body_idle_timeout_s: PositiveFloat = 30
    """A request body that sends nothing for this long is cut off: 408, nothing stored."""
    keep_alive_timeout_s: PositiveInt = 5
    """`grader run` closes an idle keep-alive connection after this (uvicorn's timeout_keep_alive)."""

    @property
    def max_code_file_bytes(self) -> int:
        """Each .py file (or code zip) in v1_code/v2_code/code: as large as 16 answer sheets (4 MiB by default)."""
        return self.max_answers_bytes * 16

    task_time_limit_s: int = 900
    """Hard time limit of one grading or evaluation task; a job past it is marked failed, never stuck."""
    task_max_attempts: int = 3
    requeue_after_s: int = 30
    """A job still `received` this long after its submission never reached the queue; workers resend it."""
    stuck_after_s: int | None = None
    """Work that no worker holds a lease on (queued, or waiting for a wake-up) and that nothing touched this long is
    resent, its message presumed lost; default: task time limit + 120 s. Claimed work is resent when its lease
    lapses instead (`lease_s`)."""
    sweep_interval_s: int = 60
    """How often each worker looks for jobs to resend."""
    rate_limit_per_minute: PositiveInt = 600
    """API requests per minute per user (each API process counts its own); over it: 429 with Retry-After."""
    rate_limit_burst: PositiveInt = 120
    """Requests a user may make at once before the per-minute rate applies."""
    max_requests_in_flight: PositiveInt = 32
    """Requests one API process serves at once (a body still arriving counts); the next is answered 503 with
    Retry-After at once instead of waiting in a queue that only grows during a surge."""
    api_threads: PositiveInt = 8
    """Threads one API process runs its routes in. Python runs one thread at a time: more threads add no speed, and
    with dozens of them the event loop that reads and answers every connection waited its turn behind all of them."""
    db_pool_size: PositiveInt = 10
    """Database connections each process keeps open."""
    db_max_overflow: int = Field(default=30, ge=0)
    """Connections a process may open beyond db_pool_size while busy (closed again when returned)."""
    db_pool_timeout_s: PositiveFloat = 5
    """How long a request waits for a free connection; after it the API answers 503 with Retry-After."""
    jobs_in_flight_per_student: PositiveInt = 1
    """Fair share: a student's further submissions are stored and wait (`received`) while this many of theirs are
    queued or running, so another student's job waits behind at most this many of theirs."""
    heartbeat_interval_s: PositiveInt = 15
    """How often each worker records that it is alive (the dashboard's and `/ready`'s "workers alive")."""
    worker_dead_after_s: PositiveInt | None = None
    """A worker silent this long counts as gone; default four heartbeats."""
    lease_s: PositiveInt | None = None
    """A worker's claim on the job, evaluation or regrade it runs lasts this long and is renewed by each heartbeat;
    until it lapses no other worker runs that work (default three heartbeats + 30 s, 75 s)."""

    sandbox_wall_s: PositiveFloat | None = None
    """Wall-clock limit of one sandboxed evaluation run (student code, or reference-mode loading); default
    (task_time_limit_s - 100) / 2, 400 s. Reference mode may run twice (alternative forward passes for a low
    score), so at most half of task_time_limit_s."""
    sandbox_cpu_s: PositiveInt = 800
    """CPU-time limit of one run, all threads together (about threads × wall time when busy)."""
    sandbox_memory_mib: PositiveInt = 6144
    """Memory of one run: address space on CPU workers (torch's CUDA build maps about 3.3 GB on import alone),
    the cgroup's memory limit on GPU workers."""
    sandbox_max_processes: PositiveInt = 64
    """Processes and threads of one run together."""
    sandbox_max_output_mib: PositiveInt = 1
    """What one run may print to stdout and to stderr; more and it is stopped with `resource_limit`."""
    sandbox_threads: PositiveInt = 2
    """CPU threads torch uses inside a run."""

    integrity_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    """Two students' checkpoints whose median per-layer weight correlation reaches this are reported to staff as a
    near copy (independent trainings give about 0, a fine-tune of a classmate's checkpoint close to 1)."""

    host: str = "127.0.0.1"
    port: int = 8000

    log_format: Literal["text", "json"] = "text"
    """`text` for a person at a terminal (`make run`); `json` for deployments: one JSON object per line."""
    metrics_token: SecretStr | None = None
    """When set, `/metrics` answers only `Authorization: Bearer <this>`; unset, it is open (keep it internal)."""

    @field_validator("data_dir", "rubrics_dir", "storage_dir", "cifar10_root", mode="after")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @model_validator(mode="after")
    def _sandbox_fits_task(self) -> Settings:
        if self.sandbox_wall_s is not None and self.sandbox_wall_s * 2 > self.task_time_limit_s:
            raise ValueError(
                f"GRADER_SANDBOX_WALL_S ({self.sandbox_wall_s:g}) must be at most half of GRADER_TASK_TIME_LIMIT_S "
                f"({self.task_time_limit_s}): a reference-mode evaluation may run twice within one task"
            )
        return self

    @model_validator(mode="after")
    def _lease_outlives_heartbeats(self) -> Settings:
        if self.resolved_lease_s <= self.heartbeat_interval_s:
            raise ValueError(
                f"GRADER_LEASE_S ({self.resolved_lease_s}) must be longer than GRADER_HEARTBEAT_INTERVAL_S "
                f"({self.heartbeat_interval_s}): each heartbeat renews the leases, so a shorter one lapses between them"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'grader.db'}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.data_dir / 'broker.db'}"

    @property
    def resolved_storage_dir(self) -> Path:
        return self.storage_dir or self.data_dir / "storage"

    @property
    def resolved_stuck_after_s(self) -> int:
        return self.stuck_after_s if self.stuck_after_s is not None else self.task_time_limit_s + 120

    @property
    def resolved_worker_dead_after_s(self) -> int:
        return self.worker_dead_after_s if self.worker_dead_after_s is not None else 4 * self.heartbeat_interval_s

    @property
    def resolved_lease_s(self) -> int:
        return self.lease_s if self.lease_s is not None else 3 * self.heartbeat_interval_s + 30

    @property
    def resolved_sandbox_wall_s(self) -> float:
        return self.sandbox_wall_s if self.sandbox_wall_s is not None else max(30.0, (self.task_time_limit_s - 100) / 2)

    @property
    def uses_embedded_broker(self) -> bool:
        return self.resolved_broker_url.startswith("sqla+")


@lru_cache
def get_settings() -> Settings:
    return Settings()
