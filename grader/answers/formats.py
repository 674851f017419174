"""Answer formats by checker name: the parser each Q2–Q4 checker uses and the notation it accepts.

Torch- and sympy-free, so `validate_sheet` and the answer-sheet template can use it anywhere; the checkers in
grader/checks call the same parsers, so validating and grading never disagree about what parses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from grader.answers.matrices import (
    KERNELS_NOTATION,
    MATRIX_NOTATION,
    RELATION_NOTATION,
    Matrix,
    Relation,
    parse_kernels,
    parse_matrix,
    parse_relation,
)
from grader.answers.numbers import COUNT_NOTATION, PADDING_NOTATION, read_count, read_padding
from grader.answers.shapes import RECEPTIVE_FIELD_NOTATION, SHAPE_NOTATION, parse_receptive_field, parse_shape
from grader.answers.specs import BatchNormSpec, Conv1dSpec
from grader.answers.text import bounded_text, show
from grader.errors import InvalidAnswer

Parse = Callable[[Any, Mapping[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class ExtraField:
    """An optional sheet field next to a part's answer, named `<answer leaf><suffix>`."""

    suffix: str
    notation: str
    parse: Parse


@dataclass(frozen=True, slots=True)
class AnswerFormat:
    notation: str
    parse: Parse
    """(answer, part params) -> parsed value; raises InvalidAnswer saying what was expected."""
    extras: tuple[ExtraField, ...] = ()


_FORMATS: dict[str, AnswerFormat] = {}


def register_format(checker: str, answer_format: AnswerFormat) -> AnswerFormat:
    _FORMATS[checker] = answer_format
    return answer_format


def get_format(checker: str) -> AnswerFormat | None:
    return _FORMATS.get(checker)


INCLUDES_NOTATION = "optional: which extras the count includes, a list of any of [bn, bias] ([] for none)"
_INCLUDE_ALIASES = {
    "bn": "bn",
    "batchnorm": "bn",
    "batch_norm": "bn",
    "batch norm": "bn",
    "batch-norm": "bn",
    "batch normalization": "bn",
    "batch normalisation": "bn",
    "batchnorm2d": "bn",
    "bias": "bias",
    "biases": "bias",
    "conv bias": "bias",
    "conv biases": "bias",
    "conv_bias": "bias",
}


def parse_includes(answer: Any, params: Mapping[str, Any] | None = None) -> frozenset[str]:
    """`[bn, bias]`, `"bn, bias"`, `[]` or `none`: the extras a parameter count says it includes."""
    if isinstance(answer, str):
        text = bounded_text(answer, limit=80, what="the includes list").strip("[]() ")
        items: list[Any] = [] if text.lower() in ("", "none", "nothing") else re.split(r"\s*[,;+]\s*|\s+and\s+", text)
    elif isinstance(answer, list) and len(answer) <= 4:
        items = answer
    else:
        raise InvalidAnswer(f"expected {INCLUDES_NOTATION}; got {show(answer)}")
    chosen = set()
    for item in items:
        key = str(item).strip().lower() if isinstance(item, str) else None
        if key not in _INCLUDE_ALIASES:
            raise InvalidAnswer(f"unknown extra {show(item)}; the includes list takes bn and/or bias")
        chosen.add(_INCLUDE_ALIASES[key])
    return frozenset(chosen)


def parse_backward(answer: Any, params: Mapping[str, Any]) -> Relation | Matrix:
    """Q4(b): a relation such as A^T, or the matrix B itself."""
    if isinstance(answer, str) and not _looks_like_matrix(answer):
        relation = parse_relation(answer)
        if relation is None:
            raise InvalidAnswer(f"expected a relation ({RELATION_NOTATION}) or the matrix B; got {show(answer)}")
        return relation
    if not isinstance(answer, str | list):
        raise InvalidAnswer(f"expected a relation ({RELATION_NOTATION}) or the matrix B as a list of rows")
    return parse_matrix(answer, Conv1dSpec.from_params(params).weight_space)


def _looks_like_matrix(text: str) -> bool:
    stripped = text.strip()
    constructor = "(" in stripped[:16] and ("array" in stripped[:16] or "Matrix" in stripped[:16])
    return stripped.startswith("[") or "\\begin" in stripped or "&" in stripped or constructor


def _shape(answer: Any, params: Mapping[str, Any]) -> tuple[str, ...]:
    return parse_shape(answer, BatchNormSpec.from_params(params).layout)


def _matrix(answer: Any, params: Mapping[str, Any]) -> Matrix:
    return parse_matrix(answer, Conv1dSpec.from_params(params).weight_space)


def _kernels(answer: Any, params: Mapping[str, Any]) -> Any:
    spec = Conv1dSpec.from_params(params)
    return parse_kernels(
        answer, spec.weight_space, sources=spec.out_channels, targets=spec.in_channels, taps=spec.kernel_size
    )


register_format(
    "block_param_count",
    AnswerFormat(
        COUNT_NOTATION,
        lambda answer, _: read_count(answer),
        (ExtraField("_includes", INCLUDES_NOTATION, parse_includes),),
    ),
)
register_format(
    "block_receptive_field", AnswerFormat(RECEPTIVE_FIELD_NOTATION, lambda answer, _: parse_receptive_field(answer))
)
register_format("batchnorm_stat_shape", AnswerFormat(SHAPE_NOTATION + "; axis names as in the question", _shape))
register_format("conv1d_matrix", AnswerFormat(MATRIX_NOTATION, _matrix))
register_format(
    "conv1d_backward_matrix",
    AnswerFormat(f"a relation ({RELATION_NOTATION}) or the matrix: {MATRIX_NOTATION}", parse_backward),
)
register_format("conv1d_backward_padding", AnswerFormat(PADDING_NOTATION, lambda answer, _: read_padding(answer)))
register_format("conv1d_backward_kernels", AnswerFormat(KERNELS_NOTATION, _kernels))
