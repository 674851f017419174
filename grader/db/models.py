"""SQLAlchemy models: users and tokens, assignments, submissions and their files, grading history, reviews.

History is append-only: a regrade adds a GradingJob with its own PartResults and Score; nothing older is
overwritten. Human scores (PartReview) live apart from automatic ones, so regrading never erases them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes even for timezone-aware columns; they were stored in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class Leased:
    """A claim on work a worker is running now (grader.services.leases): which worker, since when, until when.

    The worker renews the lease with each heartbeat and clears it when its task step ends; no other worker runs the
    work while the lease is live, and the sweeper resends claimed work only once its lease has lapsed."""

    lease_owner: Mapped[str | None] = mapped_column(String(255), default=None)
    """The holder's Celery node name (e.g. `cpu.1234@host`: unique per worker process); None: nobody holds it."""
    lease_claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    """When the holder claimed it: renewals stop once a task's time limit has passed since (a hung run lapses)."""
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # From the LMS roster (`grader users import`): what a gradebook export needs to match its rows.
    full_name: Mapped[str | None] = mapped_column(String(200))
    lms_id: Mapped[str | None] = mapped_column(String(64))
    sis_user_id: Mapped[str | None] = mapped_column(String(64))
    sis_login_id: Mapped[str | None] = mapped_column(String(64))
    section: Mapped[str | None] = mapped_column(String(200))

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user")


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="tokens")


class Assignment(Base):
    __tablename__ = "assignments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    rubric_version: Mapped[str] = mapped_column(String(64))
    rubric_sha256: Mapped[str] = mapped_column(String(64))
    max_score: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    released_at: Mapped[datetime | None]
    """When an instructor released grades (students then see full feedback); None: not released by hand."""


class Artifact(Base):
    """A stored file, named by the sha256 of its bytes (identical uploads share one blob)."""

    __tablename__ = "artifacts"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Submission(Base):
    __tablename__ = "submissions"
    # A unique index rather than a constraint: SQLite adds an index without rebuilding the table.
    __table_args__ = (Index("uq_submissions_user_id_idempotency_key", "user_id", "idempotency_key", unique=True),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    assignment_id: Mapped[str] = mapped_column(ForeignKey("assignments.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    """The client's Idempotency-Key header: a retry with the same key gets this submission instead of a new one."""

    files: Mapped[list[SubmissionFile]] = relationship(back_populates="submission", order_by="SubmissionFile.id")
    jobs: Mapped[list[GradingJob]] = relationship(back_populates="submission", order_by="GradingJob.number")
    user: Mapped[User] = relationship()
    assignment: Mapped[Assignment] = relationship()
    reviews: Mapped[list[PartReview]] = relationship(order_by="PartReview.id")
    extensions: Mapped[list[Extension]] = relationship(
        primaryjoin="and_(Submission.user_id == foreign(Extension.user_id), "
        "Submission.assignment_id == foreign(Extension.assignment_id))",
        order_by="Extension.id",
        viewonly=True,
    )
    """The student's extensions for this assignment, oldest first (the last one counts)."""


class SubmissionFile(Base):
    __tablename__ = "submission_files"
    __table_args__ = (UniqueConstraint("submission_id", "field"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), index=True)
    field: Mapped[str] = mapped_column(String(32))
    """The multipart field: answers, v1, v2, v1_code, v2_code, code (code stored as one normalised zip)."""
    artifact_sha256: Mapped[str] = mapped_column(ForeignKey("artifacts.sha256"))
    original_name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)

    submission: Mapped[Submission] = relationship(back_populates="files")


class GradingJob(Leased, Base):
    """One grading run of a submission (the first, or a regrade), with every phase's timestamp."""

    __tablename__ = "grading_jobs"
    __table_args__ = (UniqueConstraint("submission_id", "number"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(32), default="submitted")
    status: Mapped[str] = mapped_column(String(16), index=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    """What the job is doing or why it failed, in words a student can read."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    """Last time a worker touched the job; the sweeper resends jobs whose worker went silent."""

    submission: Mapped[Submission] = relationship(back_populates="jobs")
    results: Mapped[list[PartResultRow]] = relationship(back_populates="job", order_by="PartResultRow.position")
    score: Mapped[Score | None] = relationship(back_populates="job")


class PartResultRow(Base):
    __tablename__ = "part_results"
    __table_args__ = (UniqueConstraint("job_id", "part_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("grading_jobs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    part_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    points: Mapped[float] = mapped_column(Float)
    max_points: Mapped[float] = mapped_column(Float)
    feedback: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[dict[str, Any] | None]
    public_feedback: Mapped[str | None] = mapped_column(Text)
    """The feedback students read before release (grader.domain.results.CheckOutcome.public_feedback)."""

    job: Mapped[GradingJob] = relationship(back_populates="results")


class Score(Base):
    __tablename__ = "scores"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("grading_jobs.id", ondelete="CASCADE"), unique=True)
    score: Mapped[float] = mapped_column(Float)
    max_score: Mapped[float] = mapped_column(Float)
    rubric_version: Mapped[str] = mapped_column(String(64))
    rubric_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    provenance: Mapped[dict[str, Any] | None]
    """What produced the score: grader and rubric versions, each file's sha256, and per checkpoint the evaluator
    version, torch version, device, mode and the test set's hashes (null for scores stored before it existed)."""

    job: Mapped[GradingJob] = relationship(back_populates="score")


class CheckpointEvaluation(Leased, Base):
    """A checkpoint's evaluation on the test set, cached by (checkpoint, preprocessing, evaluator version)."""

    __tablename__ = "checkpoint_evaluations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    cache_key: Mapped[str] = mapped_column(String(64), unique=True)
    artifact_sha256: Mapped[str] = mapped_column(ForeignKey("artifacts.sha256"), index=True)
    label: Mapped[str] = mapped_column(String(16))
    """The field it was first uploaded as (v1, v2); used in messages only, not in the cache key."""
    mode: Mapped[str] = mapped_column(String(16), default="reference")
    """reference (the grader's ResNet family) or student_code (the student's own code, sandboxed)."""
    code_sha256: Mapped[str | None] = mapped_column(ForeignKey("artifacts.sha256"))
    """The student's code (a normalised zip) in student_code mode."""
    config: Mapped[dict[str, Any] | None]
    """The network factory's arguments from the sheet (q1.<label>_config), in student_code mode."""
    preprocessing: Mapped[dict[str, Any]]
    evaluator_version: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    result: Mapped[dict[str, Any] | None]
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(255))


class JobEvaluation(Base):
    """A job waiting on (or having used) a checkpoint evaluation; finishing it wakes every waiting job."""

    __tablename__ = "job_evaluations"

    job_id: Mapped[str] = mapped_column(ForeignKey("grading_jobs.id", ondelete="CASCADE"), primary_key=True)
    evaluation_id: Mapped[str] = mapped_column(
        ForeignKey("checkpoint_evaluations.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class PartReview(Base):
    """A human's score for one part of one submission (append-only: the newest per part counts).

    For an automatic part it is an override, with a reason; `auto_status` / `auto_points` record the automatic
    result it was made over, so a regrade that changes that result flags the part for another look."""

    __tablename__ = "part_reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), index=True)
    part_id: Mapped[str] = mapped_column(String(128))
    points: Mapped[float] = mapped_column(Float)
    comment: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str | None] = mapped_column(Text)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    auto_status: Mapped[str | None] = mapped_column(String(16))
    auto_points: Mapped[float | None] = mapped_column(Float)

    reviewer: Mapped[User] = relationship()


class Regrade(Leased, Base):
    """A batch regrade of an assignment after a rubric change: a dry run (a diff, nothing written) or applied
    (a new grading job per submission; every earlier result stays)."""

    __tablename__ = "regrades"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    assignment_id: Mapped[str] = mapped_column(ForeignKey("assignments.id"), index=True)
    scope: Mapped[dict[str, Any]]
    """{"all": true}, {"users": [...]} or {"parts": [...]} (only those parts are checked again)."""
    dry_run: Mapped[bool] = mapped_column(default=True)
    status: Mapped[str] = mapped_column(String(16))
    """queued, running, then finished, cancelled or failed."""
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    """Who started it over the API (None: `grader regrade` on the server)."""
    rubric_version: Mapped[str] = mapped_column(String(64))
    """The rubric version the run grades with (each item records the version it replaces)."""
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    """Last progress; the sweeper resends a regrade whose chunk message was lost (broker down, worker killed)."""

    started_by: Mapped[User | None] = relationship()
    items: Mapped[list[RegradeItem]] = relationship(back_populates="regrade", order_by="RegradeItem.id")


class RegradeItem(Base):
    """One submission in a batch regrade: its score before and after, and the parts whose points change."""

    __tablename__ = "regrade_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    regrade_id: Mapped[str] = mapped_column(ForeignKey("regrades.id", ondelete="CASCADE"), index=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    """pending, done, failed, or queued (applied: its checkpoints needed an evaluation, so a grading job runs)."""
    old_score: Mapped[float | None] = mapped_column(Float)
    new_score: Mapped[float | None] = mapped_column(Float)
    old_rubric_version: Mapped[str | None] = mapped_column(String(64))
    changes: Mapped[dict[str, Any] | None]
    """part id → {"old": points, "new": points} for the parts whose points change."""
    job_id: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")

    regrade: Mapped[Regrade] = relationship(back_populates="items")
    submission: Mapped[Submission] = relationship()


class WorkerHeartbeat(Base):
    """One worker process's heartbeat: which queues it serves and when it last said it was alive.

    Each worker writes only its own row (its Celery node name), so no two processes race on one row."""

    __tablename__ = "worker_heartbeats"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[str] = mapped_column(String(255))
    """Comma-separated queue names (cpu, gpu, regrade)."""
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    stopped_at: Mapped[datetime | None]
    """Set on a clean shutdown; a killed worker simply stops beating."""


class Extension(Base):
    """Staff's per-student exception to an assignment's policy (append-only: the newest per student counts, and
    the history says who granted what and when). A later due date re-prices the student's submissions on read."""

    __tablename__ = "extensions"

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[str] = mapped_column(ForeignKey("assignments.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    due: Mapped[datetime | None]
    hard_close: Mapped[datetime | None]
    extra_attempts: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str] = mapped_column(Text, default="")
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    """Who granted it over the API (None: `grader extend` on the server)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    granted_by: Mapped[User | None] = relationship(foreign_keys=[granted_by_id])
