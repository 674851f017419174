"""validate_sheet: format-only checks of every answer, reported by part id or sheet field."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from grader.answers.validate import validate_sheet
from tests.answers.sheets import KEY_A, KEY_KERNELS, REPO_ROOT, full_rubric, set_path

CORRECT: dict[str, Any] = {
    "assignment": "csce636-hw3",
    "q1": {
        "v1_preprocessing": "scale",
        "v2_preprocessing": {"kind": "mean_std", "mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]},
        "v2_config": {"resnet_size": 18, "first_num_filters": 16},
    },
    "q2": {
        "standard_params": 18432,
        "standard_params_includes": [],
        "bottleneck_params": "17,792",
        "standard_receptive_field": "5x5",
        "bottleneck_receptive_field": 3,
        "discussion": 42,
    },
    "q3": {
        "a_mean_shape": "1 x C",
        "a_variance_shape": "1×C",
        "b_mean_shape": "(1, C, 1, 1)",
        "b_variance_shape": "(C,)",
    },
    "q4": {"a_matrix": KEY_A, "b_matrix": "A^T", "c_padding": 4, "c_kernels": KEY_KERNELS},
}


def _with(path: str, value: Any) -> dict[str, Any]:
    sheet = {key: dict(value) if isinstance(value, dict) else value for key, value in CORRECT.items()}
    set_path(sheet, path, value)
    return sheet


def test_a_sheet_in_accepted_notations_has_no_problems_even_with_wrong_answers() -> None:
    assert validate_sheet(CORRECT, full_rubric()) == []


def test_blank_and_missing_answers_are_not_problems() -> None:
    assert validate_sheet({"q2": {"standard_params": None, "bottleneck_params": "  "}}, full_rubric()) == []


@pytest.mark.parametrize(
    "path, value, where, phrase",
    [
        ("q2.standard_params", "lots", "q2.standard_params", "integer"),
        ("q2.standard_params_includes", ["dropout"], "q2.standard_params_includes", "bn and/or bias"),
        ("q2.bottleneck_receptive_field", "3x", "q2.bottleneck_receptive_field", "size"),
        ("q3.a_mean_shape", "1 x K", "q3.a_mean_shape", "unknown axis"),
        ("q3.b_mean_shape", "1 x H x Q x C", "q3.b_mean_shape", "unknown axis"),
        ("q4.a_matrix", "[[1, 2], [3]]", "q4.a_matrix", "different lengths"),
        ("q4.a_matrix", [["9**9**9"]], "q4.a_matrix", "powers"),
        ("q4.b_matrix", "B", "q4.b_matrix", "relation"),
        ("q4.c_padding", "two", "q4.c_padding", "zeros on each side"),
        ("q4.c_kernels", {"U11": ["w1^11"]}, "q4.c_kernels", "taps"),
        ("assignment", "csce636-hw2", "assignment", "csce636-hw2"),
        # declarations the grader cannot use, and keys the sheet may not hold, are problems too
        ("q1.v1_preprocessing", "imagenet", "q1.v1_preprocessing", "unknown preprocessing 'imagenet'"),
        ("q1.v2_preprocessing", {"kind": "mean_std"}, "q1.v2_preprocessing", "needs 'mean' and 'std'"),
        ("q2.standard_param", 18432, "q2.standard_param", "did you mean q2.standard_params?"),
        ("q2.standard_params_include", [], "q2.standard_params_include", "did you mean q2.standard_params_includes?"),
        ("q3.zzz", 1, "q3.zzz", "the keys under q3 are: a_mean_shape"),
        ("q5", {"a": 1}, "q5", "top-level keys are: assignment, q1, q2, q3, q4"),
    ],
)
def test_each_unparsable_answer_is_reported(path: str, value: Any, where: str, phrase: str) -> None:
    problems = validate_sheet(_with(path, value), full_rubric())
    assert len(problems) == 1, problems
    assert problems[0][0] == where and phrase in problems[0][1]


@pytest.mark.parametrize(
    "path, value",
    [
        ("q2.standard_params", "2 × (32 × 3 × 3 × 32) = 18432"),
        ("q2.standard_params", "2 × (32 × 3 × 3 × 32) = 18433"),  # parses; the grade names the disagreement
        ("q2.standard_params", "1.8432e4"),
        ("q2.bottleneck_params", "32 × 128 + 32 × 3 × 3 × 32 + 128 × 32 = 17408"),
        ("q2.standard_receptive_field", "a 5x5 region"),
        ("q3.a_mean_shape", "shape (1, C)"),
        ("q3.b_mean_shape", "the output has shape 1 x 1 x 1 x C"),
        ("q4.c_padding", "3 - 1"),
    ],
)
def test_answers_the_checkers_read_are_not_reported_as_malformed(path: str, value: Any) -> None:
    assert validate_sheet(_with(path, value), full_rubric()) == []


@pytest.mark.parametrize(
    "path, value, phrase",
    [
        ("q2.standard_params", "1.84325e4", "not a whole number"),
        ("q3.a_mean_shape", "shape (1, K)", "unknown axis 'K'"),
        ("q4.c_padding", "9**9**9", "too large"),
    ],
)
def test_grader_check_gives_the_checkers_message(path: str, value: Any, phrase: str) -> None:
    problems = validate_sheet(_with(path, value), full_rubric())
    assert len(problems) == 1 and phrase in problems[0][1]


def test_validation_imports_neither_torch_nor_sympy() -> None:
    code = (
        "import sys, grader.answers.validate, grader.answers.template; "
        "print(sorted(m for m in ('torch', 'sympy') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_json_schema_is_the_same_model_and_forbids_other_keys() -> None:
    from grader.answers.fields import sheet_schema

    schema = sheet_schema(full_rubric())
    assert schema["additionalProperties"] is False and set(schema["properties"]) == {
        "assignment",
        "q1",
        "q2",
        "q3",
        "q4",
    }
    q2 = schema["$defs"]["Csce636Hw3SheetQ2"]
    assert q2["additionalProperties"] is False
    assert {"standard_params", "standard_params_includes", "discussion"} <= set(q2["properties"])
    assert "parameters of the standard residual block" in q2["properties"]["standard_params"]["description"]
