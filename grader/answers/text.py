"""Bounded text input for the notation parsers, short and safe echoes of an answer for feedback, bracket pairing,
and finding the one value among words around it ("shape (1, C)")."""

from __future__ import annotations

import re
import reprlib
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from grader.errors import InvalidAnswer

T = TypeVar("T", bound=Hashable)

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
_OPENERS = {closing: opening for opening, closing in _PAIRS.items()}


def strip_brackets(text: str) -> str:
    """`(…)` or `[…]` around the whole text removed; a bracket at either end that has no partner anywhere is
    refused. Otherwise the text comes back as it is, for its parser to say what is wrong (the message must be
    true: "shape (1, C)" has its opening bracket)."""
    pairs = bracket_pairs(text)
    if text[:1] in _PAIRS:
        if pairs.get(0) == len(text) - 1:
            return text[1:-1].strip()
        if 0 not in pairs:
            raise InvalidAnswer(f"{show(text)}: {text[0]!r} is not closed by {_PAIRS[text[0]]!r}")
    if text[-1:] in _OPENERS and len(text) - 1 not in pairs:
        raise InvalidAnswer(f"{show(text)}: {text[-1]!r} has no opening bracket")
    return text


def bracket_pairs(text: str) -> dict[int, int]:
    """Index of each bracket's partner, both ways; a bracket without a partner of its own kind has no entry."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for index, char in enumerate(text):
        if char in _PAIRS:
            stack.append(index)
        elif char in _OPENERS:
            if stack and text[stack[-1]] == _OPENERS[char]:
                opening = stack.pop()
                pairs[opening], pairs[index] = index, opening
            else:
                stack.clear()  # a crossed or stray closer: the brackets before it cannot pair past it
    return pairs


_RUN = re.compile(r"\\[A-Za-z]+|[A-Za-z]+|[0-9]+|\s+|.", re.DOTALL)
_ONE_LETTER_WORDS = frozenset({"a", "A", "I"})
_PROSE = frozenset(":;!?\"'’“”$=")


@dataclass(frozen=True, slots=True)
class _Run:
    start: int
    end: int
    text: str
    kind: str
    """space | digits | separator | bracket | letters (part of a value) | word (prose) | other"""


def read_among_words(
    text: str,
    read: Callable[[str], T],
    *,
    keeps: Callable[[str], bool],
    separators: Collection[str],
    strict_error: InvalidAnswer,
    looking_for: str,
) -> T:
    """The one value `read` finds among words around it ("shape (1, C)", "the output is 1 x C", "a 5x5 region").

    The text is cut into pieces at every word: a letter run is part of a piece when `keeps` accepts it (axis
    names, "1xC"), when it is one of `separators` ("x", "by"), or when it is a single letter next to a
    separator, a bracket or a number (so "(1, K)" is read, and refused for its unknown axis, rather than cut to
    "(1,"); the English one-letter words a and I, and letters of "i.e." or "it's", are words. Brackets and commas
    at a piece's edge whose partner lies outside it are dropped ("1 x C (one per channel)").
    Pieces with structure (a separator or bracket: "1 x C", "(C,)", "5x5") come first; a bare number or name
    ("C" in "where C is the channel count") counts only when no structured piece reads. One value (found once or
    more) is the answer; different values are refused as ambiguous; none raises the first piece's own error.
    `strict_error` is raised when the text has no words, so a malformed bare answer keeps the message it had.
    """
    runs = _runs(text, keeps, separators)
    if not any(run.kind == "word" for run in runs):
        raise strict_error  # a bare answer keeps the message of its own notation
    if other := next((run for run in runs if run.kind == "other"), None):
        # neither prose nor notation ("-5", "5/2"): cutting there would read a different value than written
        where = f"unexpected {other.text!r} at character {other.start + 1}"
        raise InvalidAnswer(f"could not read a {looking_for} in {show(text, 60)}: {where}")
    pieces = _pieces(runs, bracket_pairs(text))
    first_error: InvalidAnswer | None = None
    for structured in (True, False):
        found: dict[T, str] = {}
        for piece in pieces:
            if _structured(piece) != structured or not any(run.kind in ("digits", "letters") for run in piece):
                continue
            written = text[piece[0].start : piece[-1].end]
            try:
                found.setdefault(read(written), written)
            except InvalidAnswer as exc:
                first_error = first_error or exc
        if len(found) == 1:
            return next(iter(found))
        if found:
            readings = " and ".join(show(piece) for piece in list(found.values())[:3])
            raise InvalidAnswer(f"{show(text, 60)} holds more than one {looking_for} ({readings}); give only one")
    if first_error is not None:
        raise InvalidAnswer(f"could not read a {looking_for} in {show(text, 60)}: {first_error.message}")
    raise InvalidAnswer(f"could not find a {looking_for} in {show(text, 60)}")


def _structured(piece: list[_Run]) -> bool:
    return any(run.kind in ("separator", "bracket") for run in piece)


def _runs(text: str, keeps: Callable[[str], bool], separators: Collection[str]) -> list[_Run]:
    raw = [(match.start(), match.end(), match.group()) for match in _RUN.finditer(text)]
    runs: list[_Run] = []
    for index, (start, end, run) in enumerate(raw):
        if run.isspace():
            kind = "space"
        elif run[0] in "0123456789":
            kind = "digits"
        elif run in separators:
            kind = "separator"
        elif run in _PAIRS or run in _OPENERS:
            kind = "bracket"
        elif run[0].isalpha() and (keeps(run) or _axis_like(text, raw, index, separators)):
            kind = "letters"
        elif run[0].isalpha() or _prose(text, start):
            kind = "word"
        else:
            kind = "other"
        runs.append(_Run(start, end, run, kind))
    return runs


def _prose(text: str, index: int) -> bool:
    """Punctuation of a sentence around a value, which cuts it like a word: not a decimal point (5.5) and not a
    minus sign (-5), which belong to the number and make the text unreadable here."""
    char, before, after = text[index], text[index - 1 : index], text[index + 1 : index + 2]
    if char == ".":
        return not (before.isdigit() and after.isdigit())
    if char in "-–—":
        return not after.isdigit()
    return char in _PROSE


def _pieces(runs: list[_Run], pairs: dict[int, int]) -> list[list[_Run]]:
    """Maximal stretches of runs that are not words, trimmed of spaces, commas and outside-paired brackets."""
    pieces: list[list[_Run]] = []
    current: list[_Run] = []
    for run in [*runs, _Run(0, 0, "", "word")]:
        if run.kind != "word":
            current.append(run)
            continue
        if trimmed := _trim(current, pairs):
            pieces.append(trimmed)
        current = []
    return pieces


def _axis_like(text: str, raw: list[tuple[int, int, str]], index: int, separators: Collection[str]) -> bool:
    """Whether a single letter that `keeps` refused sits where an axis would: next to a separator, a bracket or
    a number, and not an English one-letter word or part of "i.e." or "it's"."""
    start, end, run = raw[index]
    if len(run) != 1 or not run.isascii() or run in _ONE_LETTER_WORDS:
        return False
    if text[start - 1 : start] in ("'", "’", ".") or (text[end : end + 1] == "." and text[end + 1 : end + 2].isalpha()):
        return False
    neighbours = [
        next((r for r in reversed(raw[:index]) if not r[2].isspace()), None),
        next((r for r in raw[index + 1 :] if not r[2].isspace()), None),
    ]
    return any(
        r is not None and (r[2] in separators or r[2] in _PAIRS or r[2] in _OPENERS or r[2][0] in "0123456789")
        for r in neighbours
    )


def _trim(piece: list[_Run], pairs: dict[int, int]) -> list[_Run]:
    """Without spaces and commas at the edges, nor edge brackets whose partner lies outside (a bracket without
    any partner stays, for the reader to name it)."""

    def outside(run: _Run, rest: list[_Run]) -> bool:
        return run.start in pairs and not rest[0].start <= pairs[run.start] < rest[-1].end

    while piece:
        first, last = piece[0], piece[-1]
        if first.kind == "space" or first.text == ",":
            piece = piece[1:]
        elif last.kind == "space" or last.text == ",":
            piece = piece[:-1]
        elif first.kind == "bracket" and outside(first, piece):
            piece = piece[1:]
        elif last.kind == "bracket" and outside(last, piece):
            piece = piece[:-1]
        else:
            break
    return piece
