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


class SandboxStatus(StrEnum):
    """How a sandboxed run ended; every value but `ok` is a result for the student, not a grader error."""

    OK = "ok"
    TIMED_OUT = "timed_out"
    MEMORY_LIMIT = "memory_limit"
    RESOURCE_LIMIT = "resource_limit"
    CRASHED = "crashed"
    REJECTED_UNSAFE = "rejected_unsafe"
    """Set by callers: the upload was refused before anything ran (zip bomb, path traversal, links)."""
    REJECTED_INVALID_FILE = "rejected_invalid_file"
    """Set by callers: a file is not usable (a checkpoint that is not weights only, missing NetWork.py)."""

    @property
    def is_students_doing(self) -> bool:
        """Every end but `ok`: the student's code (or upload) made the run end so, not the grader."""
        return self is not SandboxStatus.OK
