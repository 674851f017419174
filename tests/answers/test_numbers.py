"""Integer notations: parameter counts and per-side padding, as numbers, arithmetic or `expression = result`."""

from __future__ import annotations

from typing import Any

import pytest

from grader.answers.numbers import parse_count, parse_padding, read_count, read_padding
from grader.errors import InvalidAnswer


@pytest.mark.parametrize(
    "answer",
    [
        18432,
        "18432",
        "18,432",
        "18 432",
        "18_432",
        "18'432",
        "18\u202f432",
        18432.0,
        "18432.0",
        " 18432 ",
        "18432 parameters",
        "18,432 params",
        # arithmetic, as the answer key writes it and as students type it
        "2 × (32 × 3 × 3 × 32) = 18432",
        "2 × (32 × 3 × 3 × 32)",
        "2*(3*3*32*32)",
        "2 x 3x3 x 32 x 32",
        "2(3x3x32x32)",
        "2 · 9216",
        "2 ⋅ 9216",
        "36864 / 2",
        "36864 ÷ 2",
        "20000 - 1568",
        "20000 − 1568",
        "−(−18432)",
        "2^11 × 9",
        "2**11 * 9",
        "9 × 2¹¹",
        "[2 × 9216]",
        "{2 × 9216}",
        "$2 \\times (32 \\times 3 \\times 3 \\times 32) = 18432$",
        "2 \\cdot \\left(9216\\right)",
        "2 × 9,216",
        "18,432 = 2 × 9,216",
        "2 × 9216 = 18432 parameters",
        "2 × 9216 = 18 432",
        "2 × 9216 == 18432",
        "3 × 6144 = 2 × 9216 = 18432",
        # scientific notation, when the value is a whole number
        "1.8432e4",
        "1.8432E+04",
        "1.8432e+4",
        "184320e-1",
        "1.8432 × 10^4",
        "1.8432 x 10^4",
        "1.8432 * 10**4",
        "1.8432·10⁴",
        "1.8432 × 10^{4}",
    ],
)
def test_count_notations_mean_the_same_integer(answer: Any) -> None:
    assert parse_count(answer) == 18432


@pytest.mark.parametrize(
    "answer, expected",
    [
        (0, 0),
        ("1,000,000", 1_000_000),
        ("17 792", 17792),
        ("9", 9),
        ("32 × 128 + 32 × 3 × 3 × 32 + 128 × 32 = 17408", 17408),  # the key's bottleneck count
        ("2 × (32 × 3 × 3 × 32 + 32 × 2) = 18560", 18560),  # the key's count with batch norm
        ("1e4", 10_000),
        ("1e12", 10**12),
        ("2 + 3 × 4", 14),
        ("(2 + 3) × 4", 20),
        ("2 × 3 ^ 2", 18),
        ("2^3^2", 512),
        ("-2^2 + 10", 6),
        ("10^-1 × 50", 5),
        ("7 / 2 × 2", 7),
    ],
)
def test_other_counts(answer: Any, expected: int) -> None:
    assert parse_count(answer) == expected


@pytest.mark.parametrize(
    "answer",
    [
        "18,43,2",
        "1,8432",
        "18,432 432",
        "18, 432",
        "18.5",
        18.5,
        "1.84325e4",
        "1e-3",
        "18432 / 7",
        "1e13",
        "2^64",
        "abc",
        "",
        "-5",
        -5,
        True,
        False,
        None,
        [18432],
        {"n": 1},
        float("nan"),
        float("inf"),
        "9**9**9",
        "9" * 100,
        10**30,
        "18,432.5",
        "18 432,000",
        "2 × (32 × 3 × 3 × 32",
        "2 × 32) × 3",
        "2 3",
        "3x",
        "x3",
        "0x4800",
        "2 ×",
        "= 18432",
        "2 × 9216 =",
        "2 × 9216 = = 18432",
        "2 ^ 0.5",
        "1 / 0",
        "0 ^ -1",
        "1e999",
        "1e99999999999",
        "10^64 × 10^64",
        "(" * 17 + "1" + ")" * 17,
        "eval('18432')",
        "__import__('os')",
        "18432 apples",
        "2 × [9216)",
    ],
)
def test_count_rejects(answer: Any) -> None:
    with pytest.raises(InvalidAnswer) as info:
        parse_count(answer)
    assert "integer" in info.value.message or "count" in info.value.message or "whole" in info.value.message


@pytest.mark.parametrize(
    "answer, expected",
    [
        (2, (2, 2)),
        ("2", (2, 2)),
        ("3 - 1", (2, 2)),
        ("(3 - 1) / 2", (1, 1)),
        ("3 - 1 = 2", (2, 2)),
        ("2 zeros on each side", (2, 2)),
        ("2 zeros per side", (2, 2)),
        ("[ 1 , 3 ]", (1, 3)),
        ("[2, 2]", (2, 2)),
        ([2, 2], (2, 2)),
        ("(2,2)", (2, 2)),
        ("(1, 3)", (1, 3)),
        (0, (0, 0)),
    ],
)
def test_padding_notations(answer: Any, expected: tuple[int, int]) -> None:
    assert parse_padding(answer) == expected


@pytest.mark.parametrize(
    "answer",
    [
        "two",
        -1,
        True,
        "[2",
        "2]",
        [1, 2, 3],
        [2, "2"],
        "2.5",
        10**6,
        "9**9**9",
        "x" * 1000,
        "1 - 2",
        "[2, 2)",
        "2, 2, 2",
        "1e3",
    ],
)
def test_padding_rejects(answer: Any) -> None:
    with pytest.raises(InvalidAnswer):
        parse_padding(answer)


def test_padding_with_disagreeing_working_is_read_as_written_with_a_note() -> None:
    padding = read_padding("3 - 1 = 3")
    assert (padding.left, padding.right) == (3, 3)
    assert padding.note is not None and "'3 - 1' equals 2 but you wrote = 3" in padding.note


@pytest.mark.parametrize(
    "answer, phrase",
    [
        ("1.84325e4", "'1.84325e4' is 18432.5, not a whole number"),
        ("18432 / 7", "18432/7 (about 2633.14), not a whole number"),
        ("2 × 9216.25", "18432.5, not a whole number"),
        (18432.5, "not a whole number"),
        ("2 × 9216 = 18432.5", "'18432.5' is 18432.5, not a whole number"),
        ("lots", 'expected an integer such as 12345, "12,345"'),
        ("2 × (32 × 3", "'(' is not closed by ')'"),
        ("2 × 32) × 3", "')' at character 7 has no opening bracket"),
        ("2 3", "write an operator between 2 and 3"),
        ("3 y 3", "unexpected 'y' at character 3"),
        ("3x", "x means multiplication only between two numbers"),
        ("9**9**9", "the exponent 387420489 is too large (at most 64)"),
        ("2^0.5", "exponents must be whole numbers"),
        ("1e999", "the exponent in '1e999' is too large"),
        ("2 × 9216 =", "one side of '=' is empty"),
        ("-18432", "between 0 and 1,000,000,000,000"),
        ("1 / (3 - 3)", "divides by zero"),
    ],
)
def test_count_messages_say_what_is_wrong(answer: Any, phrase: str) -> None:
    with pytest.raises(InvalidAnswer) as info:
        parse_count(answer)
    assert phrase in info.value.message


@pytest.mark.parametrize(
    "answer, value, note",
    [
        (
            "2 × (32 × 3 × 3 × 32) = 18433",
            18433,
            "Your expression '2 × (32 × 3 × 3 × 32)' equals 18432 but you wrote = 18433",
        ),
        ("2 × (32 × 3 × 3 × 31) = 18432", 18432, "equals 17856 but you wrote = 18432"),
        ("18432 = 2 × 9217", 18434, "Your expression '18432' equals 18432 but you wrote = 2 × 9217"),
        ("3 × 6144 = 2 × 9000 = 18432", 18432, "'2 × 9000' equals 18000 but you wrote = 18432"),
        ("1/3 = 0", 0, "equals 1/3 (about 0.333333) but you wrote = 0"),
    ],
)
def test_a_disagreeing_result_is_graded_and_the_disagreement_named(answer: str, value: int, note: str) -> None:
    read = read_count(answer)
    assert read.value == value
    assert read.note is not None and note in read.note and "the result after '=' is what is graded" in read.note


@pytest.mark.parametrize("answer", ["2 × (32 × 3 × 3 × 32) = 18432", "18432", 18432, "1.8432e4", "18,432 = 2 × 9,216"])
def test_an_agreeing_answer_has_no_note(answer: Any) -> None:
    assert read_count(answer).note is None
