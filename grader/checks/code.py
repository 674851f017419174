"""The Q1 code parts ((a) DataReader, (b) ImageUtils, (d) Model): the verdicts of the sandboxed code checks
(grader/evaluation/student/code_checks.py) turned into points, suggested to a person or final as the rubric says.

    - id: q1.augmentation
      checker: code_check
      params:
        what: "the augmentation and preprocessing code"      # words for feedback
        checks: {parse_record: 3, crop: 3, flip: 2, standardisation: 2}   # each check's share of the part
        partial_credit: 0.5        # a check found partly right earns this much of its share
        final: false               # false: needs_review with suggested points (a person confirms); true: scored

The code checks run once per submission, on the `code` upload (else `v1_code`, else `v2_code`), and reach the
checker as `context.evaluations["code"]`. A check `not_applicable` (e.g. no split function) drops out, and the
others' shares grow to fill the part.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from grader.domain.results import CheckOutcome, PartStatus
from grader.errors import InvalidAnswer, RubricError
from grader.evaluation.preprocessing import declared_preprocessing, describe_preprocessing, normalize_preprocessing
from grader.evaluation.student.code_checks_spec import EVALUATION_LABEL
from grader.rubric.registry import CheckContext, register_checker

CREDIT = {"correct": 1.0, "incorrect": 0.0}
NOT_APPLICABLE = "not_applicable"
DECLARED_LABELS = ("v1", "v2")


@register_checker("code_check")
def code_check(context: CheckContext) -> CheckOutcome:
    weights = _weights(context)
    final = bool(context.params.get("final", False))
    what = str(context.params.get("what", "this code"))
    result = context.evaluations.get(EVALUATION_LABEL)
    if result is None:
        message = f"No code was uploaded (the `code` field, or v1_code / v2_code), so {what} was not run."
        if final:
            return CheckOutcome(PartStatus.MISSING, 0.0, message, public_feedback=message)
        message += f" An instructor will review {what}."
        return CheckOutcome(PartStatus.NEEDS_REVIEW, 0.0, message, None, message)
    status = result.get("status")
    base = {key: result.get(key) for key in ("code_sha256", "code_field", "mode") if result.get(key) is not None}
    base["evaluation_status"] = status
    if status == "error":
        message = f"The grader could not run the code checks ({result.get('message', 'no reason given')})."
        return CheckOutcome(PartStatus.ERROR, 0.0, message, base, message)
    if status != "checked":
        message = f"Your code could not be checked: {result.get('message', status)}"
        return _outcome(context, final, 0.0, PartStatus.INVALID, message, base | {"checks": {}})
    checks = _checks(context, result, weights)
    applicable = {name: check for name, check in checks.items() if check["verdict"] != NOT_APPLICABLE}
    total = sum(weights[name] for name in applicable)
    partial = float(context.params.get("partial_credit", 0.5))
    earned = sum(weights[name] * CREDIT.get(check["verdict"], partial) for name, check in applicable.items())
    fraction = earned / total if total > 0 else 0.0
    verdicts = {check["verdict"] for check in applicable.values()}
    status_found = (
        PartStatus.CORRECT if verdicts <= {"correct"} else PartStatus.INCORRECT if fraction <= 0 else PartStatus.PARTIAL
    )
    lines = [f"{name}: {check['verdict']}. {check['summary']}" for name, check in checks.items()]
    return _outcome(context, final, fraction, status_found, "\n".join(lines), base | {"checks": checks})


def _outcome(
    context: CheckContext, final: bool, fraction: float, status: PartStatus, text: str, evidence: dict[str, Any]
) -> CheckOutcome:
    points = round(context.part.points * fraction, 2)
    if final:
        return CheckOutcome(status, fraction, text, evidence, text)
    suggestion = f"Suggested: {points:g} of {context.part.points:g} points ({status}); an instructor confirms."
    evidence = {"suggested_points": points, "suggested_status": str(status), **evidence}
    text = f"{suggestion}\n{text}"
    return CheckOutcome(PartStatus.NEEDS_REVIEW, 0.0, text, evidence, text)


def _weights(context: CheckContext) -> dict[str, float]:
    raw = context.params.get("checks")
    if not isinstance(raw, Mapping) or not raw:
        raise RubricError(f"part {context.part.id}: params.checks must map check names to their shares")
    weights = {}
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise RubricError(f"part {context.part.id}: the share of {name!r} must be a non-negative number")
        weights[str(name)] = float(value)
    return weights


def _checks(
    context: CheckContext, result: Mapping[str, Any], weights: Mapping[str, float]
) -> dict[str, dict[str, Any]]:
    found = result.get("checks") if isinstance(result.get("checks"), Mapping) else {}
    checks: dict[str, dict[str, Any]] = {}
    for name in weights:
        check = found.get(name)
        if not isinstance(check, Mapping) or check.get("verdict") not in (*CREDIT, "partial", NOT_APPLICABLE):
            checks[name] = {"verdict": "incorrect", "summary": "This check did not run.", "evidence": {}}
            continue
        checks[name] = {"verdict": check["verdict"], "summary": str(check.get("summary", "")), **_evidence(check)}
    if "standardisation" in checks:
        checks["standardisation"] = _as_declared(context, checks["standardisation"], result.get("preprocessing"))
    return checks


def _evidence(check: Mapping[str, Any]) -> dict[str, Any]:
    evidence = check.get("evidence")
    return {"evidence": dict(evidence)} if isinstance(evidence, Mapping) and evidence else {}


def _as_declared(context: CheckContext, check: dict[str, Any], found: Any) -> dict[str, Any]:
    """The test-time standardisation against what the answer sheet declares at q1.<label>_preprocessing (used
    when the checkpoint is evaluated with the grader's own network): a different kind is a partial."""
    if not isinstance(found, Mapping) or "kind" not in found or check["verdict"] != "correct":
        return check
    for label in DECLARED_LABELS:
        raw = declared_preprocessing(context.sheet, label)
        if raw is None:
            continue
        try:
            declared = normalize_preprocessing(raw, where=f"q1.{label}_preprocessing")
        except InvalidAnswer:
            continue
        if not _same_preprocessing(declared, found):
            summary = (
                f"{check['summary']} But your answer sheet declares {describe_preprocessing(declared)} at "
                f"q1.{label}_preprocessing, so your {label} checkpoint is evaluated with another preprocessing "
                "than your code's."
            )
            return {**check, "verdict": "partial", "summary": summary}
    return check


def _same_preprocessing(declared: Mapping[str, Any], found: Mapping[str, Any]) -> bool:
    if declared.get("kind") != found.get("kind"):
        return False
    if declared.get("kind") != "mean_std":
        return True
    pairs = [
        *zip(declared["mean"], found.get("mean", []), strict=False),
        *zip(declared["std"], found.get("std", []), strict=False),
    ]
    return all(abs(float(a) - float(b)) <= 0.01 * max(abs(float(a)), 0.01) for a, b in pairs)
