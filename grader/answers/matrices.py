"""Matrix-valued answers: YAML lists of rows, NumPy / Matlab / LaTeX matrix text, relations like A^T, kernels.

Follows PrairieLearn's matrix input: `[[a, b], [c, d]]` (NumPy), `[a b; c d]` (Matlab, elements split on
commas or whitespace), plus `\\begin{bmatrix} a & b \\\\ c & d \\end{bmatrix}`. Every entry goes through the
allow-list grammar of grader.answers.expressions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from grader.answers.expressions import Expr, Token, WeightSpace, parse_entry, parse_expression, parse_tokens, tokenize
from grader.answers.text import bounded_text, show
from grader.errors import InvalidAnswer

MAX_MATRIX_CHARS = 8000
MAX_ROWS = 32
MAX_NESTING = 6
Matrix = tuple[tuple[Expr, ...], ...]
MATRIX_NOTATION = (
    'a list of rows [[w_2^{12}, 0, ...], ...], or text "[[...], [...]]" or "[a b; c d]"; entries are weights '
    "such as w_2^{12} (tap 2, input channel 1, output channel 2), numbers, + - * /"
)
_CONSTRUCTOR = re.compile(r"(?:(?:np|numpy)\.)?(?:array|matrix)\((.*)\)|Matrix\((.*)\)", re.DOTALL)
_LATEX_ENV = re.compile(r"\\(?:begin|end)\{[a-zA-Z]*matrix\*?\}|\\left|\\right|\$")
_OPEN, _CLOSE = "([{", ")]}"


def parse_matrix(answer: Any, space: WeightSpace) -> Matrix:
    """A rectangular matrix of entries, from YAML rows or matrix text."""
    if isinstance(answer, list):
        rows = [_yaml_row(row, index, space) for index, row in enumerate(answer[: MAX_ROWS + 1])]
    elif isinstance(answer, str):
        rows = _rows_from_text(bounded_text(answer, limit=MAX_MATRIX_CHARS, what="the matrix"), space)
    else:
        raise InvalidAnswer(f"expected {MATRIX_NOTATION}; got {type(answer).__name__} {show(answer)}")
    return _rectangular(rows)


def _yaml_row(row: Any, index: int, space: WeightSpace) -> list[Expr]:
    if isinstance(row, list):
        return [parse_entry(value, space) for value in row[: MAX_ROWS + 1]]
    if isinstance(row, str):
        return parse_row_text(bounded_text(row, limit=MAX_MATRIX_CHARS, what="a row"), space)
    raise InvalidAnswer(f"row {index + 1} must be a list of entries (the matrix is a list of rows), got {show(row)}")


def _rectangular(rows: list[list[Expr]]) -> Matrix:
    if not rows or not rows[0]:
        raise InvalidAnswer(f"the matrix is empty; expected {MATRIX_NOTATION}")
    if len(rows) > MAX_ROWS or any(len(row) > MAX_ROWS for row in rows):
        raise InvalidAnswer(f"the matrix has more than {MAX_ROWS} rows or columns")
    widths = sorted({len(row) for row in rows})
    if len(widths) > 1:
        raise InvalidAnswer(f"the rows have different lengths {widths}; every row needs the same number of entries")
    return tuple(tuple(row) for row in rows)


def _rows_from_text(text: str, space: WeightSpace) -> list[list[Expr]]:
    if "\\begin" in text or "&" in text:
        return _latex_rows(text, space)
    if constructor := _CONSTRUCTOR.fullmatch(text):
        text = (constructor.group(1) or constructor.group(2) or "").strip()
    if not (text.startswith("[") and text.endswith("]")):
        raise InvalidAnswer(f"matrix text must be in brackets, like [[a, b], [c, d]] or [a b; c d]; got {show(text)}")
    body = text[1:-1].strip()
    if not body:
        raise InvalidAnswer(f"the matrix is empty; expected {MATRIX_NOTATION}")
    if body.startswith("["):
        return [_bracketed_row(part, space) for part in split_top(body, ",")]
    return [parse_row_text(row, space) for row in split_top(body, ";\n")]


def _bracketed_row(part: str, space: WeightSpace) -> list[Expr]:
    if not (part.startswith("[") and part.endswith("]")):
        raise InvalidAnswer(f"in [[...], [...]] notation each row is in brackets; got {show(part)}")
    return [parse_expression(entry, space) for entry in split_top(part[1:-1], ",")]


def _latex_rows(text: str, space: WeightSpace) -> list[list[Expr]]:
    body = _LATEX_ENV.sub(" ", text).strip()
    rows = [row for row in re.split(r"\\\\", body) if row.strip()]
    return [[parse_expression(entry, space) for entry in row.split("&")] for row in rows[: MAX_ROWS + 1]]


def parse_row_text(row: str, space: WeightSpace) -> list[Expr]:
    """One row: entries split on top-level commas, or else on whitespace between complete operands."""
    row = row.strip()
    if row.startswith("[") and row.endswith("]"):
        row = row[1:-1].strip()
    pieces = split_top(row, ",")
    if len(pieces) > 1:
        return [parse_expression(piece, space) for piece in pieces]
    return [parse_tokens(group, row) for group in _whitespace_groups(tokenize(row, space))]


def _whitespace_groups(tokens: list[Token]) -> list[list[Token]]:
    """Matlab's rule: `a b` and `a -b` are two elements, `a - b` and `a-b` one."""
    groups: list[list[Token]] = []
    for index, token in enumerate(tokens):
        previous = tokens[index - 1] if index else None
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        ends_operand = previous is not None and (previous.kind != "op" or previous.text == ")")
        starts_operand = token.kind != "op" or token.text == "("
        signed = token.text in "+-" and token.kind == "op" and following is not None and not following.spaced
        if not groups or (ends_operand and token.spaced and (starts_operand or signed)):
            groups.append([])
        groups[-1].append(token)
    return groups


def split_top(text: str, separators: str) -> list[str]:
    """Split on separators outside any brackets; unbalanced or too-deep brackets are refused."""
    pieces, depth, start, stack = [], 0, 0, []
    for index, char in enumerate(text):
        if char in _OPEN:
            stack.append(_CLOSE[_OPEN.index(char)])
            depth += 1
            if depth > MAX_NESTING:
                raise InvalidAnswer(f"the matrix text nests brackets deeper than {MAX_NESTING} levels")
        elif char in _CLOSE:
            if not stack or stack.pop() != char:
                raise InvalidAnswer(f"unbalanced {char!r} at character {index + 1} of {show(text)}")
            depth -= 1
        elif char in separators and depth == 0:
            pieces.append(text[start:index])
            start = index + 1
    if stack:
        raise InvalidAnswer(f"{show(text)}: a bracket is not closed (expected {stack[-1]!r})")
    pieces.append(text[start:])
    stripped = [piece.strip() for piece in pieces]
    if stripped and not stripped[-1] and len(stripped) > 1:
        stripped.pop()  # a trailing comma or semicolon
    if any(not piece for piece in stripped):
        raise InvalidAnswer(f"{show(text)} has an empty entry; write 0 for a zero entry")
    return stripped


@dataclass(frozen=True, slots=True)
class Relation:
    """B written as a relation to A ("A^T"); `name` is what it denotes."""

    name: str
    text: str


RELATION_NOTATION = "A^T, A^\\top, A', A.T, transpose(A), A^{-1}, inv(A) or pinv(A)"
# Spellings are compared after removing whitespace (and reading a lone lower-case a as A).
# fmt: off
_TRANSPOSE = frozenset({
    r"A^T", r"A^{T}", r"A^t", r"A^{t}", r"A^\top", r"A^{\top}", r"A^\intercal", r"A^{\intercal}", r"A^\mathsf{T}",
    r"A^{\mathsf{T}}", r"A^\mathrm{T}", r"A^{\mathrm{T}}", r"A'", r"A.T", r"A.T()", r"A.transpose()", r"transpose(A)",
    r"np.transpose(A)", r"numpy.transpose(A)", r"t(A)", r"Aᵀ", r"A^⊤", r"A⊤", r"(A)^T", r"A^(T)",
})
_CONJUGATE_TRANSPOSE = frozenset({
    r"A^H", r"A^{H}", r"A^*", r"A^{*}", r"A^\ast", r"A^\dagger", r"A^{\dagger}", r"A^†", r"A.H",
})
_WRONG = {
    "same": frozenset({"A"}),
    "inverse": frozenset({r"A^{-1}", r"A^-1", r"A^(-1)", r"A^{−1}", r"inv(A)", r"np.linalg.inv(A)", r"A.inv()"}),
    "pseudo_inverse": frozenset({r"A^+", r"A^{+}", r"pinv(A)", r"np.linalg.pinv(A)", r"A.pinv()"}),
    "negative_transpose": frozenset({r"-A^T", r"-A^{T}", r"-A'", r"-A.T", r"-transpose(A)"}),
}
# fmt: on
_PHRASE = re.compile(r"(?:the\s+)?transpose\s+of\s+(?:matrix\s+)?A\.?", re.IGNORECASE)
_PREFIX = re.compile(r"^\s*B\s*(?:=|is|is\s+equal\s+to)\s*", re.IGNORECASE)


def parse_relation(text: str) -> Relation | None:
    """The relation B = f(A) the text names, or None when the text is not a relation."""
    written = _PREFIX.sub("", bounded_text(text, limit=80, what="the relation"))
    if _PHRASE.fullmatch(written):
        return Relation("transpose", text)
    compact = re.sub(r"(?<![A-Za-z])a(?![A-Za-z])", "A", re.sub(r"\s+", "", written)).rstrip(".")
    if compact in _TRANSPOSE:
        return Relation("transpose", text)
    if compact in _CONJUGATE_TRANSPOSE:
        return Relation("conjugate_transpose", text)
    for name, spellings in _WRONG.items():
        if compact in spellings:
            return Relation(name, text)
    return None


KERNELS_NOTATION = (
    "a mapping {U11: [a, b, c], U12: [...], ...} with weight entries like w_2^{12}: "
    "U^{ij} scans channel i of padded dL/dY and feeds channel j of dL/dX"
)
_KERNEL_KEY = re.compile(
    r"\\?[Uu]\s*[_^]?\s*(?:\{\s*([0-9]+)\s*,?\s*([0-9]+)\s*\}|\(\s*([0-9]+)\s*,?\s*([0-9]+)\s*\)"
    r"|([0-9])\s*,?\s*([0-9]))"
)


def parse_kernels(
    answer: Any, space: WeightSpace, *, sources: int, targets: int, taps: int
) -> dict[tuple[int, int], tuple[Expr, ...]]:
    """Kernels U^{ij} (i = channel of dL/dY in 1..sources, j = channel of dL/dX in 1..targets), each `taps` long."""
    if not isinstance(answer, Mapping):
        raise InvalidAnswer(f"expected {KERNELS_NOTATION}; got {type(answer).__name__} {show(answer)}")
    if len(answer) > MAX_ROWS:
        raise InvalidAnswer(f"{len(answer)} kernels given; expected {sources * targets}")
    kernels: dict[tuple[int, int], tuple[Expr, ...]] = {}
    for key, value in answer.items():
        pair = _kernel_key(key)
        if pair in kernels:
            raise InvalidAnswer(f"kernel U^{{{pair[0]}{pair[1]}}} is given twice")
        kernels[pair] = _kernel_taps(value, key, space, taps)
    expected = {(i, j) for i in range(1, sources + 1) for j in range(1, targets + 1)}
    _check_keys(set(kernels), expected)
    return kernels


def _kernel_key(key: Any) -> tuple[int, int]:
    match = _KERNEL_KEY.fullmatch(str(key).strip()) if len(str(key)) <= 16 else None
    if match is None:
        raise InvalidAnswer(f"kernel name {show(key)} is not like U11, U^{{12}} or U_(2,1)")
    digits = [int(group) for group in match.groups() if group is not None]
    return (digits[0], digits[1])


def _kernel_taps(value: Any, key: Any, space: WeightSpace, taps: int) -> tuple[Expr, ...]:
    if isinstance(value, list):
        entries = [parse_entry(item, space) for item in value[: taps + 1]]
    elif isinstance(value, str):
        entries = parse_row_text(bounded_text(value, limit=MAX_MATRIX_CHARS, what=f"kernel {key}"), space)
    else:
        raise InvalidAnswer(f"kernel {key} must be a list like [w3^11, w2^11, w1^11], got {show(value)}")
    if len(entries) != taps:
        raise InvalidAnswer(f"kernel {key} has {len(entries)} taps; a kernel here has {taps}")
    return tuple(entries)


def _check_keys(given: set[tuple[int, int]], expected: set[tuple[int, int]]) -> None:
    def names(pairs: set[tuple[int, int]]) -> str:
        return ", ".join(f"U{i}{j}" for i, j in sorted(pairs))

    if given - expected:
        raise InvalidAnswer(f"unexpected kernels {names(given - expected)}; expected exactly {names(expected)}")
    if expected - given:
        raise InvalidAnswer(f"missing kernels {names(expected - given)}; expected {names(expected)}")
