"""Weight expressions in Q4 answers: an allow-list tokenizer and a small grammar over ω_k^{ij}, numbers, + - * /.

Text is never evaluated: an entry becomes an `Expr` tree built from recognised tokens only, with bounded
length, nesting, size and degree, so the sympy and numeric checks downstream only ever see small polynomials.
There is no power operator (`^` only marks a weight's channel superscript), so `9**9**9` is a syntax error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from grader.answers.text import bounded_text, reject_bool, show
from grader.errors import InvalidAnswer

MAX_ENTRY_CHARS = 200
MAX_DEPTH = 8
MAX_TERMS = 64
MAX_DEGREE = 3
MAX_NUMBER_DIGITS = 15
MAX_MAGNITUDE = 10**15
WEIGHT_NOTATION = "w1^11, w_1^{11}, w_1^(11), \\omega_1^{11}, omega_1^{11} or ω_1^{11} (tap 1, channels 1→1)"

_NAME = re.compile(r"\\omega|omega|ω|[wW]", re.IGNORECASE)
_BARE_TAP = re.compile(r"[0-9]+")
_SCRIPT = re.compile(r"\s*([_^])\s*(?:\{([^{}]{1,16})\}|\(([^()]{1,16})\)|([0-9]+))")
_INDICES = re.compile(r"\(?\s*([0-9]{1,3}(?:\s*,\s*[0-9]{1,3}|\s+[0-9]{1,3})*)\s*\)?")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
_OPERATOR = re.compile(r"\\cdot|\\times|[-+*/()·×−]")
_CANONICAL_OP = {"\\cdot": "*", "\\times": "*", "·": "*", "×": "*", "−": "-"}


@dataclass(frozen=True, slots=True, order=True)
class Weight:
    """ω_tap^{source target}: tap `tap` of the kernel that scans input channel `source` into output `target`."""

    tap: int
    source: int
    target: int

    @property
    def label(self) -> str:
        pair = f"{self.source}{self.target}" if max(self.source, self.target) < 10 else f"{self.source},{self.target}"
        return f"w_{self.tap}^{{{pair}}}"


@dataclass(frozen=True, slots=True)
class WeightSpace:
    """The weights that exist in a question: taps 1..taps, input channels 1..sources, outputs 1..targets."""

    taps: int
    sources: int
    targets: int

    def all(self) -> tuple[Weight, ...]:
        return tuple(
            Weight(k, i, j)
            for i in range(1, self.sources + 1)
            for j in range(1, self.targets + 1)
            for k in range(1, self.taps + 1)
        )

    def check(self, weight: Weight, text: str) -> Weight:
        if not 1 <= weight.tap <= self.taps:
            raise InvalidAnswer(f"{text}: tap {weight.tap} is out of range 1..{self.taps} (write ω_k^{{ij}}, k = tap)")
        if not (1 <= weight.source <= self.sources and 1 <= weight.target <= self.targets):
            raise InvalidAnswer(
                f"{text}: channels {weight.source},{weight.target} are out of range; in ω_k^{{ij}}, "
                f"i = input channel 1..{self.sources}, j = output channel 1..{self.targets}"
            )
        return weight


@dataclass(frozen=True, slots=True)
class Expr:
    """A parsed entry: a number, a weight, or a sum / product / negation of entries."""

    op: Literal["num", "weight", "add", "mul", "neg"]
    args: tuple[Expr, ...] = ()
    number: Fraction = Fraction(0)
    weight: Weight | None = None

    def evaluate(self, values: Mapping[Weight, float]) -> float:
        """The entry's value with each weight replaced by its probe value."""
        if self.op == "num":
            return float(self.number)
        if self.op == "weight":
            assert self.weight is not None
            return values[self.weight]
        parts = [arg.evaluate(values) for arg in self.args]
        if self.op == "add":
            return sum(parts)
        if self.op == "neg":
            return -parts[0]
        product = 1.0
        for part in parts:
            product *= part
        return product

    def constant(self) -> Fraction | None:
        """The exact value when the entry has no weights, else None."""
        if self.op == "num":
            return self.number
        if self.op == "weight":
            return None
        parts = [arg.constant() for arg in self.args]
        if any(part is None for part in parts):
            return None
        if self.op == "add":
            return sum(parts, Fraction(0))  # type: ignore[arg-type]
        if self.op == "neg":
            return -parts[0]  # type: ignore[operator]
        product = Fraction(1)
        for part in parts:
            product *= part  # type: ignore[operator]
        return product

    def size(self) -> tuple[int, int]:
        """(terms, degree) after full expansion, bounded from above without expanding anything."""
        if self.op in ("num", "weight"):
            return 1, int(self.op == "weight")
        sizes = [arg.size() for arg in self.args]
        if self.op == "neg":
            return sizes[0]
        if self.op == "add":
            return sum(s[0] for s in sizes), max(s[1] for s in sizes)
        terms = 1
        for s in sizes:
            terms = min(terms * s[0], MAX_TERMS + 1)
        return terms, sum(s[1] for s in sizes)


def number(value: Fraction) -> Expr:
    return Expr("num", number=value)


ZERO = number(Fraction(0))


@dataclass(frozen=True, slots=True)
class Token:
    kind: Literal["num", "weight", "op"]
    text: str
    start: int
    end: int
    spaced: bool
    """Whitespace came right before this token (Matlab-style rows split elements on it)."""
    value: Fraction | Weight | None = None


def parse_entry(value: Any, space: WeightSpace) -> Expr:
    """One matrix or kernel entry: a YAML number or a weight expression in text."""
    reject_bool(value, "expected a weight like w_1^{11} or 0")
    if isinstance(value, int):
        return number(_bounded_number(Fraction(value), value))
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidAnswer(f"entry {show(value)} is not a finite number")
        return number(_bounded_number(Fraction(value), value))
    if not isinstance(value, str):
        raise InvalidAnswer(f"expected an entry like w_1^{{11}} or 0, got {type(value).__name__} {show(value)}")
    return parse_expression(value, space)


def parse_expression(text: str, space: WeightSpace) -> Expr:
    stripped = bounded_text(text, limit=MAX_ENTRY_CHARS, what="an entry")
    if not stripped:
        raise InvalidAnswer("an entry is empty; write 0 for a zero entry")
    return parse_tokens(tokenize(stripped, space), stripped)


def tokenize(text: str, space: WeightSpace) -> list[Token]:
    tokens: list[Token] = []
    pos, spaced = 0, False
    while pos < len(text):
        if text[pos].isspace():
            pos, spaced = pos + 1, True
            continue
        token = _read_token(text, pos, spaced, space)
        tokens.append(token)
        pos, spaced = token.end, False
    return tokens


def _read_token(text: str, pos: int, spaced: bool, space: WeightSpace) -> Token:
    if match := _NUMBER.match(text, pos):
        digits = match.group()
        if len(digits.replace(".", "")) > MAX_NUMBER_DIGITS:
            raise InvalidAnswer(f"the number {show(digits)} has more than {MAX_NUMBER_DIGITS} digits")
        return Token("num", digits, pos, match.end(), spaced, Fraction(digits))
    if match := _NAME.match(text, pos):
        weight, end = _read_weight(text, match.end(), match.group())
        return Token("weight", text[pos:end], pos, end, spaced, space.check(weight, text[pos:end]))
    if match := _OPERATOR.match(text, pos):
        if text.startswith("**", pos):
            raise InvalidAnswer(f"powers (**) are not accepted in {show(text)}; entries are weights, numbers, + - * /")
        op = _CANONICAL_OP.get(match.group(), match.group())
        return Token("op", op, pos, match.end(), spaced)
    if text[pos] == "^":
        raise InvalidAnswer(f"'^' in {show(text)} must follow a weight (w_1^{{11}}); powers are not accepted")
    raise InvalidAnswer(
        f"unexpected {text[pos]!r} at character {pos + 1} of {show(text)}; "
        f"expected weights like {WEIGHT_NOTATION}, numbers, + - * / and parentheses"
    )


def _read_weight(text: str, pos: int, name: str) -> tuple[Weight, int]:
    """The sub- and superscript after a weight's name, in either order; a bare number right after is the tap."""
    scripts: dict[str, str] = {}
    if bare := _BARE_TAP.match(text, pos):
        scripts["_"], pos = bare.group(), bare.end()
    for _ in range(2):
        match = _SCRIPT.match(text, pos)
        if match is None:
            break
        marker = match.group(1)
        if marker in scripts:
            raise InvalidAnswer(
                f"{show(text[max(0, match.end() - 24) : match.end()])}: a weight has one subscript and one superscript"
            )
        scripts[marker] = next(group for group in match.groups()[1:] if group is not None)
        pos = match.end()
    written = text[max(0, pos - 24) : pos]
    if "_" not in scripts or "^" not in scripts:
        raise InvalidAnswer(f"{show(written or name)}: write a weight with tap and channels, like {WEIGHT_NOTATION}")
    tap = _indices(scripts["_"], written)
    channels = _indices(scripts["^"], written)
    if len(tap) != 1:
        raise InvalidAnswer(f"{show(written)}: the subscript is the tap k, a single number")
    if len(channels) == 1 and len(scripts["^"].strip("() ")) == 2:
        channels = [int(digit) for digit in scripts["^"].strip("() ")]
    if len(channels) != 2:
        raise InvalidAnswer(f"{show(written)}: the superscript is the channel pair ij, like ^{{12}} or ^{{1,2}}")
    return Weight(tap[0], channels[0], channels[1]), pos


def _indices(script: str, written: str) -> list[int]:
    match = _INDICES.fullmatch(script.strip())
    if match is None:
        raise InvalidAnswer(f"{show(written)}: indices must be numbers, like w_1^{{12}}")
    return [int(part) for part in re.split(r"[\s,]+", match.group(1))]


def _bounded_number(value: Fraction, written: Any) -> Fraction:
    if abs(value) > MAX_MAGNITUDE:
        raise InvalidAnswer(f"the number {show(written)} is too large for a weight coefficient")
    return value


def parse_tokens(tokens: Sequence[Token], text: str) -> Expr:
    """Recursive descent over `sum := product (± product)*`, `product := unary (*|/ unary)*`."""
    if not tokens:
        raise InvalidAnswer(f"{show(text)} has no entry")
    parser = _Parser(tokens, text)
    expr = parser.sum(0)
    if parser.pos != len(tokens):
        parser.fail(tokens[parser.pos])
    terms, degree = expr.size()
    if terms > MAX_TERMS or degree > MAX_DEGREE:
        raise InvalidAnswer(f"{show(text)} is too complex for a matrix entry (expand it into a few terms)")
    return expr


class _Parser:
    def __init__(self, tokens: Sequence[Token], text: str) -> None:
        self.tokens, self.text, self.pos = tokens, text, 0

    def peek(self, *ops: str) -> bool:
        if self.pos >= len(self.tokens):
            return False
        token = self.tokens[self.pos]
        return token.kind == "op" and token.text in ops

    def sum(self, depth: int) -> Expr:
        terms = [self.product(depth)]
        while self.peek("+", "-"):
            negate = self.tokens[self.pos].text == "-"
            self.pos += 1
            term = self.product(depth)
            terms.append(Expr("neg", (term,)) if negate else term)
        return terms[0] if len(terms) == 1 else Expr("add", tuple(terms))

    def product(self, depth: int) -> Expr:
        factors = [self.unary(depth)]
        while self.peek("*", "/"):
            divide = self.tokens[self.pos].text == "/"
            self.pos += 1
            factor = self.unary(depth)
            factors.append(self.reciprocal(factor) if divide else factor)
        return factors[0] if len(factors) == 1 else Expr("mul", tuple(factors))

    def reciprocal(self, divisor: Expr) -> Expr:
        value = divisor.constant()
        if value is None:
            raise InvalidAnswer(f"{show(self.text)}: dividing by a weight is not accepted")
        if value == 0:
            raise InvalidAnswer(f"{show(self.text)}: division by zero")
        return number(1 / value)

    def unary(self, depth: int) -> Expr:
        if depth > MAX_DEPTH:
            raise InvalidAnswer(f"{show(self.text)} nests deeper than {MAX_DEPTH} levels")
        if self.peek("+", "-"):
            negate = self.tokens[self.pos].text == "-"
            self.pos += 1
            operand = self.unary(depth + 1)
            return Expr("neg", (operand,)) if negate else operand
        return self.atom(depth)

    def atom(self, depth: int) -> Expr:
        if self.pos >= len(self.tokens):
            raise InvalidAnswer(f"{show(self.text)} ends too early; an operand is missing")
        token = self.tokens[self.pos]
        self.pos += 1
        if token.kind == "num":
            assert isinstance(token.value, Fraction)
            return number(_bounded_number(token.value, token.text))
        if token.kind == "weight":
            assert isinstance(token.value, Weight)
            return Expr("weight", weight=token.value)
        if token.text == "(":
            inner = self.sum(depth + 1)
            if not self.peek(")"):
                raise InvalidAnswer(f"{show(self.text)}: '(' is not closed")
            self.pos += 1
            return inner
        self.fail(token)
        raise AssertionError  # unreachable: fail() raises

    def fail(self, token: Token) -> None:
        raise InvalidAnswer(f"unexpected {token.text!r} at character {token.start + 1} of {show(self.text, 60)}")
