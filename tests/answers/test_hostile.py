"""Hostile answers never crash or hang a checker: they come back invalid (or incorrect) with feedback.

Every answer below goes to every part, so the arithmetic of numeric answers (counts, padding), the shape and
receptive-field readers (with words around a value) and the Q4 weight grammar all see all of them."""

from __future__ import annotations

import time
from typing import Any

import pytest

from grader.answers.sheet import parse_answer_sheet
from grader.answers.symbolic import SymbolicTimeout, time_limit
from grader.domain.results import PartStatus
from grader.errors import AnswerSheetError
from tests.answers.sheets import answer_rubric, grade_one


def _nested(depth: int) -> Any:
    value: Any = "w1^11"
    for _ in range(depth):
        value = [value]
    return value


HOSTILE: dict[str, Any] = {
    "power_tower": "9**9**9",
    "caret_power": "9^9^9",
    "huge_string": "w1^11 + " * 20_000,
    "huge_digits": "9" * 100_000,
    "open_brackets": "[" * 5_000,
    "balanced_brackets": "(" * 2_000 + "1" + ")" * 2_000,
    "deep_list": _nested(200),
    "wide_list": [["0"] * 10_000],
    "long_rows": [["0"] * 8] * 10_000,
    "python_code": "__import__('os').system('echo pwned')",
    "sympify_bait": "Symbol('w').__class__.__mro__",
    "lambda": "lambda: 0",
    "control_chars": "\x00\x01\x1b[31m",
    "huge_int": 10**400,
    "negative": -1,
    "huge_float": 1e308,
    "nan": float("nan"),
    "boolean": True,
    "mapping": {"__class__": "x", "U11": {"a": "b"}},
    "expansion_bomb": [["*".join(["(w1^11+w2^11+w3^11+w1^12)"] * 7)]],
    "huge_json_int": 10**5000,
    "many_keys": {f"U{i}": [0, 0, 0] for i in range(1000)},
    # arithmetic in numeric answers: every power, exponent and intermediate value is bounded before it is computed
    "power_chain": "2^2^2^2^2^2",
    "huge_power": "10^99999999",
    "superscript_power": "9⁹⁹⁹⁹⁹⁹",
    "sci_exponent": "1e99999999",
    "long_sci_exponent": "1e" + "9" * 190,
    "big_product": "*".join(["99999999"] * 22),
    "tiny_quotient": "1" + "/99999999" * 20,
    "deep_parens": "(" * 90 + "1" + ")" * 90,
    "mixed_brackets": "([{" * 30 + "1" + "}])" * 30,
    "unary_chain": "-" * 199 + "1",
    "latex_soup": "\\left(" * 28,
    "equals_chain": "=".join(["9**99"] * 30),
    "word_soup": "x by " * 30,
    "ambiguous_shapes": "N x C or C x N " * 5,
}
PARTS = [part.id for part in answer_rubric().parts if part.checker != "manual_review"]


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("part_id", PARTS)
def test_hostile_answers_are_invalid_or_incorrect(part_id: str, name: str) -> None:
    result = grade_one(part_id, HOSTILE[name])
    assert result.status in (PartStatus.INVALID, PartStatus.INCORRECT), (result.status, result.feedback)
    assert result.points == 0 and result.feedback
    assert len(result.feedback) < 2_000


@pytest.mark.parametrize(
    "text",
    [
        "a: &a [1, 2]\nb: &b [*a, *a]\nc: [*b, *b]\n",
        "q4:\n  a_matrix: " + "[" * 100 + "]" * 100 + "\n",
        "q2: {standard_params: 1}\n" + "x: " + "y" * 300_000 + "\n",
        "!!python/object/apply:os.system ['echo pwned']\n",
        "- just\n- a list\n",
        "\xff\xfe not utf-8",
        "x: " + "9" * 5000 + "\n",
        '{"x": ' + "9" * 5000 + "}",
        "x: 2001-13-45\n",
        "x: !!int abc\n",
    ],
)
def test_hostile_sheets_are_refused_as_a_whole(text: str) -> None:
    with pytest.raises(AnswerSheetError):
        parse_answer_sheet(text.encode("latin-1") if text.startswith("\xff") else text)


def test_time_limit_interrupts_runaway_work() -> None:
    with pytest.raises(SymbolicTimeout), time_limit(0.05):
        while True:
            time.sleep(0.001)
