"""Weight notations and the allow-list expression grammar, including hostile text."""

from __future__ import annotations

from typing import Any

import pytest

from grader.answers.expressions import Weight, WeightSpace, parse_entry, parse_expression
from grader.errors import InvalidAnswer

SPACE = WeightSpace(taps=3, sources=2, targets=2)
VALUES = {w: 100.0 * w.tap + 10.0 * w.source + w.target for w in SPACE.all()}


@pytest.mark.parametrize(
    "text",
    [
        "w1^12",
        "w_1^{12}",
        "w_1^(12)",
        "w1^{12}",
        "\\omega_1^{12}",
        "omega_1^{12}",
        "ω1^12",
        "ω_1^{12}",
        "w_1^{1,2}",
        "w_1^{1 2}",
        "w^{12}_1",
        "W_1^{12}",
        "\\omega_{1}^{(12)}",
        "w_{1}^{12}",
        "w_1 ^ {12}",
        "Omega_1^{12}",
        "ω^{12}_{1}",
    ],
)
def test_weight_notations_name_the_same_weight(text: str) -> None:
    expr = parse_expression(text, SPACE)
    assert expr.op == "weight" and expr.weight == Weight(tap=1, source=1, target=2)


@pytest.mark.parametrize(
    "text, value",
    [
        ("0", 0.0),
        ("0.0", 0.0),
        ("-0", 0.0),
        ("2*w1^11 - w1^11", 111.0),
        ("(w1^11 + w2^12)/2", (111 + 212) / 2),
        ("w1^11·2", 222.0),
        ("2 \\cdot w1^11", 222.0),
        ("−w1^11", -111.0),
        ("+w1^11", 111.0),
        (".5*w1^11", 55.5),
    ],
)
def test_expressions_evaluate(text: str, value: float) -> None:
    assert parse_expression(text, SPACE).evaluate(VALUES) == pytest.approx(value)


@pytest.mark.parametrize("value, expected", [(0, 0.0), (0.0, 0.0), (1.5, 1.5), ("w3^21", 321.0)])
def test_entries_from_yaml_scalars(value: Any, expected: float) -> None:
    assert parse_entry(value, SPACE).evaluate(VALUES) == expected


HOSTILE = [
    "9**9**9",
    "2^3",
    "2**3",
    "w1",
    "w4^11",
    "w0^11",
    "w1^13",
    "w1^111",
    "x",
    "__import__('os').system('ls')",
    "lambda: 0",
    "eval('1')",
    "w1^11/w2^11",
    "1/0",
    "1/(w1^11-w1^11)",
    "(" * 12 + "1" + ")" * 12,
    "-" * 50 + "1",
    "1" * 20,
    "a" * 1000,
    "w1^11 w2^11",
    "",
    "   ",
    "w1^11 +",
    "()",
    "w1^11)",
    "(w1^11",
    "w_1^{}",
    "w_1^{a}",
    "w_1_2^{11}",
    "w_1^{11}^{12}",
    "1e400",
    "\x00",
    "w1^11; import os",
    "{w1^11}",
    "(w1^11+w2^11+w3^11+w1^12+1)*(w1^11+w2^11+w3^11+w1^12+1)*(w1^11+w2^11+w3^11+w1^12+1)",
    "w1^11*w1^11*w1^11*w1^11",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_or_malformed_text_is_invalid(text: str) -> None:
    with pytest.raises(InvalidAnswer) as info:
        parse_expression(text, SPACE)
    assert info.value.message


@pytest.mark.parametrize("value", [True, None, [1], {"w": 1}, float("nan"), float("inf"), 10**20, b"w1^11"])
def test_non_text_entries_are_invalid(value: Any) -> None:
    with pytest.raises(InvalidAnswer):
        parse_entry(value, SPACE)


@pytest.mark.parametrize(
    "text, phrase",
    [
        ("w4^11", "tap 4 is out of range 1..3"),
        ("w1^13", "output channel 1..2"),
        ("9**9**9", "powers"),
        ("w1", "tap and channels"),
        ("w1^111", "channel pair"),
    ],
)
def test_messages_say_what_was_expected(text: str, phrase: str) -> None:
    with pytest.raises(InvalidAnswer, match=phrase.replace(".", r"\.").replace("(", r"\(")):
        parse_expression(text, SPACE)
