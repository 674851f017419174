"""A checkpoint's evaluation result as the Q1 checks read it: typed where the checks decide on it, the rest kept as
evidence. It is stored and sent as JSON (`to_json` gives back exactly what `from_json` was given)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from grader.domain.status import EvaluationStatus, SandboxStatus

STUDENT_CODE_ENDS = frozenset(status.value for status in SandboxStatus if status.is_students_doing)
"""How a sandboxed run of the student's own code can end other than evaluated: the student's to fix."""


class MalformedResult(ValueError):
    """A stored result without the fields its status requires (a bug or an old row, never a student's doing)."""


@dataclass(frozen=True)
class EvaluationResult:
    status: str
    """`evaluated`, `rejected` (not a usable checkpoint), `error` (the grader could not), or how a sandboxed run of
    the student's code ended (`timed_out`, `memory_limit`, ...: STUDENT_CODE_ENDS)."""
    message: str | None = None
    """Why it was not evaluated, in the student's terms."""
    mode: str | None = None
    """`reference` (the grader's network) or `student_code` (the student's NetWork.py)."""
    correct: int | None = None
    total: int | None = None
    accuracy_percent: float | None = None
    architecture: Mapping[str, Any] | None = None
    """What the weights (or the run's trace) say the network is: version, block, activation, depth, evidence."""
    preprocessing: Mapping[str, Any] | None = None
    preprocessing_function: str | None = None
    checkpoint_sha256: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    """Every other field, as produced (per-class accuracy, confusion matrix, device, versions, trace...)."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvaluationResult:
        if not isinstance(data, Mapping) or not isinstance(data.get("status"), str):
            raise MalformedResult("an evaluation result needs a status")
        typed = {name: data[name] for name in _TYPED if name in data}
        for name in ("correct", "total"):
            if name in typed and type(typed[name]) is not int:
                raise MalformedResult(f"{name} must be a whole number, got {typed[name]!r}")
        return cls(**typed, evidence={key: value for key, value in data.items() if key not in _TYPED})

    def to_json(self) -> dict[str, Any]:
        typed = {name: getattr(self, name) for name in _TYPED if getattr(self, name) is not None}
        return {**self.evidence, **typed}

    @property
    def evaluated(self) -> bool:
        return self.status == EvaluationStatus.EVALUATED

    @property
    def students_to_fix(self) -> bool:
        """Not evaluated, for a reason of the student's: an unusable file, or their code's run ended badly."""
        return self.status == EvaluationStatus.REJECTED or self.status in STUDENT_CODE_ENDS

    @property
    def percent(self) -> float:
        """The exact accuracy (`accuracy_percent` is rounded for display); MalformedResult without the counts."""
        if self.correct is None or not self.total or not 0 <= self.correct <= self.total:
            raise MalformedResult(f"no accuracy in {self.correct}/{self.total} images")
        return 100.0 * self.correct / self.total

    @property
    def found(self) -> Mapping[str, Any]:
        """The architecture, empty when none was inferred."""
        return self.architecture or {}


_TYPED = tuple(f.name for f in fields(EvaluationResult) if f.name != "evidence")
