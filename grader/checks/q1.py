"""Q1 checkers: architecture verification and test-accuracy scoring from checkpoint evaluation results."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grader.domain.evaluation import EvaluationResult, MalformedResult
from grader.domain.results import CheckOutcome, PartStatus
from grader.errors import RubricError
from grader.evaluation.preprocessing import (
    KINDS,
    declared_preprocessing,
    describe_preprocessing,
    preprocessing_path,
    preprocessing_problem,
)
from grader.evaluation.student.code_checks_spec import EVALUATION_LABEL
from grader.rubric.registry import CheckContext, register_checker

EVIDENCE_KEYS = (
    "accuracy_percent",
    "correct",
    "total",
    "per_class_accuracy_percent",
    "confusion_matrix",
    "class_names",
    "architecture",
    "preprocessing",
    "forward_variant",
    "variants_tried",
    "device",
    "torch_version",
    "checkpoint_sha256",
    "evaluator_version",
    "mode",
    "isolation",
    "code_sha256",
)
ARCHITECTURE_FRACTIONS = {"wrong_activation": 0.5, "wrong_block": 0.5, "wrong_both": 0.0, "same_checkpoint": 0.0}
"""Defaults; a rubric overrides them with `params.fractions`. `same_checkpoint` caps a part whose file was also
uploaded under a label it fits better (one network earns architecture credit once)."""
NEAR_CHANCE_PERCENT = 20.0


@register_checker("resnet_architecture")
def resnet_architecture(context: CheckContext) -> CheckOutcome:
    """The checkpoint's inferred block type and activation order against `params.expected`: from the weights
    alone, so the preprocessing declaration (right, wrong, missing or unusable) never changes this part."""
    label, result = _evaluation(context)
    if isinstance(result, CheckOutcome):
        return result
    expected = _expected(context)
    found = result.found
    wrong = [key for key in ("activation", "block") if key in expected and found.get(key) != expected[key]]
    case = "wrong_both" if len(wrong) == 2 else f"wrong_{wrong[0]}" if wrong else "match"
    fractions = _fractions(context)
    fraction = 1.0 if case == "match" else fractions[case]
    duplicates = _same_checkpoint(context, label, result)
    if duplicates and _fits_better_elsewhere(context, label, found, duplicates):
        fraction = min(fraction, fractions["same_checkpoint"])
    feedback = _architecture_feedback(label, expected, found, wrong) + _duplicate_note(label, duplicates)
    evidence = _evidence(result) | {"expected": dict(expected), "mismatches": wrong, "same_checkpoint_as": duplicates}
    public = feedback  # about the student's own checkpoint only: nothing of a reference to withhold
    code = _network_code_check(context, expected)
    if code is not None:  # for staff (it quotes reference parameter counts); the points come from the weights alone
        feedback += f" Your code's ResNet ({code['verdict']}): {code['summary']}"
        evidence["code_check"] = code
    return CheckOutcome(_status(fraction, perfect=not wrong), fraction, feedback, evidence, public)


@register_checker("cifar10_accuracy")
def cifar10_accuracy(context: CheckContext) -> CheckOutcome:
    """Test accuracy against `target_percent` / `no_deduction_percent`, and `deduction` below that."""
    label, result = _evaluation(context)
    if isinstance(result, CheckOutcome):
        return result
    target = float(context.params.get("target_percent", 90))
    floor = float(context.params.get("no_deduction_percent", 80))
    try:
        percent = result.percent
    except MalformedResult as exc:
        message = f"The grader could not read the {label} checkpoint's accuracy ({exc}); it is scored once it can."
        return CheckOutcome(PartStatus.ERROR, 0.0, message, _evidence(result), message)
    fraction = 1.0 if percent >= floor else deduction_fraction(percent, floor, context.params.get("deduction"))
    text = f"Test accuracy of the {label} checkpoint: {percent:.2f} % "
    text += f"({result.correct}/{result.total} CIFAR-10 test images). "
    if percent >= target:
        text += f"Target of {target:g} % met."
    elif percent >= floor:
        text += f"Below the {target:g} % target, but above {floor:g} %: no deduction."
    else:
        text += f"Below {floor:g} %: {100 * fraction:.0f} % of the points."
    text += _preprocessing_note(context, label, result, percent, floor) + _duplicate_note(
        label, _same_checkpoint(context, label, result)
    )
    evidence = _evidence(result) | {"preprocessing_declared": declared_preprocessing(context.sheet, label) is not None}
    return CheckOutcome(_status(fraction, perfect=percent >= floor), fraction, text, evidence, text)


def deduction_fraction(percent: float, floor: float, schedule: Any) -> float:
    """Share of the points below `floor`: linear to zero at `zero_at_percent`, or a table of steps."""
    schedule = schedule or {"kind": "linear", "zero_at_percent": 10}
    if not isinstance(schedule, Mapping):
        raise RubricError(f"deduction must be a mapping, got {schedule!r}")
    if schedule.get("kind") == "linear":
        zero = float(schedule.get("zero_at_percent", 10))
        return min(max((percent - zero) / (floor - zero), 0.0), 1.0)
    if schedule.get("kind") == "steps":
        # steps: [[min_percent, fraction], ...]: the highest min_percent reached gives the fraction.
        reached = [float(f) for minimum, f in schedule.get("steps", []) if percent >= float(minimum)]
        return max(reached, default=0.0)
    raise RubricError(f"deduction kind must be linear or steps, got {schedule.get('kind')!r}")


def _evaluation(context: CheckContext) -> tuple[str, EvaluationResult | CheckOutcome]:
    """The evaluation result for the part's checkpoint, or the outcome that replaces scoring it."""
    label = context.params.get("checkpoint")
    if not isinstance(label, str) or not label:
        raise RubricError(f"part {context.part.id}: params.checkpoint must name a checkpoint label (v1, v2)")
    stored = context.evaluations.get(label)
    if stored is None:
        message = (
            f"No {label} checkpoint was uploaded: upload the {label} model's weights "
            "(torch.save(model.state_dict(), ...) or .safetensors) to have it evaluated."
        )
        return label, CheckOutcome(PartStatus.MISSING, 0.0, message, public_feedback=message)
    try:
        result = EvaluationResult.from_json(stored)
    except MalformedResult as exc:
        message = f"The grader could not read the {label} checkpoint's evaluation ({exc}); it is scored once it can."
        return label, CheckOutcome(PartStatus.ERROR, 0.0, message, {}, message)
    if result.students_to_fix:
        message = f"The {label} checkpoint could not be evaluated: {result.message or 'no reason given'}"
        return label, CheckOutcome(PartStatus.INVALID, 0.0, message, _evidence(result), message)
    if not result.evaluated:
        reason = result.message or f"evaluation status {result.status!r}"
        message = f"The grader could not evaluate the {label} checkpoint ({reason}); the part is scored once it can be."
        return label, CheckOutcome(PartStatus.ERROR, 0.0, message, _evidence(result), message)
    return label, result


def _network_code_check(context: CheckContext, expected: Mapping[str, Any]) -> dict[str, Any] | None:
    """The code checks' verdict on the student's NetWork.ResNet for this version (evaluation/student/code_checks.py)."""
    result = context.evaluations.get(EVALUATION_LABEL)
    checks = result.get("checks") if isinstance(result, Mapping) and result.get("status") == "checked" else None
    check = checks.get(f"network_v{expected.get('version')}") if isinstance(checks, Mapping) else None
    if not isinstance(check, Mapping) or "verdict" not in check:
        return None
    return {key: check[key] for key in ("verdict", "summary", "evidence") if key in check}


def _expected(context: CheckContext) -> Mapping[str, Any]:
    expected = context.params.get("expected")
    if not isinstance(expected, Mapping) or not ({"activation", "block"} & set(expected)):
        raise RubricError(f"part {context.part.id}: params.expected needs activation and/or block")
    return expected


def _fractions(context: CheckContext) -> dict[str, float]:
    given = context.params.get("fractions") or {}
    unknown = set(given) - set(ARCHITECTURE_FRACTIONS)
    if unknown:
        raise RubricError(f"part {context.part.id}: unknown fractions {sorted(unknown)}")
    return {key: float(value) for key, value in (ARCHITECTURE_FRACTIONS | dict(given)).items()}


def _status(fraction: float, *, perfect: bool) -> PartStatus:
    if perfect and fraction >= 1.0:
        return PartStatus.CORRECT
    return PartStatus.PARTIAL if fraction > 0 else PartStatus.INCORRECT


def _architecture_feedback(label: str, expected: Mapping[str, Any], found: Mapping[str, Any], wrong: list[str]) -> str:
    want = f"{expected.get('activation', 'any')}-activation {expected.get('block', 'any')} blocks"
    name = found.get("name", "an unrecognised network")
    shortcut = found.get("shortcut", "?")
    text = f"The {label} checkpoint is a {name}, {found.get('blocks_per_stage')} blocks per stage, {shortcut} shortcuts"
    if not wrong:
        return text + f": {want}, as expected."
    reasons = "; ".join(found.get("evidence", [])[:4])
    return text + f". Expected {want} for {label}; differs in {' and '.join(wrong)}. Evidence: {reasons}."


def _same_checkpoint(context: CheckContext, label: str, result: EvaluationResult) -> list[str]:
    sha = result.checkpoint_sha256
    return sorted(
        other
        for other, evaluation in context.evaluations.items()
        if other != label and sha and evaluation.get("checkpoint_sha256") == sha
    )


def _fits_better_elsewhere(context: CheckContext, label: str, found: Mapping[str, Any], others: list[str]) -> bool:
    """One file uploaded under several labels earns architecture credit once, where it fits best: fewest
    mismatches, then the label whose version matches (v1/v2 is the activation order), then label order.
    Elsewhere the rubric's same_checkpoint fraction caps it."""
    fits = {
        part.params["checkpoint"]: _fit(part.params.get("expected") or {}, found, part.params["checkpoint"])
        for part in context.rubric.parts
        if part.checker == "resnet_architecture" and part.params.get("checkpoint") in [label, *others]
    }
    return label in fits and min(fits.values()) < fits[label]


def _fit(expected: Mapping[str, Any], found: Mapping[str, Any], label: str) -> tuple[int, bool, str]:
    misses = sum(1 for key in ("activation", "block") if key in expected and found.get(key) != expected[key])
    return misses, expected.get("version") != found.get("version"), label


def _duplicate_note(label: str, duplicates: list[str]) -> str:
    if not duplicates:
        return ""
    return f" Note: the {label} checkpoint is the same file (sha256) as the {', '.join(duplicates)} checkpoint."


def _preprocessing_note(
    context: CheckContext, label: str, result: EvaluationResult, percent: float, floor: float
) -> str:
    """Which preprocessing was used and why, where it can explain the accuracy: a missing or unusable declaration
    (the default was used instead), and below the deduction floor, a hint that it may not match the training."""
    used = describe_preprocessing(result.preprocessing or {"kind": "?"})
    if result.mode == "student_code":  # the student's own function was run: the declaration plays no part
        if percent >= NEAR_CHANCE_PERCENT:
            return ""
        function = result.preprocessing_function or "your preprocessing function"
        return f" This is near chance (10 %): check that {function} ({used}) prepares test images as in training."
    where = preprocessing_path(label)
    problem = preprocessing_problem(context.sheet, label)
    note = ""
    if declared_preprocessing(context.sheet, label) is None:
        note += f" No preprocessing declared at {where}; evaluated with the default {used} (the starter code's)."
    elif problem is not None:
        note += f" The preprocessing declaration cannot be used ({problem}); evaluated with the default {used} instead."
    if percent < NEAR_CHANCE_PERCENT:
        note += (
            f" This is near chance (10 %): check that {where} declares the test-time preprocessing your model "
            f"was trained with (used here: {used}; accepted kinds: {', '.join(KINDS)})."
        )
    elif percent < floor:
        note += f" Check that {where} declares the preprocessing your model was trained with (used here: {used})."
    return note


def _evidence(result: EvaluationResult) -> dict[str, Any]:
    """The result's evidence; `evaluation_status` says how the evaluation ended (`evaluated`, `timed_out`...),
    so clients can tell the reasons apart without reading the feedback."""
    stored = result.to_json()
    return {key: stored[key] for key in EVIDENCE_KEYS if key in stored} | {"evaluation_status": result.status}
