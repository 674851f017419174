"""Q2 checkers: parameter counts and receptive fields of residual blocks, against torch reference blocks."""

from __future__ import annotations

from typing import Any

from grader.answers.feedback import scored, with_note
from grader.answers.formats import get_format, parse_includes
from grader.answers.numbers import WholeNumber
from grader.answers.references.blocks import Convention, Slip, parameter_counts, parameter_slips, receptive_field
from grader.answers.specs import BlockSpec
from grader.domain.results import CheckOutcome
from grader.errors import InvalidAnswer
from grader.rubric.registry import MISSING, CheckContext, register_checker

_COUNT = get_format("block_param_count")
_FIELD = get_format("block_receptive_field")
assert _COUNT is not None and _FIELD is not None


@register_checker("block_param_count")
def block_param_count(context: CheckContext) -> CheckOutcome:
    """Any correct counting convention scores; a declared `<answer>_includes` pins the convention. Written as
    `expression = result`, the result is graded and a disagreeing expression is named in the feedback."""
    answer: WholeNumber = _COUNT.parse(context.answer, context.params)
    return with_note(_count_outcome(context, answer.value), answer.note)


def _count_outcome(context: CheckContext, value: int) -> CheckOutcome:
    spec = BlockSpec.from_params(context.params)
    declared = _declared_convention(context)
    counts = parameter_counts(spec)
    evidence: dict[str, Any] = {"accepted": {c.describe(): n for c, n in counts.items()}, "answer": value}
    if declared is not None:
        evidence["declared"] = sorted(declared.includes)
        if counts[declared] == value:
            return _correct(value, declared, spec, evidence)
        if slip := _slip(spec, value, declared):
            return _slipped(value, slip, spec, evidence)
    for convention, expected in counts.items():
        if expected == value:
            if declared is None:
                return _correct(value, convention, spec, evidence)
            evidence["matched"] = convention.describe()
            feedback = (
                f"{value:,} is the count with {convention.describe()}, but your includes list says "
                f"{declared.describe()}; the number and the declared convention must agree."
            )
            public = f"{value:,} is not the count under the convention your includes list declares."  # names no count
            return scored(float(context.params.get("mismatched_includes", 0.0)), feedback, evidence, public=public)
    if slip := _slip(spec, value, None):
        return _slipped(value, slip, spec, evidence)
    feedback = (
        f"{value:,} is not the parameter count of the {spec.describe()} under any convention: count each conv's "
        "weights (out × in × k × k), optionally each conv's biases (out) and each BN layer's γ, β (2 × channels)."
    )
    public = (
        f"{value:,} is not the parameter count of the {spec.kind} block under any convention: count each conv's "
        "weights, optionally each conv's biases and each BN layer's γ, β."
    )
    return scored(0.0, feedback, evidence, public=public)


def _declared_convention(context: CheckContext) -> Convention | None:
    assert context.part.answer is not None
    field = context.part.answer.rsplit(".", 1)[-1] + "_includes"
    raw = context.sibling(field)
    if raw is MISSING or raw is None:
        return None
    try:
        includes = parse_includes(raw)
    except InvalidAnswer as exc:
        raise InvalidAnswer(f"{field}: {exc.message}") from exc
    return Convention(bn="bn" in includes, bias="bias" in includes)


def _slip(spec: BlockSpec, value: int, convention: Convention | None) -> Slip | None:
    for slip in parameter_slips(spec):
        if slip.value == value and convention in (None, slip.convention):
            return slip
    return None


def _correct(value: int, convention: Convention, spec: BlockSpec, evidence: dict[str, Any]) -> CheckOutcome:
    evidence["matched"] = convention.describe()
    feedback = f"Correct: {value:,} parameters, counting {convention.describe()}, for the {spec.describe()}."
    return scored(1.0, feedback, evidence, public=feedback)


def _slipped(value: int, slip: Slip, spec: BlockSpec, evidence: dict[str, Any]) -> CheckOutcome:
    evidence["slip"] = slip.description
    feedback = (
        f"{value:,} looks like a slip for the {spec.describe()}: {slip.description} "
        f"(counting {slip.convention.describe()})."
    )
    public = f"{value:,} is not the parameter count of the {spec.kind} block (counting {slip.convention.describe()})."
    return scored(0.0, feedback, evidence, public=public)


@register_checker("block_receptive_field")
def block_receptive_field(context: CheckContext) -> CheckOutcome:
    """The field is the gradient support of one output pixel through the reference block."""
    spec = BlockSpec.from_params(context.params)
    answer = _FIELD.parse(context.answer, context.params)
    height, width = receptive_field(spec)
    evidence = {"accepted": f"{height}x{width}", "answer": answer.describe()}
    k = spec.kernel_size
    why = f"each {k}x{k} conv (stride 1) widens it by {k - 1}; 1x1 convs and the identity shortcut add nothing"
    wrong = f"{answer.describe()} is not the receptive field of one output pixel of the {spec.kind} block."
    if (answer.height, answer.width) == (height, width):
        feedback = f"Correct: {height}x{width} for the {spec.describe()}: {why}."
        return scored(1.0, feedback, evidence, public=feedback)
    if answer.single_number and answer.height == height * width and height > 1:
        return scored(
            0.0,
            f"{answer.height} looks like the number of pixels in the field; give its size as height x width.",
            evidence,
            public=wrong,
        )
    return scored(
        0.0,
        f"{answer.describe()} is not the receptive field of one output pixel of the {spec.describe()}: {why}.",
        evidence,
        public=wrong,
    )
