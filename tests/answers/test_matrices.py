"""Matrix notations (YAML rows, NumPy / Matlab / LaTeX text), relations for B, and kernel mappings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from grader.answers.expressions import WeightSpace
from grader.answers.matrices import Matrix, parse_kernels, parse_matrix, parse_relation
from grader.errors import InvalidAnswer
from tests.answers.sheets import KEY_A, KEY_KERNELS, WEIGHT_STYLES, restyled

SPACE = WeightSpace(taps=3, sources=2, targets=2)
VALUES = {w: 100.0 * w.tap + 10.0 * w.source + w.target for w in SPACE.all()}
EXPECTED_A = np.array(
    [[float(e.replace("w", "").replace("^", "")[0] + e[-2:]) if e != "0" else 0.0 for e in row] for row in KEY_A]
)


def numeric(matrix: Matrix) -> np.ndarray:
    return np.array([[entry.evaluate(VALUES) for entry in row] for row in matrix])


def test_expected_values_are_tap_source_target_digits() -> None:
    assert EXPECTED_A[0, 0] == 111 and EXPECTED_A[2, 4] == 122


@pytest.mark.parametrize("style", sorted(WEIGHT_STYLES))
def test_yaml_rows_in_every_weight_style(style: str) -> None:
    assert np.array_equal(numeric(parse_matrix(restyled(KEY_A, style), SPACE)), EXPECTED_A)


def _numpy_text(rows: list[list[str]]) -> str:
    return "[" + ", ".join("[" + ", ".join(row) + "]" for row in rows) + "]"


def _matlab_text(rows: list[list[str]], separator: str = " ") -> str:
    return "[" + "; ".join(separator.join(row) for row in rows) + "]"


def _latex_text(rows: list[list[str]]) -> str:
    return "\\begin{bmatrix} " + " \\\\ ".join(" & ".join(row) for row in rows) + " \\end{bmatrix}"


@pytest.mark.parametrize(
    "text",
    [
        _numpy_text(KEY_A),
        _numpy_text(restyled(KEY_A, "braced")),
        _numpy_text(restyled(KEY_A, "parenthesised")),
        "np.array(" + _numpy_text(KEY_A) + ")",
        "Matrix(" + _numpy_text(restyled(KEY_A, "greek")) + ")",
        _matlab_text(KEY_A),
        _matlab_text(KEY_A, ", "),
        _matlab_text(restyled(KEY_A, "greek_braced")),
        "[" + "\n".join(" ".join(row) for row in KEY_A) + "]",
        _latex_text(restyled(KEY_A, "latex")),
        "$" + _latex_text(restyled(KEY_A, "latex")).replace("bmatrix", "pmatrix") + "$",
        _numpy_text([[f"({e})" for e in row] for row in KEY_A]),
    ],
)
def test_matrix_text_notations(text: str) -> None:
    assert np.array_equal(numeric(parse_matrix(text, SPACE)), EXPECTED_A)


def test_rows_may_be_strings() -> None:
    rows = [", ".join(row) for row in KEY_A[:2]] + [" ".join(row) for row in KEY_A[2:]]
    assert np.array_equal(numeric(parse_matrix(rows, SPACE)), EXPECTED_A)


def test_matlab_whitespace_rule_for_signs() -> None:
    matrix = parse_matrix("[w1^11 -w2^11; w1^11 - w2^11 0]", SPACE)
    assert numeric(matrix).tolist() == [[111.0, -211.0], [-100.0, 0.0]]


@pytest.mark.parametrize(
    "answer",
    [
        "[[1, 2], [3]]",
        "[]",
        "[[]]",
        [],
        [[]],
        "[[1, 2], [3, 4]",
        "[[1, 2], [3, 4]]]",
        "[" * 40 + "1" + "]" * 40,
        "x" * 9000,
        [1, 2, 3],
        [[1, 2], 3],
        {"a": 1},
        5,
        "1, 2; 3, 4",
        "[[9**9**9]]",
        "[[1,,2]]",
        "[[w1^11, w9^11]]",
        [[1] * 40],
        [[1]] * 40,
        "[1 2; 3 4 5]",
        "\\begin{bmatrix} 1 & \\\\ 2 & 3 \\end{bmatrix}",
    ],
)
def test_matrix_rejects(answer: Any) -> None:
    with pytest.raises(InvalidAnswer) as info:
        parse_matrix(answer, SPACE)
    assert info.value.message


@pytest.mark.parametrize(
    "text",
    [
        "A^T",
        "A^{T}",
        "A^\\top",
        "A^{\\top}",
        "A'",
        "A.T",
        "transpose(A)",
        "B = A^T",
        "B=A^T",
        "a^T",
        " A ^ T ",
        "np.transpose(A)",
        "Aᵀ",
        "the transpose of A",
        "B is the transpose of A",
        "A^\\intercal",
        "A.transpose()",
    ],
)
def test_transpose_relations(text: str) -> None:
    relation = parse_relation(text)
    assert relation is not None and relation.name == "transpose"


@pytest.mark.parametrize(
    "text, name",
    [
        ("A", "same"),
        ("A^{-1}", "inverse"),
        ("inv(A)", "inverse"),
        ("pinv(A)", "pseudo_inverse"),
        ("-A^T", "negative_transpose"),
        ("A^H", "conjugate_transpose"),
        ("A^\\dagger", "conjugate_transpose"),
    ],
)
def test_other_relations_are_recognised(text: str, name: str) -> None:
    relation = parse_relation(text)
    assert relation is not None and relation.name == name


@pytest.mark.parametrize("text", ["B", "foo", "A^T^T", "A*A", "exec('A')"])
def test_unknown_relations(text: str) -> None:
    assert parse_relation(text) is None


def _kernels(answer: Any) -> dict[tuple[int, int], list[float]]:
    parsed = parse_kernels(answer, SPACE, sources=2, targets=2, taps=3)
    return {pair: [e.evaluate(VALUES) for e in taps] for pair, taps in parsed.items()}


KEY_KERNEL_VALUES = {
    (1, 1): [311.0, 211.0, 111.0],
    (1, 2): [321.0, 221.0, 121.0],
    (2, 1): [312.0, 212.0, 112.0],
    (2, 2): [322.0, 222.0, 122.0],
}


@pytest.mark.parametrize(
    "answer",
    [
        KEY_KERNELS,
        {key.replace("U", "U^"): value for key, value in KEY_KERNELS.items()},
        {f"U^{{{key[1:]}}}": value for key, value in KEY_KERNELS.items()},
        {f"U_({key[1]},{key[2]})": value for key, value in KEY_KERNELS.items()},
        {key: "[" + ", ".join(value) + "]" for key, value in KEY_KERNELS.items()},
        {key: " ".join(value) for key, value in KEY_KERNELS.items()},
        {
            key: [v.replace("w", "\\omega_").replace("^", "^{") + "}" for v in value]
            for key, value in KEY_KERNELS.items()
        },
    ],
)
def test_kernel_notations(answer: Any) -> None:
    assert _kernels(answer) == KEY_KERNEL_VALUES


@pytest.mark.parametrize(
    "answer, phrase",
    [
        ({k: v for k, v in KEY_KERNELS.items() if k != "U21"}, "missing kernels U21"),
        ({**KEY_KERNELS, "U13": ["0", "0", "0"]}, "unexpected kernels U13"),
        ({**KEY_KERNELS, "U^{11}": ["0", "0", "0"]}, "given twice"),
        ({**KEY_KERNELS, "U11": ["w1^11", "w2^11"]}, "has 2 taps"),
        ({**KEY_KERNELS, "V11": ["0", "0", "0"]}, "not like U11"),
        ({**KEY_KERNELS, "U11": 5}, "must be a list"),
        ("U11 = [w3^11, w2^11, w1^11]", "a mapping"),
        ([["w3^11"]], "a mapping"),
    ],
)
def test_kernel_rejects(answer: Any, phrase: str) -> None:
    with pytest.raises(InvalidAnswer, match=phrase):
        parse_kernels(answer, SPACE, sources=2, targets=2, taps=3)
