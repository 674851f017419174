"""The evaluation result the Q1 checks read: JSON in, the same JSON out, typed fields where the checks decide."""

from __future__ import annotations

import pytest

from grader.domain.evaluation import STUDENT_CODE_ENDS, EvaluationResult, MalformedResult
from grader.domain.status import SandboxStatus

EVALUATED = {
    "status": "evaluated",
    "mode": "reference",
    "accuracy_percent": 91.73,
    "correct": 9173,
    "total": 10000,
    "architecture": {"version": 1, "block": "standard", "depth": 20},
    "preprocessing": {"kind": "mean_std", "mean": [0.5] * 3, "std": [0.25] * 3},
    "checkpoint_sha256": "a" * 64,
    "confusion_matrix": [[1] * 10] * 10,
    "device": "cpu",
}


@pytest.mark.parametrize(
    "stored",
    [
        EVALUATED,
        {"status": "rejected", "message": "a pickled module, not a state_dict", "checkpoint_sha256": "b" * 64},
        {"status": "timed_out", "message": "Running your code took longer than 400 s", "sandbox": {"wall_s": 400}},
        {"status": "error", "message": "GRADER_CIFAR10_ROOT is not set"},
    ],
)
def test_to_json_gives_back_exactly_what_from_json_was_given(stored: dict) -> None:
    assert EvaluationResult.from_json(stored).to_json() == stored


def test_typed_fields_read_as_attributes_and_the_rest_stays_evidence() -> None:
    result = EvaluationResult.from_json(EVALUATED)
    assert result.evaluated and not result.students_to_fix
    assert (result.correct, result.total, result.percent) == (9173, 10000, 91.73)
    assert result.found["depth"] == 20 and result.mode == "reference"
    assert result.evidence == {"confusion_matrix": [[1] * 10] * 10, "device": "cpu"}


@pytest.mark.parametrize(
    ("status", "students"),
    [
        ("rejected", True),
        *[(status.value, True) for status in SandboxStatus if status is not SandboxStatus.OK],
        ("error", False),
        ("evaluated", False),
    ],
)
def test_whose_problem_a_status_is(status: str, students: bool) -> None:
    assert EvaluationResult.from_json({"status": status}).students_to_fix is students


def test_every_way_a_sandboxed_run_ends_badly_is_the_students_and_ok_is_not() -> None:
    assert {status.value for status in SandboxStatus} - {"ok"} == STUDENT_CODE_ENDS


@pytest.mark.parametrize(
    "stored",
    [
        None,
        {},
        {"status": 3},
        {"status": "evaluated", "correct": "9173", "total": 10000},
        {"status": "evaluated", "total": 1.5},
    ],
)
def test_a_malformed_result_is_refused(stored: object) -> None:
    with pytest.raises(MalformedResult):
        EvaluationResult.from_json(stored)  # type: ignore[arg-type]


@pytest.mark.parametrize("counts", [{}, {"correct": 5, "total": 0}, {"correct": 11, "total": 10}])
def test_no_accuracy_without_sound_counts(counts: dict) -> None:
    with pytest.raises(MalformedResult):
        _ = EvaluationResult.from_json({"status": "evaluated", **counts}).percent
