"""Bounded text input for the notation parsers, and short, safe echoes of an answer for feedback."""

from __future__ import annotations

import reprlib
from typing import Any

from grader.errors import InvalidAnswer

_SHORT = reprlib.Repr()  # keyword arguments need Python 3.12; the project supports 3.11
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict = 3, 6, 4
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 40


def bounded_text(answer: str, *, limit: int, what: str) -> str:
    """The stripped text, refused before any regex runs when it is longer than a notation could need."""
    if len(answer) > limit:
        raise InvalidAnswer(f"{what} is {len(answer)} characters long; an answer here is at most {limit}")
    return answer.strip()


def show(answer: Any, limit: int = 40) -> str:
    """A short quoted echo of an answer for feedback (never the whole of a huge input)."""
    if isinstance(answer, int) and not isinstance(answer, bool) and answer.bit_length() > 128:
        return f"an integer with about {int(answer.bit_length() * 0.30103)} digits"
    text = answer[: limit + 1] if isinstance(answer, str) else _SHORT.repr(answer)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return repr(text) if isinstance(answer, str) else text


def reject_bool(answer: Any, what: str) -> None:
    """YAML reads yes/no/true as booleans, which Python would otherwise treat as the integers 1 and 0."""
    if isinstance(answer, bool):
        raise InvalidAnswer(f"{what}: got the boolean {answer!r} (YAML reads yes/no/true/false as booleans)")


_PAIRS = {"(": ")", "[": "]"}


def strip_brackets(text: str) -> str:
    """`(…)` or `[…]` around the whole text removed; a bracket without its partner is refused."""
    if text[:1] in _PAIRS:
        if text[-1:] != _PAIRS[text[0]]:
            raise InvalidAnswer(f"{show(text)}: {text[0]!r} is not closed by {_PAIRS[text[0]]!r}")
        return text[1:-1].strip()
    if text[-1:] in _PAIRS.values():
        raise InvalidAnswer(f"{show(text)}: {text[-1]!r} has no opening bracket")
    return text
