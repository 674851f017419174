"""Exact arithmetic in numeric answers ("2 × (32 × 3 × 3 × 32)", "1.8432e4", "1.8432 × 10^4"): an allow-list
tokenizer and a recursive-descent evaluator over Fractions. Text is never evaluated as code.

Separate from the Q4 weight grammar (expressions.py) on purpose: there `^` marks a weight's channel superscript
and there are no powers; here `^` is a power and there are no names. The work is bounded three ways, so hostile
text costs microseconds: the text's length (MAX_CHARS, which bounds the tokens and the nesting), every power's
exponent (at most MAX_EXPONENT, and the result's size is estimated before it is computed) and the size of every
intermediate value (numerator and denominator under MAX_BITS bits).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from grader.answers.text import bounded_text, show
from grader.errors import InvalidAnswer

MAX_CHARS = 200
MAX_DEPTH = 16
MAX_DIGITS = 30
MAX_EXPONENT = 64
MAX_BITS = 256
"""Numerators and denominators of every value, intermediate ones included (about 77 decimal digits)."""

# Digit grouping inside arithmetic ("2 × 9,216"): one separator, groups of three; a plain space is not one here,
# since "2 3" is a missing operator (whole answers like "18 432" are read before arithmetic, in numbers.py).
_GROUPED = re.compile(r"[0-9]{1,3}(?:(?P<sep>[,_'\u2009\u202f])[0-9]{3})(?:(?P=sep)[0-9]{3})*(?![0-9])")
_NUMBER = re.compile(r"(?P<mantissa>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE](?P<exponent>[+-]?[0-9]+))?")
_SUPERSCRIPT = re.compile(r"[⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻]+")
_SUPERSCRIPT_DIGITS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻", "0123456789+-")
_LATEX = re.compile(r"\\(?:times|cdot|div|left|right)(?![A-Za-z])")
_SYMBOLS = {
    "+": "+",
    "-": "-",
    "−": "-",
    "*": "*",
    "×": "*",
    "·": "*",
    "⋅": "*",
    "∙": "*",
    "/": "/",
    "÷": "/",
    "^": "^",
    "(": "(",
    "[": "[",
    "{": "{",
    ")": ")",
    "]": "]",
    "}": "}",
}
_LATEX_OPS = {"\\times": "*", "\\cdot": "*", "\\div": "/", "\\left": "", "\\right": ""}
_CLOSING = {"(": ")", "[": "]", "{": "}"}
OPERATORS = "+ - × · * / ^ ** and parentheses"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: Literal["num", "op"]
    text: str
    start: int
    value: Fraction = Fraction(0)


def evaluate(text: str) -> Fraction:
    """The exact value of `text`: numbers (12, 1.5, .5, 1.8432e4, 9,216), + - × · * / ÷, x between two numbers,
    ^ or ** (whole exponents), superscript exponents (10⁴), brackets (also implicit: 2(3 + 4)), LaTeX \\times,
    \\cdot, \\left( \\right). InvalidAnswer, naming what broke where, for anything else."""
    stripped = bounded_text(text, limit=MAX_CHARS, what="the expression")
    if not stripped:
        raise InvalidAnswer("the expression is empty")
    tokens = _tokenize(stripped)
    if not tokens:
        raise InvalidAnswer(f"{show(stripped)} has no number in it")
    evaluator = _Evaluator(tokens, stripped)
    value = evaluator.sum(0)
    if evaluator.pos < len(tokens):
        evaluator.fail(tokens[evaluator.pos])
    return value


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char.isspace():
            pos += 1
        elif match := _GROUPED.match(text, pos):
            tokens.append(_number(re.sub(r"[^0-9]", "", match.group()), None, pos, text, match.group()))
            pos = match.end()
        elif match := _NUMBER.match(text, pos):
            tokens.append(_number(match.group("mantissa"), match.group("exponent"), pos, text, match.group()))
            pos = match.end()
        elif text.startswith("**", pos):
            tokens.append(_Token("op", "^", pos))
            pos += 2
        elif char in _SYMBOLS:
            tokens.append(_Token("op", _SYMBOLS[char], pos))
            pos += 1
        elif match := _SUPERSCRIPT.match(text, pos):
            tokens += _superscript(match.group(), pos, text)
            pos = match.end()
        elif match := _LATEX.match(text, pos):
            if op := _LATEX_OPS[match.group()]:
                tokens.append(_Token("op", op, pos))
            pos = match.end()
        elif char in "xX" and _between_numbers(text, pos, tokens):
            tokens.append(_Token("op", "*", pos))
            pos += 1
        else:
            hint = "; x means multiplication only between two numbers" if char in "xX" else ""
            raise InvalidAnswer(f"unexpected {char!r} at character {pos + 1} of {show(text, 60)}{hint}")
    return tokens


def _number(mantissa: str, exponent: str | None, pos: int, text: str, written: str) -> _Token:
    if len(mantissa.replace(".", "")) > MAX_DIGITS:
        raise InvalidAnswer(f"a number in {show(text)} has more than {MAX_DIGITS} digits")
    value = Fraction(mantissa)
    if exponent is not None:
        # the length test first, so a thousand-digit exponent is refused without converting it
        if len(exponent.lstrip("+-")) > 3 or abs(int(exponent)) > MAX_EXPONENT:
            raise InvalidAnswer(f"the exponent in {show(text)} is too large (at most e{MAX_EXPONENT})")
        value *= Fraction(10) ** int(exponent)
    return _Token("num", written, pos, value)


def _superscript(run: str, pos: int, text: str) -> list[_Token]:
    """10⁴ is 10 ^ 4; ⁻ and ⁺ may lead the exponent."""
    ascii_run = run.translate(_SUPERSCRIPT_DIGITS)
    if not re.fullmatch(r"[+-]?[0-9]{1,6}", ascii_run):
        raise InvalidAnswer(f"the superscript {run!r} in {show(text)} is not a whole-number exponent")
    tokens = [_Token("op", "^", pos)]
    if ascii_run[0] in "+-":
        tokens.append(_Token("op", ascii_run[0], pos))
    digits = ascii_run.lstrip("+-")
    tokens.append(_Token("num", digits, pos, Fraction(int(digits))))
    return tokens


def _between_numbers(text: str, pos: int, tokens: Sequence[_Token]) -> bool:
    """x or X is a multiplication only right after a number or a closing bracket and right before a number or an
    opening bracket ("3x3", "2 x (3 + 1)"); anywhere else it is a letter, which has no place in a number."""
    if not tokens or not (tokens[-1].kind == "num" or tokens[-1].text in _CLOSING.values()):
        return False
    if tokens[-1].text == "0" and tokens[-1].start == pos - 1:
        return False  # 0x10 is hexadecimal, not 0 × 10
    after = text[pos + 1 :].lstrip()
    return bool(after) and (after[0].isdigit() or after[0] in ".([{")


class _Evaluator:
    """`sum := product (± product)*`, `product := unary ((*|/) unary | implicit '(' ...)*`,
    `unary := (+|-) unary | power`, `power := atom (^ unary)?` (so -2^2 = -4 and 2^3^2 = 2^9)."""

    def __init__(self, tokens: Sequence[_Token], text: str) -> None:
        self.tokens, self.text, self.pos = tokens, text, 0

    def peek(self, *ops: str) -> bool:
        if self.pos >= len(self.tokens):
            return False
        token = self.tokens[self.pos]
        return token.kind == "op" and token.text in ops

    def sum(self, depth: int) -> Fraction:
        total = self.product(depth)
        while self.peek("+", "-"):
            negate = self.tokens[self.pos].text == "-"
            self.pos += 1
            term = self.product(depth)
            total = self.bounded(total - term if negate else total + term)
        return total

    def product(self, depth: int) -> Fraction:
        value = self.unary(depth)
        while self.peek("*", "/", *_CLOSING):
            op = self.tokens[self.pos].text
            if op in ("*", "/"):
                self.pos += 1
            factor = self.unary(depth)
            if op == "/":
                if factor == 0:
                    raise InvalidAnswer(f"{show(self.text)} divides by zero")
                value = self.bounded(value / factor)
            else:
                value = self.bounded(value * factor)
        return value

    def unary(self, depth: int) -> Fraction:
        if depth > MAX_DEPTH:
            raise InvalidAnswer(f"{show(self.text)} nests deeper than {MAX_DEPTH} levels")
        if self.peek("+", "-"):
            negate = self.tokens[self.pos].text == "-"
            self.pos += 1
            operand = self.unary(depth + 1)
            return -operand if negate else operand
        base = self.atom(depth)
        if not self.peek("^"):
            return base
        self.pos += 1
        return self.power(base, self.unary(depth + 1))

    def power(self, base: Fraction, exponent: Fraction) -> Fraction:
        if exponent.denominator != 1:
            raise InvalidAnswer(f"{show(self.text)}: exponents must be whole numbers")
        if abs(exponent) > MAX_EXPONENT:
            raise InvalidAnswer(
                f"{show(self.text)}: the exponent {_short(exponent)} is too large (at most {MAX_EXPONENT})"
            )
        if base == 0 and exponent < 0:
            raise InvalidAnswer(f"{show(self.text)} divides by zero")
        # the result has at most (bits of the base) × exponent bits: refuse before computing anything large
        bits = max(base.numerator.bit_length(), base.denominator.bit_length()) * abs(int(exponent))
        if bits > MAX_BITS:
            raise InvalidAnswer(f"{show(self.text)} is too large a number to be an answer here")
        return self.bounded(base ** int(exponent))

    def atom(self, depth: int) -> Fraction:
        if self.pos >= len(self.tokens):
            raise InvalidAnswer(f"{show(self.text)} ends too early; a number is missing")
        token = self.tokens[self.pos]
        self.pos += 1
        if token.kind == "num":
            if self.pos < len(self.tokens) and self.tokens[self.pos].kind == "num":
                following = self.tokens[self.pos]
                raise InvalidAnswer(
                    f"{show(self.text)}: write an operator between {token.text} and {following.text} "
                    f"(one of {OPERATORS})"
                )
            return token.value
        if token.text in _CLOSING.values():
            raise InvalidAnswer(
                f"{show(self.text)}: a number is missing before {token.text!r} at character {token.start + 1}"
            )
        if token.text in _CLOSING:
            inner = self.sum(depth + 1)
            if not self.peek(_CLOSING[token.text]):
                raise InvalidAnswer(f"{show(self.text)}: {token.text!r} is not closed by {_CLOSING[token.text]!r}")
            self.pos += 1
            return inner
        self.fail(token)
        raise AssertionError  # unreachable: fail() raises

    def bounded(self, value: Fraction) -> Fraction:
        if max(value.numerator.bit_length(), value.denominator.bit_length()) > MAX_BITS:
            raise InvalidAnswer(f"{show(self.text)} is too large a number to be an answer here")
        return value

    def fail(self, token: _Token) -> None:
        if token.text in _CLOSING.values():
            raise InvalidAnswer(
                f"{show(self.text)}: {token.text!r} at character {token.start + 1} has no opening bracket"
            )
        raise InvalidAnswer(f"unexpected {token.text!r} at character {token.start + 1} of {show(self.text, 60)}")


def _short(value: Fraction) -> str:
    return str(value) if abs(value.numerator) < 10**12 else "with more than 12 digits"


def describe(value: Fraction) -> str:
    """A value for feedback: 18432, 18432.5, or 1/3 (about 0.333333) when the decimal would not end soon."""
    if value.denominator == 1:
        return str(value.numerator)
    denominator, twos, fives = value.denominator, 0, 0
    while denominator % 2 == 0:
        denominator, twos = denominator // 2, twos + 1
    while denominator % 5 == 0:
        denominator, fives = denominator // 5, fives + 1
    places = max(twos, fives)
    if denominator == 1 and places <= 12:
        scaled = abs(value) * 10**places
        whole, fraction = divmod(int(scaled), 10**places)
        sign = "-" if value < 0 else ""
        return f"{sign}{whole}.{fraction:0{places}d}".rstrip("0")
    return f"{value.numerator}/{value.denominator} (about {float(value):.6g})"
