"""Scoring helpers shared by the Q2–Q4 checkers: status from a fraction, partial credit from rubric params."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from grader.domain.results import CheckOutcome, PartStatus
from grader.rubric.disclosure import STATUS_LINES


def scored(
    fraction: float, feedback: str, evidence: dict[str, Any] | None = None, *, public: str | None = None
) -> CheckOutcome:
    """correct at 1, incorrect at 0, partial in between. `public`: the feedback a student may read before
    release (no reference value in it); None shows only a generic line for the status."""
    if fraction >= 1.0:
        status = PartStatus.CORRECT
    elif fraction <= 0.0:
        status = PartStatus.INCORRECT
    else:
        status = PartStatus.PARTIAL
    return CheckOutcome(status, max(0.0, min(1.0, fraction)), feedback, evidence, public)


def with_note(outcome: CheckOutcome, note: str | None) -> CheckOutcome:
    """`outcome` with a note on how the answer was written (its working disagreeing with its stated result)
    added to the feedback and to the public feedback: the note quotes only the student's own answer."""
    if not note:
        return outcome
    public = outcome.public_feedback or STATUS_LINES.get(outcome.status.value, "")
    return replace(outcome, feedback=f"{outcome.feedback} {note}", public_feedback=f"{public} {note}".strip())


def partial_credit(params: Mapping[str, Any], mistakes: Iterable[str]) -> float:
    """Product of the rubric's `partial.<mistake>` fractions; a mistake the rubric does not list earns 0."""
    table = params.get("partial") or {}
    fraction = 1.0
    for mistake in mistakes:
        fraction *= float(table.get(mistake, 0.0))
    return fraction


def tolerances(params: Mapping[str, Any]) -> tuple[float, float]:
    """(rtol, atol) for numeric probes; atol is never zero, so entries that should be 0 compare sanely."""
    return float(params.get("rtol", 1e-6)), max(float(params.get("atol", 1e-9)), 1e-12)
