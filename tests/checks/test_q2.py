"""Q2 checkers: every counting convention, declared conventions, named slips, receptive fields, spec changes."""

from __future__ import annotations

from typing import Any

import pytest

from grader.domain.results import PartResult, PartStatus
from grader.rubric.disclosure import part_view
from grader.rubric.model import Visibility
from tests.answers.sheets import grade_one

STANDARD, BOTTLENECK = "q2.standard_params", "q2.bottleneck_params"


@pytest.mark.parametrize(
    "part, answer, convention",
    [
        (STANDARD, 18432, "conv weights only"),
        (STANDARD, "18,560", "BN γ and β"),
        (STANDARD, "18 496", "conv biases"),
        (STANDARD, 18624, "conv biases + BN"),
        (BOTTLENECK, 17408, "conv weights only"),
        (BOTTLENECK, 17792, "BN γ and β"),
        (BOTTLENECK, 17600, "conv biases"),
        (BOTTLENECK, "17,984", "conv biases + BN"),
    ],
)
def test_every_correct_convention_scores(part: str, answer: Any, convention: str) -> None:
    result = grade_one(part, answer)
    assert result.status is PartStatus.CORRECT and result.points == result.max_points
    assert convention in result.feedback and convention in str(result.evidence["matched"])


@pytest.mark.parametrize(
    "answer, includes",
    [
        (18432, []),
        (18432, "none"),
        (18560, ["bn"]),
        (18560, "BN"),
        (18496, ["bias"]),
        (18624, ["bn", "bias"]),
        (18624, "bias, batchnorm"),
    ],
)
def test_declared_convention_that_matches(answer: int, includes: Any) -> None:
    result = grade_one(STANDARD, answer, others={"q2.standard_params_includes": includes})
    assert result.status is PartStatus.CORRECT


def test_declared_convention_that_disagrees_earns_the_rubric_fraction() -> None:
    result = grade_one(BOTTLENECK, 17792, others={"q2.bottleneck_params_includes": []})
    assert result.status is PartStatus.PARTIAL and result.points == 2.5
    assert "includes list says conv weights only" in result.feedback


@pytest.mark.parametrize(
    "part, answer, includes, slip",
    [
        (STANDARD, 18496, ["bn"], "BN counted for one layer only"),
        (STANDARD, 18688, None, "running mean and variance"),
        (STANDARD, 9216, None, "only one of the two convolutions"),
        (STANDARD, 9280, ["bn"], "only one of the two convolutions"),
        (STANDARD, 19456, None, "projection shortcut"),
        (STANDARD, 6144, None, "3x3 kernel counted as 3 weights"),
        (BOTTLENECK, 18176, None, "running mean and variance"),
        (BOTTLENECK, 9216, None, "only the 3x3 convolution"),
        (BOTTLENECK, 11264, None, "3x3 kernel counted as 3 weights"),
        (BOTTLENECK, 33792, None, "projection shortcut"),
        (BOTTLENECK, 17408, ["bias"], None),
    ],
)
def test_likely_slips_are_named(part: str, answer: int, includes: Any, slip: str | None) -> None:
    others = {f"{part}_includes": includes} if includes is not None else {}
    result = grade_one(part, answer, others=others)
    if slip is None:  # a correct count under another convention than declared
        assert result.status is PartStatus.PARTIAL
        assert "but your includes list says conv weights + conv biases" in result.feedback
    else:
        assert result.status is PartStatus.INCORRECT and result.points == 0
        assert slip in result.feedback


def test_a_wrong_count_says_how_to_count() -> None:
    result = grade_one(STANDARD, 12345)
    assert result.status is PartStatus.INCORRECT
    assert "out × in × k × k" in result.feedback


@pytest.mark.parametrize("answer", ["lots", "18.432,0", True, [1, 2], "9**9**9"])
def test_unparsable_counts_are_invalid(answer: Any) -> None:
    result = grade_one(STANDARD, answer)
    assert result.status is PartStatus.INVALID and "integer" in result.feedback


def test_an_unparsable_includes_list_is_invalid_and_named() -> None:
    result = grade_one(STANDARD, 18432, others={"q2.standard_params_includes": ["dropout"]})
    assert result.status is PartStatus.INVALID
    assert result.feedback.startswith("standard_params_includes:")


def test_changing_the_block_spec_changes_the_accepted_count() -> None:
    wider = {"block": {"kind": "standard", "channels": 64, "kernel_size": 3}, "input_shape": [128, 16, 16, 64]}
    assert grade_one(STANDARD, 2 * 64 * 9 * 64, params=wider).status is PartStatus.CORRECT
    assert grade_one(STANDARD, 18432, params=wider).status is PartStatus.INCORRECT
    narrower = {"block": {"kind": "bottleneck", "channels": 128, "bottleneck_channels": 64, "kernel_size": 3}}
    assert grade_one(BOTTLENECK, 64 * 128 + 64 * 9 * 64 + 128 * 64, params=narrower).status is PartStatus.CORRECT


@pytest.mark.parametrize(
    "part, answer",
    [
        ("q2.standard_receptive_field", "5x5"),
        ("q2.standard_receptive_field", "5 × 5"),
        ("q2.standard_receptive_field", 5),
        ("q2.standard_receptive_field", "5*5"),
        ("q2.bottleneck_receptive_field", "3x3"),
        ("q2.bottleneck_receptive_field", "(3, 3)"),
    ],
)
def test_receptive_fields(part: str, answer: Any) -> None:
    assert grade_one(part, answer).status is PartStatus.CORRECT


@pytest.mark.parametrize(
    "part, answer, phrase",
    [
        ("q2.standard_receptive_field", "3x3", "not the receptive field"),
        ("q2.bottleneck_receptive_field", "5x5", "1x1 convs and the identity shortcut add nothing"),
        ("q2.standard_receptive_field", 25, "number of pixels"),
        ("q2.standard_receptive_field", "5x3", "not the receptive field"),
    ],
)
def test_wrong_receptive_fields(part: str, answer: Any, phrase: str) -> None:
    result = grade_one(part, answer)
    assert result.status is PartStatus.INCORRECT and phrase in result.feedback


def test_receptive_field_follows_the_kernel_size() -> None:
    params = {"block": {"kind": "standard", "channels": 8, "kernel_size": 5}}
    assert grade_one("q2.standard_receptive_field", "9x9", params=params).status is PartStatus.CORRECT
    pre = {
        "block": {"kind": "bottleneck", "channels": 16, "bottleneck_channels": 4, "kernel_size": 3, "activation": "pre"}
    }
    assert grade_one("q2.bottleneck_receptive_field", "3x3", params=pre).status is PartStatus.CORRECT


# The answer key writes its counts as `expression = result`: that notation, and arithmetic, score like the number.


@pytest.mark.parametrize(
    "part, answer",
    [
        (STANDARD, "2 × (32 × 3 × 3 × 32) = 18432"),
        (STANDARD, "$2 \\times (32 \\times 3 \\times 3 \\times 32) = 18432$"),
        (STANDARD, "2*(3*3*32*32)"),
        (STANDARD, "1.8432e4"),
        (STANDARD, "1.8432 × 10^4"),
        (STANDARD, "2 × (32 × 3 × 3 × 32 + 32 × 2) = 18560"),
        (BOTTLENECK, "32 × 128 + 32 × 3 × 3 × 32 + 128 × 32 = 17408"),
    ],
)
def test_the_keys_own_notation_scores_full_points(part: str, answer: str) -> None:
    result = grade_one(part, answer)
    assert result.status is PartStatus.CORRECT and result.points == result.max_points
    assert "equals" not in result.feedback  # no disagreement to name


def _before_release(result: PartResult) -> dict[str, Any]:
    """The part as a student sees it before grades are released (visibility full)."""
    stored = result.to_json() | {"public_feedback": result.public_feedback}
    return part_view(stored, visibility=Visibility.FULL, disclosed=False)


def test_a_disagreeing_result_is_graded_as_written_and_the_disagreement_named() -> None:
    result = grade_one(STANDARD, "2 × (32 × 3 × 3 × 32) = 18433")
    assert result.status is PartStatus.INCORRECT and result.points == 0
    note = "your expression '2 × (32 × 3 × 3 × 32)' equals 18432 but you wrote = 18433"
    assert note in result.feedback.lower()
    shown = _before_release(result)
    assert note in shown["feedback"].lower()
    # the student sees what their own expression equals, never the accepted counts or which convention matched
    assert "accepted" not in (shown["evidence"] or {}) and "18,432" not in shown["feedback"]
    assert "18560" not in shown["feedback"] and "18,560" not in shown["feedback"]


def test_a_right_result_after_wrong_working_scores_with_the_slip_named() -> None:
    result = grade_one(STANDARD, "2 × (32 × 3 × 3 × 31) = 18432")
    assert result.status is PartStatus.CORRECT and result.points == result.max_points
    assert "equals 17856 but you wrote = 18432" in result.feedback
    assert "equals 17856 but you wrote = 18432" in _before_release(result)["feedback"]


@pytest.mark.parametrize(
    "answer, phrase",
    [
        ("1.84325e4", "18432.5, not a whole number"),
        ("2 × (32 × 3 × 3 × 32", "'(' is not closed by ')'"),
        ("2 × (32 × 3 × 3 × 32) =", "one side of '=' is empty"),
    ],
)
def test_arithmetic_that_does_not_give_a_whole_count_is_invalid(answer: str, phrase: str) -> None:
    result = grade_one(STANDARD, answer)
    assert result.status is PartStatus.INVALID and phrase in result.feedback and phrase in str(result.public_feedback)
