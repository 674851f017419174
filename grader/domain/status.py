"""Status values stored in the database and shown by the API."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    STUDENT = "student"
    TA = "ta"
    INSTRUCTOR = "instructor"

    @property
    def is_staff(self) -> bool:
        return self is not Role.STUDENT


class JobStatus(StrEnum):
    """Phases of a grading job, in order; graded and failed are final."""

    RECEIVED = "received"
    QUEUED = "queued"
    RUNNING = "running"
    GRADED = "graded"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.GRADED, JobStatus.FAILED)


class EvaluationStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    EVALUATED = "evaluated"
    REJECTED = "rejected"
    """The file is not a usable checkpoint (the student's problem; the feedback says why)."""
    ERROR = "error"
    """The grader could not evaluate it after its retries (infrastructure)."""

    @property
    def is_final(self) -> bool:
        return self in (EvaluationStatus.EVALUATED, EvaluationStatus.REJECTED, EvaluationStatus.ERROR)
