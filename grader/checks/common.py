"""Checkers that need no reference implementation: written answers routed to manual review."""

from __future__ import annotations

from grader.domain.results import CheckOutcome, PartStatus
from grader.rubric.registry import MISSING, CheckContext, register_checker


@register_checker("manual_review")
def manual_review(context: CheckContext) -> CheckOutcome:
    """A written or code part: stored as needs_review with 0 points until an instructor scores it."""
    what = context.params.get("what", "this answer")
    if context.part.answer is not None and context.answer is not MISSING:
        text = context.answer if isinstance(context.answer, str) else repr(context.answer)
        evidence = {"answer_chars": len(text)}
    else:
        evidence = None
    message = f"An instructor will review {what}."
    return CheckOutcome(PartStatus.NEEDS_REVIEW, 0.0, message, evidence, public_feedback=message)
