"""Integer notations: parameter counts and per-side padding."""

from __future__ import annotations

from typing import Any

import pytest

from grader.answers.numbers import parse_count, parse_padding
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
    ],
)
def test_count_notations_mean_the_same_integer(answer: Any) -> None:
    assert parse_count(answer) == 18432


@pytest.mark.parametrize("answer, expected", [(0, 0), ("1,000,000", 1_000_000), ("17 792", 17792), ("9", 9)])
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
        "1e4",
        "1.8432e4",
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
    "answer", ["two", -1, True, "[2", "2]", [1, 2, 3], [2, "2"], "2.5", 10**6, "9**9**9", "x" * 1000]
)
def test_padding_rejects(answer: Any) -> None:
    with pytest.raises(InvalidAnswer):
        parse_padding(answer)
