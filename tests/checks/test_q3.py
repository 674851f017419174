"""Q3 checker: batch-norm statistic shapes, broadcast-equivalent answers and named mistakes."""

from __future__ import annotations

from typing import Any

import pytest

from grader.domain.results import PartStatus
from tests.answers.sheets import grade_one


@pytest.mark.parametrize(
    "part, answer",
    [
        ("q3.a_mean_shape", "1 x C"),
        ("q3.a_variance_shape", "1×C"),
        ("q3.a_mean_shape", [1, "C"]),
        ("q3.a_mean_shape", "(1, C)"),
        ("q3.b_mean_shape", "1 x 1 x 1 x C"),
        ("q3.b_variance_shape", "[1, 1, 1, C]"),
        ("q3.b_variance_shape", "1*1*1*C"),
        # words around the shape
        ("q3.a_mean_shape", "shape (1, C)"),
        ("q3.a_variance_shape", "the output has shape 1 x C"),
        ("q3.a_mean_shape", "(1, C) matrix"),
        ("q3.b_mean_shape", "$1 \\times 1 \\times 1 \\times C$"),
    ],
)
def test_correct_shapes(part: str, answer: Any) -> None:
    result = grade_one(part, answer)
    assert result.status is PartStatus.CORRECT and result.points == result.max_points


@pytest.mark.parametrize(
    "part, answer", [("q3.a_mean_shape", "(C,)"), ("q3.a_mean_shape", "C"), ("q3.b_mean_shape", "1 x C")]
)
def test_broadcast_equivalent_is_partial_when_the_rubric_does_not_allow_it(part: str, answer: Any) -> None:
    result = grade_one(part, answer)
    assert result.status is PartStatus.PARTIAL and result.points == result.max_points * 0.5
    assert "broadcasts the same way" in result.feedback


def test_broadcast_equivalent_is_accepted_with_a_note_when_allowed() -> None:
    result = grade_one("q3.b_variance_shape", "(C,)", params={"allow_broadcast_equivalent": True})
    assert result.status is PartStatus.CORRECT and "broadcasts like the keepdim shape" in result.feedback


@pytest.mark.parametrize(
    "part, answer, phrase",
    [
        ("q3.b_mean_shape", "(1, C, 1, 1)", "NCHW"),
        ("q3.b_variance_shape", "1 x C x 1 x 1", "NCHW"),
        ("q3.a_mean_shape", "N x C", "shape of x itself"),
        ("q3.b_mean_shape", "1 x H x W x C", "batch only"),
        ("q3.b_mean_shape", "N x 1 x 1 x 1", "layer norm"),
        ("q3.b_mean_shape", "N x 1 x 1 x C", "instance norm"),
        ("q3.a_mean_shape", "C x 1", "wrong order"),
        ("q3.a_mean_shape", "1 x 1 x 1 x C", "not the shape"),
        ("q3.a_mean_shape", "1 x 32", "not the shape"),
    ],
)
def test_named_mistakes(part: str, answer: Any, phrase: str) -> None:
    result = grade_one(part, answer)
    assert result.status is PartStatus.INCORRECT and phrase in result.feedback


@pytest.mark.parametrize("answer", ["1 x K", "one by C", True, {"C": 1}, "(" * 100])
def test_unparsable_shapes_are_invalid(answer: Any) -> None:
    result = grade_one("q3.b_mean_shape", answer)
    assert result.status is PartStatus.INVALID and result.feedback


def test_layout_comes_from_the_rubric() -> None:
    result = grade_one("q3.b_mean_shape", "1 x C x 1 x 1", params={"layout": "N C H W"})
    assert result.status is PartStatus.CORRECT
