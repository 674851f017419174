"""Typed records of a grading outcome: one per rubric part, and the report that sums them.

The shape of `GradeReport.to_json()` is a public contract: `grader grade --json` prints it and the REST API
returns the same object for a graded submission.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class PartStatus(StrEnum):
    """How one rubric part came out."""

    CORRECT = "correct"
    PARTIAL = "partial"
    INCORRECT = "incorrect"
    INVALID = "invalid"
    """The answer is there but could not be parsed; the feedback says what was expected."""
    MISSING = "missing"
    NEEDS_REVIEW = "needs_review"
    """A written or code part an instructor scores by hand; 0 points until then."""
    ERROR = "error"
    """The grader could not check this part (for example a checkpoint it could not evaluate)."""


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """What a checker says about one answer, before the rubric turns it into points."""

    status: PartStatus
    fraction: float
    """Share of the part's points earned, 0.0 to 1.0."""
    feedback: str
    evidence: dict[str, Any] | None = None
    public_feedback: str | None = None
    """What a student may read before grades are released: says what was wrong without quoting the reference.
    None: only a generic line for the status is shown (grader/rubric/disclosure.py)."""


@dataclass(frozen=True, slots=True)
class PartResult:
    """One rubric part, scored."""

    id: str
    status: PartStatus
    points: float
    max_points: float
    feedback: str
    evidence: dict[str, Any] | None = None
    public_feedback: str | None = None
    """Stored beside the full feedback; not part of `to_json()` (the staff's and `grader grade`'s view)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": str(self.status),
            "points": self.points,
            "max_points": self.max_points,
            "feedback": self.feedback,
            "evidence": self.evidence,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PartResult:
        return cls(
            id=data["id"],
            status=PartStatus(data["status"]),
            points=float(data["points"]),
            max_points=float(data["max_points"]),
            feedback=data.get("feedback", ""),
            evidence=data.get("evidence"),
        )


@dataclass(frozen=True, slots=True)
class GradeReport:
    """The whole result of grading one submission with one rubric version."""

    assignment: str
    rubric_version: str
    parts: list[PartResult] = field(default_factory=list)

    @property
    def score(self) -> float:
        return round(sum(part.points for part in self.parts), 4)

    @property
    def max_score(self) -> float:
        return round(sum(part.max_points for part in self.parts), 4)

    def to_json(self) -> dict[str, Any]:
        return {
            "assignment": self.assignment,
            "rubric_version": self.rubric_version,
            "score": self.score,
            "max_score": self.max_score,
            "parts": [part.to_json() for part in self.parts],
        }
