"""Q4 checkers: A, B, the backward padding and kernels; the classic mistakes and spec changes."""

from __future__ import annotations

from typing import Any

import pytest

from grader.domain.results import PartStatus
from tests.answers.sheets import KEY_A, KEY_B, KEY_KERNELS, grade_one, restyled

A, B, PADDING, KERNELS = "q4.a_matrix", "q4.b_matrix", "q4.c_padding", "q4.c_kernels"


def swap_channels(entry: str) -> str:
    return entry if entry == "0" else entry[:-2] + entry[-1] + entry[-2]


def flip_taps(entry: str) -> str:
    return entry if entry == "0" else f"w{4 - int(entry[1])}{entry[2:]}"


def mapped(matrix: list[list[str]], *changes: Any) -> list[list[str]]:
    rows = [list(row) for row in matrix]
    for change in changes:
        rows = [[change(entry) for entry in row] for row in rows]
    return rows


def transposed(matrix: list[list[str]]) -> list[list[str]]:
    return [list(column) for column in zip(*matrix, strict=True)]


def test_key_a_is_correct() -> None:
    result = grade_one(A, KEY_A)
    assert result.status is PartStatus.CORRECT and "sympy" in result.feedback


def test_equivalent_expressions_are_accepted() -> None:
    answer = [list(row) for row in KEY_A]
    answer[0][0] = "2*w1^11 - w_1^{11}"
    answer[0][3] = "w1^11 - w1^11"
    answer[1][0] = "0.0"
    assert grade_one(A, answer).status is PartStatus.CORRECT


@pytest.mark.parametrize(
    "answer, fraction, phrase",
    [
        (transposed(KEY_A), 0.5, "Aᵀ instead of A"),
        (mapped(KEY_A, flip_taps), 0.5, "true convolution"),
        (mapped(KEY_A, swap_channels), 0.5, "channel indices are swapped"),
        (mapped(KEY_A, flip_taps, swap_channels), 0.25, "taps are reversed"),
        (transposed(mapped(KEY_A, swap_channels)), 0.25, "swapped"),
    ],
)
def test_classic_mistakes_in_a(answer: list[list[str]], fraction: float, phrase: str) -> None:
    result = grade_one(A, answer)
    assert result.status is PartStatus.PARTIAL and phrase in result.feedback
    assert result.points == pytest.approx(15 * fraction)


def test_wrong_entries_are_located() -> None:
    answer = [list(row) for row in KEY_A]
    answer[0][2], answer[3][7] = "w2^11", "0"
    result = grade_one(A, answer)
    assert result.status is PartStatus.INCORRECT
    assert "2 of 32 entries" in result.feedback and "(y11, x13)" in result.feedback and "(y22, x24)" in result.feedback
    assert result.evidence == {"wrong_entries": [[1, 3], [4, 8]]}


def test_a_wrong_shape_says_which_shape() -> None:
    result = grade_one(A, KEY_A[:3])
    assert result.status is PartStatus.INCORRECT and "4x8" in result.feedback and "3x8" in result.feedback


@pytest.mark.parametrize(
    "answer", ["A^T", "A^\\top", "A'", "A.T", "transpose(A)", "B = A^T", KEY_B, restyled(KEY_B, "latex")]
)
def test_b_as_relation_or_matrix(answer: Any) -> None:
    result = grade_one(B, answer)
    assert result.status is PartStatus.CORRECT and "Aᵀ" in result.feedback


@pytest.mark.parametrize(
    "answer, phrase",
    [
        ("A", "B cannot be A"),
        ("A^{-1}", "no inverse"),
        ("pinv(A)", "does not invert"),
        ("-A^T", "sign"),
        (KEY_A, "That is A itself"),
    ],
)
def test_wrong_b(answer: Any, phrase: str) -> None:
    result = grade_one(B, answer)
    assert result.status is PartStatus.INCORRECT and phrase in result.feedback


def test_b_consistent_with_the_students_own_wrong_a() -> None:
    own_a = [list(row) for row in KEY_A]
    own_a[0][0] = "w2^22"
    result = grade_one(B, transposed(own_a), others={A: own_a})
    assert result.status is PartStatus.PARTIAL and "transpose of your A" in result.feedback


def test_b_with_swapped_channels_is_named() -> None:
    result = grade_one(B, transposed(mapped(KEY_A, swap_channels)))
    assert result.status is PartStatus.PARTIAL and "swapped" in result.feedback


@pytest.mark.parametrize("answer", ["B", "A^T^T", "A times 2", 7])
def test_unparsable_b_is_invalid(answer: Any) -> None:
    result = grade_one(B, answer)
    assert result.status is PartStatus.INVALID and "relation" in result.feedback


@pytest.mark.parametrize("answer", [2, "2", [2, 2], "(2, 2)", "3 - 1", "3 - 1 = 2", "2 zeros on each side"])
def test_padding(answer: Any) -> None:
    result = grade_one(PADDING, answer)
    assert result.status is PartStatus.CORRECT and "length 6" in result.feedback


@pytest.mark.parametrize(
    "answer, status, phrase",
    [
        (4, PartStatus.PARTIAL, "total over both sides"),
        (1, PartStatus.INCORRECT, "gives length 2"),
        (0, PartStatus.INCORRECT, "no output at all"),
        ([2, 1], PartStatus.INCORRECT, "length 3"),
    ],
)
def test_wrong_padding(answer: Any, status: PartStatus, phrase: str) -> None:
    result = grade_one(PADDING, answer)
    assert result.status is status and phrase in result.feedback


def test_padding_with_disagreeing_working_is_graded_as_written_and_named() -> None:
    result = grade_one(PADDING, "3 - 1 = 1")
    assert result.status is PartStatus.INCORRECT
    assert "'3 - 1' equals 2 but you wrote = 1" in result.feedback
    assert "'3 - 1' equals 2 but you wrote = 1" in str(result.public_feedback)


def kernels_with(change: Any = None, *, swap: bool = False) -> dict[str, list[str]]:
    kernels = {}
    for key, taps in KEY_KERNELS.items():
        source = KEY_KERNELS[f"U{key[2]}{key[1]}"] if swap else taps
        kernels[key] = [change(t) for t in source] if change else list(source)
    return kernels


def test_key_kernels_with_the_students_padding() -> None:
    result = grade_one(KERNELS, KEY_KERNELS, others={PADDING: 2})
    assert result.status is PartStatus.CORRECT and "your 2 zeros per side" in result.feedback


def test_key_kernels_with_a_wrong_padding_still_score() -> None:
    result = grade_one(KERNELS, KEY_KERNELS, others={PADDING: 1})
    assert result.status is PartStatus.CORRECT and "scored in q4.c_padding" in result.feedback


@pytest.mark.parametrize(
    "kernels, fraction, phrase",
    [
        (kernels_with(flip_taps), 0.5, "not flipped"),
        (kernels_with(swap=True), 0.5, "not swapped"),
        (kernels_with(flip_taps, swap=True), 0.25, "not flipped"),
    ],
)
def test_classic_kernel_mistakes(kernels: dict[str, list[str]], fraction: float, phrase: str) -> None:
    result = grade_one(KERNELS, kernels)
    assert result.status is PartStatus.PARTIAL and phrase in result.feedback
    assert result.points == pytest.approx(20 * fraction)


def test_forward_kernels_unchanged_are_both_mistakes() -> None:
    forward = {f"U{i}{j}": [f"w{k}^{i}{j}" for k in (1, 2, 3)] for i in (1, 2) for j in (1, 2)}
    result = grade_one(KERNELS, forward)
    assert "not flipped" in result.feedback and "not swapped" in result.feedback


def test_a_wrong_kernel_is_named() -> None:
    kernels = kernels_with()
    kernels["U12"] = ["w3^21", "w2^21", "0"]
    result = grade_one(KERNELS, kernels)
    assert result.status is PartStatus.INCORRECT and "wrong: U12" in result.feedback


def test_changing_the_conv_spec_changes_the_reference() -> None:
    longer = {"length": 5}
    assert "6x10" in grade_one(A, KEY_A, params=longer).feedback
    assert grade_one(PADDING, 3, params={"kernel_size": 2}).status is PartStatus.INCORRECT
    assert grade_one(PADDING, 1, params={"kernel_size": 2}).status is PartStatus.CORRECT


def test_non_square_channels_have_no_swap_variant() -> None:
    params = {"in_channels": 1, "out_channels": 2}
    a = [
        ["w1^11", "w2^11", "w3^11", "0"],
        ["0", "w1^11", "w2^11", "w3^11"],
        ["w1^12", "w2^12", "w3^12", "0"],
        ["0", "w1^12", "w2^12", "w3^12"],
    ]
    assert grade_one(A, a, params=params).status is PartStatus.CORRECT
    kernels = {"U11": ["w3^11", "w2^11", "w1^11"], "U21": ["w3^12", "w2^12", "w1^12"]}
    assert grade_one(KERNELS, kernels, params=params).status is PartStatus.CORRECT
