"""The rubric engine: runs each part's checker on a parsed answer sheet and turns outcomes into points."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grader.domain.results import CheckOutcome, GradeReport, PartResult, PartStatus
from grader.errors import InvalidAnswer
from grader.rubric.model import PartSpec, Rubric
from grader.rubric.registry import MISSING, CheckContext, get_checker, lookup


def grade_sheet(
    sheet: Mapping[str, Any],
    rubric: Rubric,
    evaluations: Mapping[str, Mapping[str, Any]] | None = None,
) -> GradeReport:
    """Score every part of `rubric` against `sheet` (and checkpoint `evaluations`, for Q1 parts)."""
    parts = [grade_part(part, sheet, rubric, evaluations or {}) for part in rubric.parts]
    return GradeReport(assignment=rubric.assignment, rubric_version=rubric.version, parts=parts)


def grade_part(
    part: PartSpec,
    sheet: Mapping[str, Any],
    rubric: Rubric,
    evaluations: Mapping[str, Mapping[str, Any]],
) -> PartResult:
    import grader.checks  # noqa: F401  (registers every built-in checker; imported here, on first use, so that
    # importing the engine stays cheap and loads no evaluation code in processes that never grade)

    checker = get_checker(part.checker)
    answer = MISSING if part.answer is None else lookup(sheet, part.answer)
    if part.answer is not None and _is_blank(answer):
        message = f"No answer given for {part.answer}."
        return _result(part, CheckOutcome(PartStatus.MISSING, 0.0, message, public_feedback=message))
    context = CheckContext(part=part, answer=answer, sheet=sheet, rubric=rubric, evaluations=evaluations)
    try:
        outcome = checker(context)
    except InvalidAnswer as exc:
        # says which notation was expected and where the answer breaks it: nothing of the reference
        outcome = CheckOutcome(PartStatus.INVALID, 0.0, exc.message, public_feedback=exc.message)
    return _result(part, outcome)


def _is_blank(answer: Any) -> bool:
    return answer is MISSING or answer is None or (isinstance(answer, str) and not answer.strip())


def _result(part: PartSpec, outcome: CheckOutcome) -> PartResult:
    fraction = min(max(outcome.fraction, 0.0), 1.0)
    return PartResult(
        id=part.id,
        status=outcome.status,
        points=round(part.points * fraction, 4),
        max_points=part.points,
        feedback=outcome.feedback,
        evidence=outcome.evidence,
        public_feedback=outcome.public_feedback,
    )
