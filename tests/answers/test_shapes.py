"""Shape and receptive-field notations."""

from __future__ import annotations

from typing import Any

import pytest

from grader.answers.shapes import parse_receptive_field, parse_shape
from grader.errors import InvalidAnswer

NC = ("N", "C")
NHWC = ("N", "H", "W", "C")


@pytest.mark.parametrize(
    "answer",
    [
        "1 x C",
        "1×C",
        "1*C",
        "1xC",
        "(1, C)",
        "[1, C]",
        [1, "C"],
        ["1", "C"],
        ("1", "C"),
        "1 X C",
        "1 by C",
        "1 x c",
        "(1,C)",
        "1 × C",
        " 1 x C ",
        "1·C",
        "1, C",
        "1 C",
        "1 \\times C",
    ],
)
def test_shape_notations_for_one_by_c(answer: Any) -> None:
    assert parse_shape(answer, NC) == ("1", "C")


@pytest.mark.parametrize("answer", ["1 x 1 x 1 x C", "(1, 1, 1, C)", [1, 1, 1, "C"], "1×1×1×C", "1*1*1*C", "[1,1,1,C]"])
def test_shape_notations_for_nhwc(answer: Any) -> None:
    assert parse_shape(answer, NHWC) == ("1", "1", "1", "C")


@pytest.mark.parametrize(
    "answer, expected", [("(C,)", ("C",)), ("C", ("C",)), (["C"], ("C",)), ("(1, C, 1, 1)", ("1", "C", "1", "1"))]
)
def test_vector_and_channels_first_shapes_parse(answer: Any, expected: tuple[str, ...]) -> None:
    assert parse_shape(answer, NHWC) == expected


@pytest.mark.parametrize(
    "answer",
    [
        "1 x K",
        "1 x",
        "x C",
        "1C",
        "(1, C",
        "1 x C)",
        "[1, C)",
        "",
        "1 ** C",
        "9**9**9",
        "1 x x C",
        True,
        {"a": 1},
        [],
        [1.5, "C"],
        [[1], "C"],
        "1 x " * 50,
        "C" * 500,
        "N x channels",
        "1 x C; drop table",
    ],
)
def test_shape_rejects(answer: Any) -> None:
    with pytest.raises(InvalidAnswer):
        parse_shape(answer, NHWC)


def test_unknown_axis_message_lists_the_names() -> None:
    with pytest.raises(InvalidAnswer, match="N, H, W, C"):
        parse_shape("1 x K", NHWC)


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("5x5", (5, 5)),
        ("5 × 5", (5, 5)),
        ("5", (5, 5)),
        (5, (5, 5)),
        ("5*5", (5, 5)),
        ("(5, 5)", (5, 5)),
        ([5, 5], (5, 5)),
        ("5 by 5", (5, 5)),
        ("5X5", (5, 5)),
        ("5x5 pixels", (5, 5)),
        ("3x5", (3, 5)),
    ],
)
def test_receptive_field_notations(answer: Any, expected: tuple[int, int]) -> None:
    field = parse_receptive_field(answer)
    assert (field.height, field.width) == expected


@pytest.mark.parametrize(
    "answer", ["five", "5x", "0", 0, "5x5x5", True, "9**9**9", "5" * 50, [5], [5, 5, 5], 5.5, "-5"]
)
def test_receptive_field_rejects(answer: Any) -> None:
    with pytest.raises(InvalidAnswer):
        parse_receptive_field(answer)
