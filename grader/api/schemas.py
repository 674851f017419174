"""Response models of the REST API (documented at /docs); the JSON shapes are a public contract."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = Field(description="The request field that was wrong, when there is one.")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Phases(BaseModel):
    received: str | None
    queued: str | None
    running: str | None
    graded: str | None
    failed: str | None


class PartPublic(BaseModel):
    id: str
    status: str = Field(
        description="correct | partial | incorrect | invalid | missing | needs_review | error; before release, "
        "`received` for a part the rubric hides from students"
    )
    points: float | None = Field(description="null for a part hidden from the student before release")
    max_points: float
    feedback: str
    evidence: dict[str, Any] | None = None
    reviewed: bool = Field(default=False, description="A person scored this part (its points are theirs).")
    review: dict[str, Any] | None = Field(
        default=None,
        description="The newest review: points, comment, reason (an override's), by, at, the automatic result it "
        "was made over, and stale (that result has changed since). Staff always; students after release.",
    )


class FilePublic(BaseModel):
    field: str
    name: str
    size: int
    sha256: str


class JobPublic(BaseModel):
    number: int
    reason: str
    status: str
    detail: str
    attempts: int
    worker: str | None
    phases: Phases
    score: float | None
    max_score: float | None
    rubric_version: str | None
    provenance: dict[str, Any] | None = Field(
        None,
        description="What produced the score: grader and rubric versions, file hashes, and per checkpoint the "
        "evaluator version, torch version, device, mode and the test set's hashes (staff only, in `history`).",
    )


class Lateness(BaseModel):
    due: str = Field(description="The due date that applies to this student (an extension's, if any), ISO 8601.")
    due_local: str = Field(description="The same in the assignment's time zone, for people.")
    extended: bool
    minutes_late: float
    penalty_percent: float = Field(description="Percent taken off the score; 0 when on time.")


class SubmissionPublic(BaseModel):
    id: str
    assignment: str
    user: str
    received_at: str | None
    status: str = Field(description="received | queued | running | graded | failed (of the newest grading job)")
    detail: str = Field(description="What the job is doing now, or why it failed.")
    phases: Phases
    attempts: int
    files: list[FilePublic]
    score: float | None = Field(description="After any late penalty (computed now, from the current deadline).")
    score_before_penalty: float | None
    late: Lateness | None = Field(description="The student's due date and lateness; null without a due date.")
    max_score: float | None
    rubric_version: str | None
    graded_by_job: int | None
    released: bool = Field(
        description="Grades are released for this assignment: students see full feedback. Before release a "
        "student's `score` counts only the parts whose points they see."
    )
    parts: list[PartPublic]
    history: list[JobPublic] | None = Field(description="Every grading job, oldest first (staff only).")
    status_url: str


class SubmissionAccepted(BaseModel):
    id: str
    status: str
    status_url: str


class SubmissionList(BaseModel):
    items: list[SubmissionPublic]
    total: int


class AssignmentPublic(BaseModel):
    id: str
    title: str
    rubric_version: str
    max_score: float
    released: bool = Field(description="Students see full feedback (an instructor released, or release_at passed).")
    released_at: str | None = Field(description="When an instructor released grades (null: not by hand).")
    release_at: str | None = Field(description="The rubric's release date, if it sets one.")


class UserPublic(BaseModel):
    username: str
    role: str
