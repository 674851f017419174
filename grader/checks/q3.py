"""Q3 checker: the shape of batch-norm statistics, against a keepdim reduction of a tensor of the question's layout."""

from __future__ import annotations

from grader.answers.feedback import scored
from grader.answers.formats import get_format
from grader.answers.references.batchnorm import batchnorm_shape, named_alternatives
from grader.answers.specs import BatchNormSpec
from grader.domain.results import CheckOutcome
from grader.rubric.registry import CheckContext, register_checker

_SHAPE = get_format("batchnorm_stat_shape")
assert _SHAPE is not None


@register_checker("batchnorm_stat_shape")
def batchnorm_stat_shape(context: CheckContext) -> CheckOutcome:
    spec = BatchNormSpec.from_params(context.params)
    answer: tuple[str, ...] = _SHAPE.parse(context.answer, context.params)
    reference = batchnorm_shape(spec)
    evidence = {"accepted": _text(reference), "answer": _text(answer)}
    reduced = [axis for axis in spec.layout if axis != spec.channel_axis]
    wrong = f"{_text(answer)} is not the shape of the {spec.statistic} for an {spec.describe()} input."
    why = (
        f"batch norm on an {spec.describe()} input averages over {', '.join(reduced)} "
        f"and keeps one {spec.statistic} per channel"
    )
    if answer == reference:
        feedback = f"Correct: {_text(reference)}: {why}."
        return scored(1.0, feedback, evidence, public=feedback)
    # extra leading 1s would broadcast the normalised output to a higher rank, so only as many axes or fewer
    if len(answer) <= len(reference) and _without_leading_ones(answer) == _without_leading_ones(reference):
        return _broadcast_equivalent(context, answer, reference, evidence)
    for alternative in named_alternatives(spec):
        if answer == alternative.shape:
            return scored(0.0, f"{_text(answer)}: {alternative.explanation}.", evidence, public=wrong)
    return scored(
        0.0,
        f"{_text(answer)} is not the shape of the {spec.statistic}: {why}, "
        "with every input axis kept (size 1 where averaged).",
        evidence,
        public=wrong,
    )


def _broadcast_equivalent(
    context: CheckContext, answer: tuple[str, ...], reference: tuple[str, ...], evidence: dict[str, str]
) -> CheckOutcome:
    evidence["matched"] = "broadcast-equivalent"
    if context.params.get("allow_broadcast_equivalent", False):
        note = f"accepted: {_text(answer)} broadcasts like the keepdim shape {_text(reference)}."
        return scored(1.0, f"Correct ({note})", evidence, public="Correct.")
    feedback = (
        f"{_text(answer)} holds the right values and broadcasts the same way, but the expected shape keeps every axis "
        f"of the input ({len(reference)} axes, size 1 where averaged)."
    )
    return scored(float(context.params.get("broadcast_equivalent_fraction", 0.0)), feedback, evidence)


def _without_leading_ones(shape: tuple[str, ...]) -> tuple[str, ...]:
    index = 0
    while index < len(shape) - 1 and shape[index] == "1":
        index += 1
    return shape[index:]


def _text(shape: tuple[str, ...]) -> str:
    return " x ".join(shape)
