"""Whole-number answers (parameter counts, per-side padding): plain or digit-grouped numbers, arithmetic and
scientific notation (grader/answers/arithmetic.py), and the working shown with its result.

`expression = result` ("2 × (32 × 3 × 3 × 32) = 18432", the answer key's own notation) is read side by side:
every side must parse, and the part is graded on the stated result, the last side. When an earlier side's
value differs, the answer still parses and carries a note naming the disagreement, which the checker adds to
its feedback; the note quotes only the student's own answer, never a reference value. So neither side earns
credit just because it happens to be the right one: what is written after `=` is the answer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from grader.answers import arithmetic
from grader.answers.text import bounded_text, reject_bool, show
from grader.errors import InvalidAnswer

MAX_COUNT = 10**12
MAX_PADDING = 999
MAX_NUMBER_CHARS = arithmetic.MAX_CHARS
# "18 432" (a plain space between groups of three): read before arithmetic, where a space never joins digits
_SPACE_GROUPED = re.compile(r"[0-9]{1,3}(?: [0-9]{3})+")
_COUNT_UNIT = re.compile(r"\s*(?:trainable\s+)?(?:parameters|params|weights)\s*$", re.IGNORECASE)
_PADDING_UNIT = re.compile(r"\s*zeros?(?:\s+(?:on\s+)?(?:each|per)\s+side)?\s*$", re.IGNORECASE)
COUNT_NOTATION = 'an integer such as 12345, "12,345", "12 345", "1.2345e4" or arithmetic like "3 × (64 + 32)"'


@dataclass(frozen=True, slots=True)
class WholeNumber:
    value: int
    """The number graded: the result after the last `=`, or the whole answer when it has none."""
    note: str | None = None
    """Set when the working shown and the stated result disagree; quotes only the student's own answer."""


def read_whole_number(
    answer: Any, *, notation: str, what: str, maximum: int, unit: re.Pattern[str] | None = None
) -> WholeNumber:
    """A whole number from 0 to `maximum`: a YAML int, an integral float, or text (see the module docstring).
    `what` names the quantity in messages ("a parameter count"); `unit` is a trailing word to ignore."""
    reject_bool(answer, "expected " + notation)
    if isinstance(answer, int):
        return WholeNumber(_in_range(answer, answer, what, maximum))
    if isinstance(answer, float):
        if not math.isfinite(answer) or not answer.is_integer():
            raise InvalidAnswer(f"{show(answer)} is not a whole number; {what} is a whole number")
        return WholeNumber(_in_range(int(answer), answer, what, maximum))
    if not isinstance(answer, str):
        raise InvalidAnswer(f"expected {notation}, got {type(answer).__name__} {show(answer)}")
    text = _without_math_delimiters(bounded_text(answer, limit=MAX_NUMBER_CHARS, what=what))
    if unit is not None:
        text = unit.sub("", text)
    if not re.search(r"[0-9]", text):
        raise InvalidAnswer(f"expected {notation}, got {show(answer)}")
    sides = [(side.strip(), _side_value(side.strip(), text, notation)) for side in re.split(r"==?", text)]
    stated_text, stated = sides[-1]
    if stated.denominator != 1:
        value_text = arithmetic.describe(stated)
        raise InvalidAnswer(f"{show(stated_text)} is {value_text}, not a whole number; {what} is a whole number")
    value = _in_range(stated.numerator, stated_text, what, maximum)
    for side_text, side_value in sides[:-1]:
        if side_value != stated:
            note = (
                f"Your expression {show(side_text, 80)} equals {arithmetic.describe(side_value)} but you wrote "
                f"= {stated_text}; the result after '=' is what is graded."
            )
            return WholeNumber(value, note)
    return WholeNumber(value)


def _without_math_delimiters(text: str) -> str:
    """LaTeX inline math, `$2 \\times 9216$` as in the answer key, without its dollar signs."""
    if len(text) > 1 and text.startswith("$") and text.endswith("$"):
        return text.strip("$").strip()
    return text


def _side_value(side: str, text: str, notation: str) -> Fraction:
    if not side:
        raise InvalidAnswer(f"{show(text, 60)}: one side of '=' is empty; expected {notation}, or expression = result")
    if _SPACE_GROUPED.fullmatch(side):
        return Fraction(int(side.replace(" ", "")))
    try:
        return arithmetic.evaluate(side)
    except InvalidAnswer as exc:
        raise InvalidAnswer(f"{exc.message}; expected {notation}") from None


def _in_range(value: int, answer: Any, what: str, maximum: int) -> int:
    if not 0 <= value <= maximum:
        raise InvalidAnswer(f"expected {what} between 0 and {maximum:,}, got {show(answer)}")
    return value


def read_count(answer: Any) -> WholeNumber:
    """A parameter count, with the note of a disagreeing `expression = result`."""
    return read_whole_number(
        answer, notation=COUNT_NOTATION, what="a parameter count", maximum=MAX_COUNT, unit=_COUNT_UNIT
    )


def parse_count(answer: Any) -> int:
    return read_count(answer).value


PADDING_NOTATION = "the number of zeros on each side, e.g. 3 (or [3, 3] for left, right)"
_PADDING_PAIR = re.compile(r"([0-9]{1,3})\s*,\s*([0-9]{1,3})")


@dataclass(frozen=True, slots=True)
class Padding:
    left: int
    right: int
    note: str | None = None
    """As WholeNumber.note, for one number written as `expression = result`."""


def read_padding(answer: Any) -> Padding:
    """Zeros added (left, right); a single number (or arithmetic, e.g. "3 - 1") means the same on both sides."""
    reject_bool(answer, "expected " + PADDING_NOTATION)
    if isinstance(answer, list) and len(answer) == 2 and all(_small_int(v) for v in answer):
        return Padding(answer[0], answer[1])
    if isinstance(answer, str):
        text = bounded_text(answer, limit=MAX_NUMBER_CHARS, what="the padding")
        inner = text[1:-1] if text[:1] + text[-1:] in ("()", "[]") else text
        if pair := _PADDING_PAIR.fullmatch(inner.strip()):
            return Padding(int(pair.group(1)), int(pair.group(2)))
    number = read_whole_number(
        answer, notation=PADDING_NOTATION, what="the padding", maximum=MAX_PADDING, unit=_PADDING_UNIT
    )
    return Padding(number.value, number.value, number.note)


def parse_padding(answer: Any) -> tuple[int, int]:
    padding = read_padding(answer)
    return (padding.left, padding.right)


def _small_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_PADDING
