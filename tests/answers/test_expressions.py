"""Weight notations and the allow-list expression grammar, the arithmetic of numeric answers, hostile text."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from grader.answers.arithmetic import describe, evaluate
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


# Arithmetic in numeric answers (grader/answers/arithmetic.py): a separate grammar where ^ is a power.


@pytest.mark.parametrize(
    "text, value",
    [
        ("18432", Fraction(18432)),
        ("2 + 3 * 4", Fraction(14)),
        ("(2 + 3) * 4", Fraction(20)),
        ("2(3 + 4)", Fraction(14)),
        ("(1 + 1)(2 + 2)", Fraction(8)),
        ("8 - 3 - 2", Fraction(3)),
        ("8 / 4 / 2", Fraction(1)),
        ("2^3^2", Fraction(512)),
        ("2**3**2", Fraction(512)),
        ("-2^2", Fraction(-4)),
        ("(-2)^2", Fraction(4)),
        ("10^-2", Fraction(1, 100)),
        ("10⁻²", Fraction(1, 100)),
        ("1/3 + 1/6", Fraction(1, 2)),
        (".5 × 4", Fraction(2)),
        ("3x3", Fraction(9)),
        ("3 X (1 + 2)", Fraction(9)),
        ("(2)x(3)", Fraction(6)),
        ("1.5e2", Fraction(150)),
        ("15E-1", Fraction(3, 2)),
        ("1,000 × 1_000", Fraction(1_000_000)),
        ("--2", Fraction(2)),
        ("2 \\times 3 \\cdot 4 \\div 6", Fraction(4)),
        ("2^{1 + 2}", Fraction(8)),
        ("[2 × (3 + {4})]", Fraction(14)),
    ],
)
def test_arithmetic_is_exact_with_usual_precedence(text: str, value: Fraction) -> None:
    assert evaluate(text) == value


ARITHMETIC_HOSTILE = [
    ("9**9**9", "too large"),
    ("9^9^9", "too large"),
    ("2^2^2^2^2", "too large"),
    ("10^100", "too large"),
    ("(10^60)^2", "too large"),
    ("7^64 × 7^64", "too large"),
    ("1/7^64/7^64", "too large"),
    ("1e65", "too large"),
    ("1e-99999999999999", "too large"),
    ("9⁹⁹⁹⁹", "too large"),
    ("2⁻", "not a whole-number exponent"),
    ("2^0.5", "whole numbers"),
    ("0^-1", "divides by zero"),
    ("1/(2-2)", "divides by zero"),
    ("(" * 20 + "1" + ")" * 20, "nests deeper"),
    ("-" * 30 + "1", "nests deeper"),
    ("1" * 31, "more than 30 digits"),
    ("1" * 201, "at most 200"),
    ("__import__('os')", "unexpected '_'"),
    ("lambda: 0", "unexpected 'l'"),
    ("0x1F", "unexpected 'x'"),
    ("x", "unexpected 'x'"),
    ("2 x", "unexpected 'x'"),
    ("(1 + 2", "not closed"),
    ("[1 + 2)", "not closed"),
    ("1 + 2)", "no opening bracket"),
    ("1 +", "ends too early"),
    ("()", "a number is missing before ')'"),
    ("2 × ()", "a number is missing before ')'"),
    ("2 3", "write an operator"),
    ("1 = 1", "unexpected '='"),
    ("", "empty"),
    ("\x00", "unexpected"),
]


@pytest.mark.parametrize("text, phrase", ARITHMETIC_HOSTILE)
def test_hostile_arithmetic_is_refused_with_a_reason(text: str, phrase: str) -> None:
    with pytest.raises(InvalidAnswer) as info:
        evaluate(text)
    assert phrase in info.value.message


@pytest.mark.parametrize(
    "value, text",
    [(Fraction(18432), "18432"), (Fraction(-5, 2), "-2.5"), (Fraction(1, 8), "0.125"), (Fraction(1, 3), "1/3")],
)
def test_values_are_described_exactly(value: Fraction, text: str) -> None:
    assert describe(value).startswith(text)
