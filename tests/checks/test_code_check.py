"""The Q1 code parts: the code checks' verdicts turned into suggested (or final) points by the HW3 rubric."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from grader.domain.results import PartResult, PartStatus
from grader.rubric.engine import grade_part
from grader.rubric.model import Rubric, load_rubric

REPO = Path(__file__).resolve().parents[2]
CHECKS = {
    "q1.data_reader": ("load_train", "load_test", "split"),
    "q1.augmentation": ("parse_record", "crop", "flip", "standardisation"),
    "q1.model": ("training_loss", "batch_norm", "zero_grad", "checkpoint"),
}


@pytest.fixture(scope="module")
def rubric() -> Rubric:
    return load_rubric(REPO / "rubrics" / "csce636-hw3.yaml")


def checked(**verdicts: str) -> dict[str, Any]:
    """A code-check result: every check correct unless named in `verdicts`."""
    names = [name for names in CHECKS.values() for name in names]
    checks = {
        name: {"verdict": verdicts.get(name, "correct"), "summary": f"{name} said so.", "evidence": {}}
        for name in names
    }
    return {
        "status": "checked",
        "mode": "code_checks",
        "code_sha256": "c" * 64,
        "code_field": "code",
        "checks": checks,
        "preprocessing": {"kind": "per_image_standardization"},
    }


def grade(
    rubric: Rubric, part: str, result: dict[str, Any] | None, *, final: bool = False, sheet: dict | None = None
) -> PartResult:
    spec = rubric.part(part)
    if final:
        spec = replace(spec, params={**spec.params, "final": True})
    evaluations = {} if result is None else {"code": result}
    return grade_part(spec, sheet or {}, rubric, evaluations)


@pytest.mark.parametrize(
    ("part", "verdicts", "suggested", "status"),
    [
        ("q1.augmentation", {}, 10, PartStatus.CORRECT),
        ("q1.augmentation", {"parse_record": "incorrect"}, 7, PartStatus.PARTIAL),
        ("q1.augmentation", {"crop": "partial", "flip": "incorrect"}, 6.5, PartStatus.PARTIAL),
        ("q1.augmentation", dict.fromkeys(CHECKS["q1.augmentation"], "incorrect"), 0, PartStatus.INCORRECT),
        ("q1.data_reader", {"load_test": "incorrect"}, 6, PartStatus.PARTIAL),
        ("q1.data_reader", {"split": "not_applicable"}, 10, PartStatus.CORRECT),
        ("q1.data_reader", {"split": "not_applicable", "load_test": "incorrect"}, 5.56, PartStatus.PARTIAL),
        ("q1.model", {"batch_norm": "incorrect"}, 13, PartStatus.PARTIAL),
        ("q1.model", {"zero_grad": "partial"}, 18, PartStatus.PARTIAL),
    ],
)
def test_verdicts_become_suggested_points_for_a_person_to_confirm(
    rubric: Rubric, part: str, verdicts: dict[str, str], suggested: float, status: PartStatus
) -> None:
    result = grade(rubric, part, checked(**verdicts))
    assert result.status is PartStatus.NEEDS_REVIEW and result.points == 0
    assert result.evidence is not None
    assert result.evidence["suggested_points"] == pytest.approx(suggested, abs=0.01)
    assert result.evidence["suggested_status"] == str(status)
    assert result.feedback.startswith(f"Suggested: {result.evidence['suggested_points']:g} of")
    for name in CHECKS[part]:
        assert f"{name}: " in result.feedback and result.evidence["checks"][name]["summary"] == f"{name} said so."

    final = grade(rubric, part, checked(**verdicts), final=True)
    assert final.status is status and final.points == pytest.approx(suggested, abs=0.01)


def test_without_code_a_person_reviews_as_before(rubric: Rubric) -> None:
    result = grade(rubric, "q1.model", None)
    assert result.status is PartStatus.NEEDS_REVIEW and "No code was uploaded" in result.feedback
    assert grade(rubric, "q1.model", None, final=True).status is PartStatus.MISSING


@pytest.mark.parametrize("status", ["timed_out", "crashed", "memory_limit", "rejected_invalid_file"])
def test_code_that_could_not_be_run_suggests_nothing(rubric: Rubric, status: str) -> None:
    result = grade(rubric, "q1.augmentation", {"status": status, "message": f"Running your code {status}."})
    assert result.status is PartStatus.NEEDS_REVIEW and result.evidence is not None
    assert result.evidence["suggested_points"] == 0 and result.evidence["evaluation_status"] == status
    assert status in result.feedback
    assert grade(rubric, "q1.augmentation", {"status": status, "message": "x"}, final=True).status is PartStatus.INVALID


def test_a_grader_error_is_an_error_not_a_verdict(rubric: Rubric) -> None:
    result = grade(rubric, "q1.data_reader", {"status": "error", "message": "sandbox unavailable"})
    assert result.status is PartStatus.ERROR and "sandbox unavailable" in result.feedback


@pytest.mark.parametrize(
    ("declared", "verdict"),
    [
        (None, "correct"),
        ("per_image_standardization", "correct"),
        ("per_channel_standardization", "partial"),
        ({"kind": "mean_std", "mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]}, "partial"),
    ],
)
def test_standardisation_is_compared_with_the_sheets_declaration(rubric: Rubric, declared: Any, verdict: str) -> None:
    sheet = {} if declared is None else {"q1": {"v1_preprocessing": declared}}
    result = grade(rubric, "q1.augmentation", checked(), sheet=sheet)
    assert result.evidence is not None
    check = result.evidence["checks"]["standardisation"]
    assert check["verdict"] == verdict
    if verdict == "partial":
        assert "q1.v1_preprocessing" in check["summary"]


def test_the_network_code_check_is_evidence_next_to_the_architecture_parts(rubric: Rubric) -> None:
    result = checked()
    result["checks"]["network_v2"] = {
        "verdict": "partial",
        "summary": "Version 2 builds a ResNet-20 v2.",
        "evidence": {},
    }
    v2 = {
        "status": "evaluated",
        "architecture": {"version": 2, "activation": "pre", "block": "bottleneck", "name": "ResNet-29 v2"},
        "checkpoint_sha256": "a" * 64,
    }
    part = grade_part(rubric.part("q1.v2_architecture"), {}, rubric, {"v2": v2, "code": result})
    assert part.status is PartStatus.CORRECT and part.points == 20  # the points come from the weights alone
    assert "Your code's ResNet (partial): Version 2 builds a ResNet-20 v2." in part.feedback
    assert part.evidence is not None and part.evidence["code_check"]["verdict"] == "partial"
    assert part.public_feedback is not None and "Your code's ResNet" not in part.public_feedback  # staff only
