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
        "1 x C; rm -rf /",
    ],
)
def test_shape_rejects(answer: Any) -> None:
    with pytest.raises(InvalidAnswer):
        parse_shape(answer, NHWC)


@pytest.mark.parametrize(
    "answer",
    [
        "shape (1, C)",
        "the output has shape 1 x C",
        "(1, C) matrix",
        "a (1, C) matrix",
        "Shape: 1×C.",
        "shape [1, C]",
        "mean has shape 1xC",
        "$1 \\times C$",
        "1 x C (one mean per channel)",
        "(the output is 1 x C)",
        "1 x C, i.e. one mean per channel",
        "it's 1 x C",
        "of shape 1 x C where C is the number of channels",
        "1 by C vector",
        "1 x C; drop table",
    ],
)
def test_words_around_a_shape_are_read(answer: str) -> None:
    assert parse_shape(answer, NC) == ("1", "C")


@pytest.mark.parametrize(
    "answer, phrase",
    [
        ("shape (1, K)", "unknown axis 'K' in '1, K'"),
        ("shape 1xK", "unknown axis 'K'"),
        ("shape 1 x K.", "unknown axis 'K'"),
        ("shape (1, C", "'(1, C': '(' is not closed by ')'"),
        ("shape 1 x C)", "')' has no opening bracket"),
        ("shape [1, C)", "'[' is not closed by ']'"),
        ("N x C input gives 1 x C", "more than one shape like (N, 1) or N x 1 ('N x C' and '1 x C')"),
        ("no idea", "could not find a shape like (N, 1) or N x 1 in 'no idea'"),
        (
            "shape -1 x C",
            "could not read a shape like (N, 1) or N x 1 in 'shape -1 x C': unexpected '-' at character 7",
        ),
        ("(1, C", "'(' is not closed by ')'"),
        ("1 x C)", "')' has no opening bracket"),
    ],
)
def test_shapes_among_words_are_refused_with_a_true_message(answer: str, phrase: str) -> None:
    with pytest.raises(InvalidAnswer) as info:
        parse_shape(answer, NC)
    assert phrase in info.value.message


@pytest.mark.parametrize("answer", ["shape (1, K)", "the answer is (1, Q)", "shape (1, C) x", "size [1, K] vector"])
def test_a_bracket_that_is_there_is_never_called_missing(answer: str) -> None:
    """Regression: words before "(1, C)" made the grader say "')' has no opening bracket"."""
    with pytest.raises(InvalidAnswer) as info:
        parse_shape(answer, NC)
    assert "no opening bracket" not in info.value.message and "not closed" not in info.value.message


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
        ("a 5x5 region", (5, 5)),
        ("receptive field (5, 5)", (5, 5)),
        ("The field is 5x5.", (5, 5)),
        ("5x5, since there are 2 layers", (5, 5)),
        ("it is 5 pixels wide", (5, 5)),
    ],
)
def test_receptive_field_notations(answer: Any, expected: tuple[int, int]) -> None:
    field = parse_receptive_field(answer)
    assert (field.height, field.width) == expected


@pytest.mark.parametrize(
    "answer",
    [
        "five",
        "5x",
        "0",
        0,
        "5x5x5",
        True,
        "9**9**9",
        "5" * 50,
        [5],
        [5, 5, 5],
        5.5,
        "-5",
        "5.5",
        "field -5",
        "five by five",
        "5 x 5 (two 3x3 convs)",
    ],
)
def test_receptive_field_rejects(answer: Any) -> None:
    with pytest.raises(InvalidAnswer):
        parse_receptive_field(answer)


@pytest.mark.parametrize(
    "answer, phrase",
    [
        ("5 x 5 (two 3x3 convs)", "more than one size like 7x7 ('5 x 5' and '3x3')"),
        ("five by five", "could not find a size like 7x7 in 'five by five'"),
        ("field (5, 5", "'(' is not closed by ')'"),
    ],
)
def test_receptive_fields_among_words_are_refused_with_a_true_message(answer: str, phrase: str) -> None:
    with pytest.raises(InvalidAnswer) as info:
        parse_receptive_field(answer)
    assert phrase in info.value.message
