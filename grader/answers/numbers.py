"""Integer answers: parameter counts written with digit grouping, and per-side padding amounts."""

from __future__ import annotations

import math
import re
from typing import Any

from grader.answers.text import bounded_text, reject_bool, show, strip_brackets
from grader.errors import InvalidAnswer

MAX_COUNT = 10**12
MAX_COUNT_CHARS = 40
# "18432", "18,432", "18 432", "18_432", "18'432", thin spaces; one separator used consistently, groups of 3.
_GROUPED = re.compile(r"[0-9]{1,3}(?:(?P<sep>[, _'\u2009\u202f])[0-9]{3})(?:(?P=sep)[0-9]{3})*")
_PLAIN = re.compile(r"[0-9]{1,13}(?:\.0*)?")
_UNIT = re.compile(r"\s*(?:trainable\s+)?(?:parameters|params|weights)\s*$", re.IGNORECASE)
COUNT_NOTATION = 'an integer such as 12345, "12,345" or "12 345"'


def parse_count(answer: Any) -> int:
    """A non-negative integer count; floats only when integral; strings with consistent digit grouping."""
    reject_bool(answer, "expected " + COUNT_NOTATION)
    if isinstance(answer, int):
        return _in_range(answer, answer)
    if isinstance(answer, float):
        if not math.isfinite(answer) or not answer.is_integer():
            raise InvalidAnswer(f"expected a whole number of parameters, got {show(answer)}")
        return _in_range(int(answer), answer)
    if not isinstance(answer, str):
        raise InvalidAnswer(f"expected {COUNT_NOTATION}, got {type(answer).__name__} {show(answer)}")
    text = _UNIT.sub("", bounded_text(answer, limit=MAX_COUNT_CHARS, what="the count"))
    if _PLAIN.fullmatch(text):
        return _in_range(int(text.split(".")[0]), answer)
    if _GROUPED.fullmatch(text):
        return _in_range(int(re.sub(r"[^0-9]", "", text)), answer)
    raise InvalidAnswer(f"expected {COUNT_NOTATION}, got {show(answer)}")


def _in_range(value: int, answer: Any) -> int:
    if not 0 <= value <= MAX_COUNT:
        raise InvalidAnswer(f"expected a count between 0 and {MAX_COUNT:,}, got {show(answer)}")
    return value


PADDING_NOTATION = "the number of zeros on each side, e.g. 3 (or [3, 3] for left, right)"
_PADDING_TEXT = re.compile(r"([0-9]{1,3})\s*(?:,\s*([0-9]{1,3}))?")


def parse_padding(answer: Any) -> tuple[int, int]:
    """Zeros added (left, right); a single number means the same on both sides."""
    reject_bool(answer, "expected " + PADDING_NOTATION)
    if isinstance(answer, int) and 0 <= answer <= 999:
        return (answer, answer)
    if isinstance(answer, list) and len(answer) == 2 and all(_small_int(v) for v in answer):
        return (answer[0], answer[1])
    if isinstance(answer, str):
        text = strip_brackets(bounded_text(answer, limit=MAX_COUNT_CHARS, what="the padding"))
        match = _PADDING_TEXT.fullmatch(text)
        if match:
            left = int(match.group(1))
            return (left, int(match.group(2)) if match.group(2) else left)
    raise InvalidAnswer(f"expected {PADDING_NOTATION}, got {show(answer)}")


def _small_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 999
