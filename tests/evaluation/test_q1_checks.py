"""The Q1 checkers: accuracy scoring, architecture verification, and how they report missing or bad files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from grader.checks.q1 import deduction_fraction
from grader.domain.results import GradeReport, PartResult, PartStatus
from grader.errors import RubricError
from grader.evaluation.preprocessing import evaluation_preprocessing
from grader.rubric.engine import grade_sheet
from grader.rubric.model import Rubric, load_rubric
from tests.evaluation.conftest import SUBSET

REPO = Path(__file__).resolve().parents[2]
V1 = {
    "version": 1,
    "activation": "post",
    "block": "standard",
    "name": "ResNet-20 v1 (post-activation, standard blocks)",
    "blocks_per_stage": [3, 3, 3],
    "shortcut": "option_a",
    "evidence": ["layer2.0: bn1 has 32 channels = conv1's output"],
}
V2 = {
    "version": 2,
    "activation": "pre",
    "block": "bottleneck",
    "name": "ResNet-29 v2 (pre-activation, bottleneck blocks)",
    "blocks_per_stage": [3, 3, 3],
    "shortcut": "projection",
    "evidence": ["layer1.0: first BN has 16 channels = the block's input"],
}
V2_STANDARD = {**V2, "block": "standard", "name": "ResNet-20 v2 (pre-activation, standard blocks)"}


@pytest.fixture(scope="module")
def rubric() -> Rubric:
    return load_rubric(REPO / "rubrics" / "csce636-hw3.yaml")


def _evaluated(correct: int, architecture: dict[str, Any] = V1, sha: str = "a" * 64, **extra: Any) -> dict[str, Any]:
    return {
        "status": "evaluated",
        "accuracy_percent": round(correct / 100, 2),
        "correct": correct,
        "total": 10_000,
        "per_class_accuracy_percent": {"airplane": 90.0},
        "confusion_matrix": [[1]],
        "architecture": architecture,
        "preprocessing": {"kind": "scale"},
        "device": "cpu",
        "torch_version": "2.x",
        "checkpoint_sha256": sha,
        **extra,
    }


def _parts(rubric: Rubric, sheet: dict, evaluations: dict) -> dict[str, PartResult]:
    report: GradeReport = grade_sheet(sheet, rubric, evaluations)
    return {part.id: part for part in report.parts if part.id.startswith("q1.")}


SHEET = {"q1": {"v1_preprocessing": "scale", "v2_preprocessing": {"kind": "scale"}}}


@pytest.mark.parametrize(
    ("correct", "status", "points", "says"),
    [
        (9173, PartStatus.CORRECT, 10.0, "Target of 90 % met"),
        (9000, PartStatus.CORRECT, 10.0, "Target of 90 % met"),
        (8999, PartStatus.CORRECT, 10.0, "no deduction"),
        (8000, PartStatus.CORRECT, 10.0, "no deduction"),
        (4500, PartStatus.PARTIAL, 5.0, "Below 80 %: 50 % of the points"),
        (1000, PartStatus.INCORRECT, 0.0, "near chance"),
        (300, PartStatus.INCORRECT, 0.0, "near chance"),
    ],
)
def test_accuracy_scoring_follows_the_key(
    rubric: Rubric, correct: int, status: PartStatus, points: float, says: str
) -> None:
    part = _parts(rubric, SHEET, {"v1": _evaluated(correct)})["q1.v1_accuracy"]
    assert (part.status, part.points, part.max_points) == (status, points, 10.0)
    assert says in part.feedback
    assert part.evidence is not None and part.evidence["correct"] == correct
    assert {
        "accuracy_percent",
        "total",
        "per_class_accuracy_percent",
        "confusion_matrix",
        "architecture",
        "device",
        "torch_version",
        "checkpoint_sha256",
    } <= set(part.evidence)


def test_undeclared_preprocessing_is_named_in_the_feedback(rubric: Rubric) -> None:
    result = _evaluated(1012, preprocessing={"kind": "per_image_standardization"})
    part = _parts(rubric, {}, {"v2": result})["q1.v2_accuracy"]
    assert "No preprocessing declared at q1.v2_preprocessing" in part.feedback
    assert "per_image_standardization" in part.feedback and "near chance" in part.feedback
    assert part.evidence is not None and part.evidence["preprocessing_declared"] is False


def test_missing_rejected_and_error_evaluations(rubric: Rubric) -> None:
    evaluations = {
        "v1": {"status": "rejected", "message": "checkpoint holds Python objects", "checkpoint_sha256": "b" * 64},
        "v2": {"status": "error", "message": "worker lost"},
    }
    parts = _parts(rubric, SHEET, evaluations)
    assert parts["q1.v1_accuracy"].status is PartStatus.INVALID
    assert "checkpoint holds Python objects" in parts["q1.v1_architecture"].feedback
    assert parts["q1.v2_architecture"].status is PartStatus.ERROR and "worker lost" in parts["q1.v2_accuracy"].feedback
    missing = _parts(rubric, SHEET, {})
    assert missing["q1.v1_accuracy"].status is PartStatus.MISSING and missing["q1.v2_architecture"].points == 0
    assert "upload the v2 model's weights" in missing["q1.v2_architecture"].feedback


def test_a_stored_result_that_cannot_be_read_is_the_graders_error_not_the_students(rubric: Rubric) -> None:
    evaluations = {
        "v1": {"status": "evaluated", "correct": 9173, "total": 0, "architecture": {"version": 1}},
        "v2": {"status": "evaluated", "correct": "9173", "total": 10000},
    }
    parts = _parts(rubric, SHEET, evaluations)
    assert parts["q1.v1_accuracy"].status is PartStatus.ERROR and parts["q1.v1_accuracy"].points == 0
    assert "could not read the v1 checkpoint's accuracy" in parts["q1.v1_accuracy"].feedback
    assert parts["q1.v2_accuracy"].status is PartStatus.ERROR and parts["q1.v2_architecture"].status is PartStatus.ERROR
    assert "correct must be a whole number" in parts["q1.v2_architecture"].feedback


IMAGENET = {"kind": "mean_std", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
DECLARATIONS = [
    # (case, declared at q1.v1_preprocessing (None: absent), what the accuracy feedback says about it)
    ("right: ImageNet mean/std", IMAGENET, None),
    ("missing", None, "No preprocessing declared at q1.v1_preprocessing"),
    ("wrong kind: raw pixels", "none", None),
    ("wrong kind: ÷255 only", "scale", None),
    ("unusable: imagenet is no kind", "imagenet", "unknown preprocessing 'imagenet'"),
    ("unusable: mean_std without numbers", {"kind": "mean_std"}, "mean_std needs 'mean' and 'std'"),
]


@pytest.mark.parametrize(("case", "declared", "says"), DECLARATIONS, ids=[d[0] for d in DECLARATIONS])
@pytest.mark.parametrize("correct", [9173, 1012])
def test_the_declaration_never_changes_the_architecture_part(
    rubric: Rubric, case: str, declared: Any, says: str | None, correct: int
) -> None:
    sheet = {"q1": {"v1_preprocessing": declared}} if declared is not None else {}
    parts = _parts(rubric, sheet, {"v1": _evaluated(correct, preprocessing=evaluation_preprocessing(sheet, "v1"))})
    architecture = parts["q1.v1_architecture"]
    assert (architecture.status, architecture.points) == (PartStatus.CORRECT, 20.0), architecture.feedback
    accuracy = parts["q1.v1_accuracy"]
    assert accuracy.status is not PartStatus.INVALID and accuracy.evidence is not None
    assert ("near chance" in accuracy.feedback) == (correct < 2000)
    if says is None:
        assert "No preprocessing declared" not in accuracy.feedback and "cannot be used" not in accuracy.feedback
    else:
        assert says in accuracy.feedback
    if "unusable" in case:
        assert "cannot be used" in accuracy.feedback and "evaluated with the default" in accuracy.feedback


def test_without_an_evaluation_an_unusable_declaration_is_not_the_reason_given(rubric: Rubric) -> None:
    parts = _parts(rubric, {"q1": {"v1_preprocessing": "whitening"}}, {})
    assert parts["q1.v1_architecture"].status is PartStatus.MISSING
    assert "upload the v1 model's weights" in parts["q1.v1_architecture"].feedback


def test_student_code_results_do_not_mention_the_declaration(rubric: Rubric) -> None:
    result = _evaluated(
        1012,
        mode="student_code",
        preprocessing={"kind": "per_image_standardization"},
        preprocessing_function="ImageUtils.parse_record(record, training=False)",
    )
    accuracy = _parts(rubric, {}, {"v1": result})["q1.v1_accuracy"]
    assert "No preprocessing declared" not in accuracy.feedback
    assert "near chance" in accuracy.feedback and "ImageUtils.parse_record" in accuracy.feedback


REAL_CASES = [
    # (case, declared (None: absent), accuracy status on the first SUBSET test images, what its feedback says)
    ("right: ImageNet mean/std", IMAGENET, PartStatus.CORRECT, "Target of 90 % met"),
    ("missing: the default per-image standardisation", None, PartStatus.CORRECT, "No preprocessing declared"),
    ("wrong kind: raw pixels", "none", PartStatus.PARTIAL, "near chance"),
    ("wrong kind: ÷255 only", "scale", PartStatus.PARTIAL, "Check that q1.v1_preprocessing declares"),
    ("unusable: imagenet is no kind", "imagenet", PartStatus.CORRECT, "cannot be used"),
]


@pytest.mark.parametrize(("case", "declared", "accuracy_status", "says"), REAL_CASES, ids=[c[0] for c in REAL_CASES])
def test_the_real_resnet20_earns_the_architecture_points_whatever_the_declaration(
    rubric: Rubric,
    resnet20_checkpoint: Path,
    cifar10_root: Path,
    case: str,
    declared: Any,
    accuracy_status: PartStatus,
    says: str,
) -> None:
    from grader.evaluation.evaluate import evaluate_in_process

    sheet = {"q1": {"v1_preprocessing": declared}} if declared is not None else {}
    result = evaluate_in_process(
        resnet20_checkpoint,
        preprocessing=evaluation_preprocessing(sheet, "v1"),
        cifar10_root=cifar10_root,
        device="cpu",
        limit=SUBSET,
    )
    parts = _parts(rubric, sheet, {"v1": result})
    architecture, accuracy = parts["q1.v1_architecture"], parts["q1.v1_accuracy"]
    assert (architecture.status, architecture.points) == (PartStatus.CORRECT, 20.0), architecture.feedback
    assert "ResNet-20 v1" in architecture.feedback
    assert accuracy.status is accuracy_status and says in accuracy.feedback, accuracy.feedback


def test_a_small_v2_net_earns_the_architecture_points_with_an_unusable_declaration(
    rubric: Rubric, cifar10_root: Path, tmp_path: Path
) -> None:
    import torch

    from grader.evaluation.evaluate import evaluate_in_process
    from tests.evaluation.nets import StarterResNet

    torch.manual_seed(0)
    path = tmp_path / "v2.pt"
    torch.save(StarterResNet(2, 1).state_dict(), path)
    sheet = {"q1": {"v2_preprocessing": {"kind": "whitening"}}}
    preprocessing = evaluation_preprocessing(sheet, "v2")
    result = evaluate_in_process(path, preprocessing=preprocessing, cifar10_root=cifar10_root, device="cpu", limit=100)
    parts = _parts(rubric, sheet, {"v2": result})
    assert (parts["q1.v2_architecture"].status, parts["q1.v2_architecture"].points) == (PartStatus.CORRECT, 20.0)
    assert "cannot be used" in parts["q1.v2_accuracy"].feedback


@pytest.mark.parametrize(
    ("label", "architecture", "status", "points", "says"),
    [
        ("v1", V1, PartStatus.CORRECT, 20.0, "as expected"),
        ("v2", V2, PartStatus.CORRECT, 20.0, "as expected"),
        ("v2", V2_STANDARD, PartStatus.PARTIAL, 10.0, "differs in block"),
        ("v1", {**V1, "activation": "pre"}, PartStatus.PARTIAL, 10.0, "differs in activation"),
        ("v1", V2, PartStatus.INCORRECT, 0.0, "differs in activation and block"),
    ],
)
def test_architecture_verification(
    rubric: Rubric, label: str, architecture: dict, status: PartStatus, points: float, says: str
) -> None:
    part = _parts(rubric, SHEET, {label: _evaluated(9100, architecture)})[f"q1.{label}_architecture"]
    assert (part.status, part.points) == (status, points), part.feedback
    assert says in part.feedback
    assert part.evidence is not None and part.evidence["architecture"] == architecture


@pytest.mark.parametrize(
    ("architecture", "v1_points", "v2_points"),
    [
        (V2, 0.0, 20.0),  # a v2 network uploaded twice: credit as v2 only
        (V2_STANDARD, 0.0, 10.0),  # one miss either way; pre-activation makes it a version 2
        (V1, 20.0, 0.0),
        ({**V1, "block": "bottleneck"}, 10.0, 0.0),  # post-activation bottleneck: a version 1
    ],
)
def test_the_same_file_for_both_versions_earns_architecture_credit_once(
    rubric: Rubric, architecture: dict, v1_points: float, v2_points: float
) -> None:
    same = _evaluated(9100, architecture, sha="c" * 64)
    parts = _parts(rubric, SHEET, {"v1": same, "v2": same})
    v1, v2 = parts["q1.v1_architecture"], parts["q1.v2_architecture"]
    assert (v1.points, v2.points) == (v1_points, v2_points)
    assert v1.evidence is not None and v1.evidence["same_checkpoint_as"] == ["v2"]
    assert "same file" in v2.feedback and "same file" in parts["q1.v1_accuracy"].feedback


def test_rubric_fractions_decide_the_points(rubric: Rubric) -> None:
    from dataclasses import replace

    part = rubric.part("q1.v1_architecture")
    strict = replace(part, params={**part.params, "fractions": {"wrong_activation": 0.25}})
    report = grade_sheet(SHEET, replace(rubric, parts=(strict,)), {"v1": _evaluated(9100, {**V1, "activation": "pre"})})
    assert report.parts[0].points == 5.0
    with pytest.raises(RubricError, match="unknown fractions"):
        bad = replace(part, params={**part.params, "fractions": {"typo": 1}})
        grade_sheet(SHEET, replace(rubric, parts=(bad,)), {"v1": _evaluated(9100)})


@pytest.mark.parametrize(
    ("percent", "schedule", "fraction"),
    [
        (45.0, None, 0.5),
        (10.0, {"kind": "linear", "zero_at_percent": 10}, 0.0),
        (5.0, {"kind": "linear", "zero_at_percent": 10}, 0.0),
        (79.99, {"kind": "linear", "zero_at_percent": 10}, pytest.approx(0.99986, abs=1e-4)),
        (72.0, {"kind": "steps", "steps": [[70, 0.8], [60, 0.6]]}, 0.8),
        (65.0, {"kind": "steps", "steps": [[70, 0.8], [60, 0.6]]}, 0.6),
        (40.0, {"kind": "steps", "steps": [[70, 0.8], [60, 0.6]]}, 0.0),
    ],
)
def test_deduction_schedules(percent: float, schedule: Any, fraction: Any) -> None:
    assert deduction_fraction(percent, 80.0, schedule) == fraction


def test_q1_points_add_up_to_100(rubric: Rubric) -> None:
    assert sum(part.points for part in rubric.parts if part.id.startswith("q1.")) == 100


def test_the_q1_checkers_and_the_evaluation_surface_do_not_import_torch() -> None:
    # q1.py is loaded on its own: the checks package also imports other questions' checkers.
    code = (
        "import sys, importlib.util; import grader.evaluation; "
        "from grader.evaluation import evaluation_cache_key, read_preprocessing; "
        "spec = importlib.util.spec_from_file_location('q1_alone', 'grader/checks/q1.py'); "
        "spec.loader.exec_module(importlib.util.module_from_spec(spec)); "
        "print('torch' in sys.modules)"
    )
    output = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "False"
