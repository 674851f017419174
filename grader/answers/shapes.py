"""Shape answers (`1 x C`, `(1, C)`, YAML lists) and receptive-field answers (`5x5`, `5`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grader.answers.text import bounded_text, read_among_words, reject_bool, show, strip_brackets
from grader.errors import InvalidAnswer

MAX_SHAPE_CHARS = 160
MAX_AXES = 8
SHAPE_NOTATION = "a shape such as N x 1, N×1, N*1, (N, 1) or a list [N, 1]"
_SHAPE_TOKEN = re.compile(r"\s*(?:(?P<num>[0-9]{1,6})|(?P<sep>by\b|\\times|\\cdot|[x×X*,·])|(?P<name>[A-Za-z]))")


def parse_shape(answer: Any, names: Sequence[str]) -> tuple[str, ...]:
    """Axes as text: "1", other sizes as digits, axis names upper-cased; `names` are the allowed names."""
    reject_bool(answer, "expected " + SHAPE_NOTATION)
    if isinstance(answer, int):
        return (_axis_item(answer, names, answer),)
    if isinstance(answer, list | tuple):
        if not answer or len(answer) > MAX_AXES:
            raise InvalidAnswer(f"expected {SHAPE_NOTATION} with 1 to {MAX_AXES} axes, got {show(answer)}")
        return tuple(_axis_item(item, names, answer) for item in answer)
    if not isinstance(answer, str):
        raise InvalidAnswer(f"expected {SHAPE_NOTATION}, got {type(answer).__name__} {show(answer)}")
    text = bounded_text(answer, limit=MAX_SHAPE_CHARS, what="the shape")
    try:
        return _shape_from_text(strip_brackets(text), names)
    except InvalidAnswer as strict:
        # "shape (1, C)", "the output has shape 1 x C", "a (1, C) matrix": the one shape among the words
        return read_among_words(
            text,
            lambda piece: _shape_from_text(strip_brackets(piece), names),
            keeps=lambda run: _shape_run(run, names),
            separators=_SEPARATORS,
            strict_error=strict,
            looking_for="shape like (N, 1) or N x 1",
        )


_SEPARATORS = frozenset({"x", "X", "×", "*", ",", "·", "by", "\\times", "\\cdot"})
_COMPACT = re.compile(r"[xX]?[A-Za-z](?:[xX][A-Za-z])*[xX]?")


def _shape_run(run: str, names: Sequence[str]) -> bool:
    """Letters that belong to a shape: an axis name, or axes glued with x ("1xC", "NxC", "xK": an unknown axis
    is then named in the message); any other letter run ("shape", "a", "matrix") is a word around the shape."""
    return run.upper() in names or (len(run) > 1 and _COMPACT.fullmatch(run) is not None)


def _shape_from_text(text: str, names: Sequence[str]) -> tuple[str, ...]:
    axes: list[str] = []
    last = "start"  # kind of the previous token: start | sep | axis
    pos = 0
    while pos < len(text):
        match = _SHAPE_TOKEN.match(text, pos)
        if match is None:
            bad = text[pos:].lstrip()[:1]
            raise InvalidAnswer(f"unexpected {bad!r} in the shape {show(text)}; expected {SHAPE_NOTATION}")
        kind = "sep" if match.lastgroup == "sep" else "axis"
        if kind == "sep" and last != "axis":
            raise InvalidAnswer(f"the shape {show(text)} has a separator with no axis before it")
        if kind == "axis" and last == "axis" and match.start(match.lastgroup) == pos:
            raise InvalidAnswer(f"write a separator (x, ×, *, comma) between the axes of {show(text)}")
        if kind == "axis":
            axes.append(_axis(match.group(match.lastgroup), names, text))
        last, pos = kind, match.end()
    if not axes or len(axes) > MAX_AXES or (last == "sep" and not text.endswith(",")):
        raise InvalidAnswer(f"expected {SHAPE_NOTATION}, got {show(text)}")
    return tuple(axes)


def _axis_item(item: Any, names: Sequence[str], answer: Any) -> str:
    if isinstance(item, int) and not isinstance(item, bool) and 0 <= item < 10**6:
        return _axis(str(item), names, answer)
    if isinstance(item, str) and len(item) <= 8:
        return _axis(item.strip(), names, answer)
    raise InvalidAnswer(f"each axis must be a number or one of {', '.join(names)}; got {show(item)} in {show(answer)}")


def _axis(token: str, names: Sequence[str], answer: Any) -> str:
    if token.isascii() and token.isdigit() and len(token) <= 6:
        return str(int(token))
    if token.upper() in names:
        return token.upper()
    raise InvalidAnswer(
        f"unknown axis {show(token)} in {show(answer)}; use the question's names {', '.join(names)} or numbers"
    )


@dataclass(frozen=True, slots=True)
class ReceptiveField:
    height: int
    width: int
    single_number: bool
    """Written as one number (5), which means 5x5; kept to spot an area (25) given for a side."""

    def describe(self) -> str:
        return f"{self.height}x{self.width}"


RECEPTIVE_FIELD_NOTATION = "a size such as 7x7, 7 × 7, 7*7 or just 7"
_FIELD_TEXT = re.compile(r"([0-9]{1,5})\s*(?:(?:[x×X*,]|by)\s*([0-9]{1,5}))?\s*(?:pixels?|px)?", re.IGNORECASE)


def parse_receptive_field(answer: Any) -> ReceptiveField:
    """Height and width of a receptive field; one number means a square field."""
    reject_bool(answer, "expected " + RECEPTIVE_FIELD_NOTATION)
    if isinstance(answer, int) and 1 <= answer <= 99_999:
        return ReceptiveField(answer, answer, single_number=True)
    if isinstance(answer, list) and len(answer) == 2 and all(_size(v) for v in answer):
        return ReceptiveField(answer[0], answer[1], single_number=False)
    if not isinstance(answer, str):
        raise InvalidAnswer(f"expected {RECEPTIVE_FIELD_NOTATION}, got {show(answer)}")
    text = bounded_text(answer, limit=MAX_SHAPE_CHARS, what="the receptive field")
    try:
        return _field_from_text(text)
    except InvalidAnswer as strict:
        # "a 5x5 region", "5 x 5 (two 3x3 convs)" is ambiguous and refused as such
        return read_among_words(
            text,
            _field_from_text,
            keeps=lambda run: False,
            separators=frozenset({"x", "X", "×", "*", ",", "by"}),
            strict_error=strict,
            looking_for="size like 7x7",
        )


def _field_from_text(text: str) -> ReceptiveField:
    match = _FIELD_TEXT.fullmatch(strip_brackets(text))
    if match and int(match.group(1)) >= 1 and int(match.group(2) or 1) >= 1:
        height = int(match.group(1))
        width = int(match.group(2)) if match.group(2) else height
        return ReceptiveField(height, width, single_number=match.group(2) is None)
    raise InvalidAnswer(f"expected {RECEPTIVE_FIELD_NOTATION}, got {show(text)}")


def _size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 99_999
