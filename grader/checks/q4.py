"""Q4 checkers: the 1-D convolution as a matrix (A, B = Aᵀ) and its backward pass as a convolution of dL/dY.

Every answer is compared with torch references twice: entry by entry with sympy (weights as symbols) and
numerically at random float64 weights. Classic mistakes are recognised by matching the same references
with the mistake applied; their credit comes from the rubric's `partial` table (product over mistakes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import sympy

from grader.answers.expressions import Expr, Weight
from grader.answers.feedback import partial_credit, scored, tolerances, with_note
from grader.answers.formats import get_format
from grader.answers.matrices import Matrix, Relation
from grader.answers.numbers import Padding, parse_padding
from grader.answers.references.conv1d import (
    Variant,
    apply_backward,
    backward_convolution,
    backward_is_transpose,
    backward_variants,
    forward_variants,
    kernel_array,
    probe,
    symbolic_backward,
    symbolic_forward,
)
from grader.answers.specs import Conv1dSpec
from grader.answers.symbolic import entries_equivalent, symbol, to_sympy
from grader.domain.results import CheckOutcome
from grader.errors import InvalidAnswer
from grader.rubric.registry import MISSING, CheckContext, lookup, register_checker

_A, _B = get_format("conv1d_matrix"), get_format("conv1d_backward_matrix")
_PADDING, _KERNELS = get_format("conv1d_backward_padding"), get_format("conv1d_backward_kernels")
assert _A is not None and _B is not None and _PADDING is not None and _KERNELS is not None

_MISTAKES = {
    "transposed": "you gave Aᵀ instead of A: A maps X~ to Y~, so it has one row per output y_{j,t}",
    "untransposed": "that is A itself, not B: B maps dL/dY~ to dL/dX~, so it has one row per input x_{i,s}",
    "flipped_taps": (
        "the taps are reversed (ω_3 where ω_1 belongs): that is a true convolution, but conv layers compute a "
        "cross-correlation, y_{j,t} = Σ_i Σ_k ω_k^{ij} x_{i,t+k-1}"
    ),
    "swapped_channels": (
        "the channel indices are swapped (ω^{ji} where ω^{ij} belongs): ω_k^{ij} scans input i into output j"
    ),
    "unflipped": (
        "the kernels are not flipped: the backward pass correlates dL/dY with the forward taps in reverse order"
    ),
    "unswapped": (
        "the channels are not swapped: U^{ij} scans channel i of dL/dY and feeds channel j of dL/dX, "
        "so it uses the forward kernel that connects input j to output i"
    ),
}
_CHECKED = "entry by entry with sympy and at random weights"


def _spec(context: CheckContext) -> Conv1dSpec:
    return Conv1dSpec.from_params(context.params)


@register_checker("conv1d_matrix")
def conv1d_matrix(context: CheckContext) -> CheckOutcome:
    """A in Y~ = A X~, against the Jacobian of F.conv1d."""
    spec = _spec(context)
    matrix: Matrix = _A.parse(context.answer, context.params)
    variant = _match(matrix, forward_variants(spec), spec, context.params)
    if variant is not None:
        return _variant_outcome(variant, context.params, f"Correct: A matches the Jacobian of conv1d, {_CHECKED}.")
    return _wrong_entries(matrix, symbolic_forward(spec), spec, name="A", backward=False)


@register_checker("conv1d_backward_matrix")
def conv1d_backward_matrix(context: CheckContext) -> CheckOutcome:
    """B in dL/dX~ = B dL/dY~, as a relation to A or as the matrix (against autograd's backward Jacobian)."""
    spec = _spec(context)
    answer: Relation | Matrix = _B.parse(context.answer, context.params)
    if isinstance(answer, Relation):
        return _relation_outcome(answer, spec)
    variant = _match(answer, backward_variants(spec), spec, context.params)
    if variant is not None:
        return _variant_outcome(
            variant, context.params, f"Correct: B = Aᵀ, the Jacobian of autograd's backward, {_CHECKED}."
        )
    if _follows_own_forward(answer, context, spec):
        feedback = (
            "B is the transpose of your A, so the relation B = Aᵀ is right, but your A is wrong (see q4.a_matrix)."
        )
        return scored(
            float(context.params.get("follows_own_a", 0.0)),
            feedback,
            {"matched": "transpose of own A"},
            public=feedback,
        )
    return _wrong_entries(answer, symbolic_backward(spec), spec, name="B", backward=True)


def _relation_outcome(relation: Relation, spec: Conv1dSpec) -> CheckOutcome:
    evidence = {"answer": relation.text, "matched": relation.name}
    if relation.name in ("transpose", "conjugate_transpose") and backward_is_transpose(spec):
        note = (
            " (the conjugate transpose, which is Aᵀ for real weights)" if relation.name == "conjugate_transpose" else ""
        )
        feedback = f"Correct: B = Aᵀ{note}; autograd's backward Jacobian equals the transpose of A."
        return scored(1.0, feedback, evidence, public=feedback)
    rows, cols = spec.forward_shape
    explanations = {
        "same": f"B cannot be A: A is {rows}x{cols} while B maps dL/dY~ ({rows} entries) to dL/dX~ ({cols})",
        "inverse": f"A is {rows}x{cols} and has no inverse; backpropagation multiplies by the Jacobian's transpose",
        "pseudo_inverse": "backpropagation does not invert A; it multiplies dL/dY~ by the Jacobian's transpose",
        "negative_transpose": "the sign is wrong: the chain rule adds no minus sign",
    }
    feedback = f"{relation.text!s}: {explanations.get(relation.name, 'not the relation between A and B')}."
    return scored(0.0, feedback, evidence, public=f"{relation.text!s} is not the relation between A and B.")


def _follows_own_forward(answer: Matrix, context: CheckContext, spec: Conv1dSpec) -> bool:
    path = context.params.get("forward_answer")
    raw = lookup(context.sheet, str(path)) if path else MISSING
    if raw is MISSING or raw is None:
        return False
    try:
        forward: Matrix = _A.parse(raw, context.params)
    except InvalidAnswer:
        return False
    own = sympy.ImmutableMatrix([[to_sympy(entry) for entry in row] for row in forward]).T
    return _match(answer, (_as_variant(own, spec),), spec, context.params) is not None


def _as_variant(matrix: sympy.ImmutableMatrix, spec: Conv1dSpec) -> Variant:
    values = {symbol(weight): value for weight, value in probe(spec).values.items()}
    return Variant(frozenset({"own"}), matrix, np.array(matrix.xreplace(values).tolist(), dtype=float))


@register_checker("conv1d_backward_padding")
def conv1d_backward_padding(context: CheckContext) -> CheckOutcome:
    """Zeros per side of dL/dY so that a convolution with the backward kernels yields dL/dX's length."""
    padding: Padding = _PADDING.parse(context.answer, context.params)
    return with_note(_padding_outcome(context, padding.left, padding.right), padding.note)


def _padding_outcome(context: CheckContext, left: int, right: int) -> CheckOutcome:
    spec = _spec(context)
    reference = backward_convolution(spec)
    evidence: dict[str, Any] = {"accepted": reference.padding, "answer": [left, right]}
    if left == right == reference.padding:
        feedback = f"Correct: {left} zeros on each side; {_padding_effect(spec, reference.padding)}."
        return scored(1.0, feedback, evidence, public=feedback)
    produced = apply_backward(probe(spec).grad_output, reference.numeric, (left, right))
    length = "no output at all" if produced is None else f"length {produced.shape[-1]}"
    effect = (
        f"with {left} and {right} zeros the backward convolution gives {length}, but dL/dX has length {spec.length}"
    )
    if left == right == 2 * reference.padding and reference.padding > 0:
        feedback = f"{left} looks like the total over both sides; the question asks per side ({effect})."
        return scored(partial_credit(context.params, ["total_of_both_sides"]), feedback, evidence)
    public = f"With {left} and {right} zeros the backward convolution does not reproduce dL/dX."
    return scored(0.0, f"{effect.capitalize()}.", evidence, public=public)


def _padding_effect(spec: Conv1dSpec, padding: int) -> str:
    padded = spec.output_length + 2 * padding
    return (
        f"the padded dL/dY has length {padded}, and a {spec.kernel_size}-tap correlation of it reproduces "
        f"dL/dX (length {spec.length})"
    )


@register_checker("conv1d_backward_kernels")
def conv1d_backward_kernels(context: CheckContext) -> CheckOutcome:
    """Kernels U^{ij}: conv1d of padded dL/dY with them must reproduce autograd's dL/dX."""
    spec = _spec(context)
    kernels: dict[tuple[int, int], tuple[Expr, ...]] = _KERNELS.parse(context.answer, context.params)
    reference = backward_convolution(spec)
    for mistakes in _kernel_mistakes(spec):
        candidate = _undo(kernels, mistakes)
        if _reproduces(candidate, spec, context.params) and _kernels_equivalent(candidate, reference.kernels):
            evidence = {"matched": sorted(mistakes) or "reference", "checks": ["conv1d vs autograd", "sympy"]}
            praise = f"Correct: {_padding_note(context, reference.padding)}"
            return _mistakes_outcome(mistakes, context.params, praise, evidence)
    return _wrong_kernels(kernels, reference.kernels)


def _kernel_mistakes(spec: Conv1dSpec) -> list[frozenset[str]]:
    square = spec.in_channels == spec.out_channels
    sets = [frozenset(), frozenset({"unflipped"})]
    return sets + ([frozenset({"unswapped"}), frozenset({"unflipped", "unswapped"})] if square else [])


def _undo(
    kernels: Mapping[tuple[int, int], tuple[Expr, ...]], mistakes: frozenset[str]
) -> dict[tuple[int, int], tuple[Expr, ...]]:
    """The kernels with the named mistakes reversed (flip the taps back, swap the channel pair back)."""
    undone = {}
    for i, j in kernels:
        taps = kernels[(j, i)] if "unswapped" in mistakes else kernels[(i, j)]
        undone[(i, j)] = tuple(reversed(taps)) if "unflipped" in mistakes else taps
    return undone


def _reproduces(
    kernels: Mapping[tuple[int, int], tuple[Expr, ...]], spec: Conv1dSpec, params: Mapping[str, Any]
) -> bool:
    check = probe(spec)
    padding = backward_convolution(spec).padding
    array = kernel_array(spec, {pair: [e.evaluate(check.values) for e in taps] for pair, taps in kernels.items()})
    result = apply_backward(check.grad_output, array, (padding, padding))
    rtol, atol = tolerances(params)
    return (
        result is not None
        and result.shape == check.grad_input.shape
        and bool(np.allclose(result, check.grad_input, rtol=rtol, atol=atol))
    )


def _kernels_equivalent(
    kernels: Mapping[tuple[int, int], tuple[Expr, ...]], reference: Mapping[tuple[int, int], tuple[sympy.Expr, ...]]
) -> bool:
    pairs = sorted(reference)
    return all(entries_equivalent([e for p in pairs for e in kernels[p]], [e for p in pairs for e in reference[p]]))


def _padding_note(context: CheckContext, padding: int) -> str:
    """Whether the sheet's own padding (params.padding_answer) is the one the kernels were checked with."""
    path = context.params.get("padding_answer")
    raw = lookup(context.sheet, str(path)) if path else MISSING
    try:
        declared = None if raw is MISSING or raw is None else parse_padding(raw)
    except InvalidAnswer:
        declared = None
    if declared == (padding, padding):
        return (
            f"conv1d of dL/dY padded with your {padding} zeros per side and your kernels reproduces autograd's dL/dX."
        )
    if declared is None:
        return f"with {padding} zeros per side, conv1d of dL/dY with your kernels reproduces autograd's dL/dX."
    return (
        f"your kernels are right (with {padding} zeros per side conv1d reproduces autograd's dL/dX); "
        f"your padding {declared[0]} is scored in q4.c_padding."
    )


def _wrong_kernels(
    kernels: Mapping[tuple[int, int], tuple[Expr, ...]], reference: Mapping[tuple[int, int], tuple[sympy.Expr, ...]]
) -> CheckOutcome:
    wrong = [
        f"U{i}{j}" for (i, j) in sorted(reference) if not all(entries_equivalent(kernels[(i, j)], reference[(i, j)]))
    ]
    feedback = (
        f"conv1d of the padded dL/dY with your kernels does not reproduce autograd's dL/dX; "
        f"wrong: {', '.join(wrong)}. U^{{ij}} scans channel i of dL/dY and feeds channel j of dL/dX."
    )
    return scored(0.0, feedback, {"wrong_kernels": wrong}, public=feedback)


def _match(matrix: Matrix, variants: Sequence[Variant], spec: Conv1dSpec, params: Mapping[str, Any]) -> Variant | None:
    """The first variant equal to the answer at the random probe and then symbolically, entry by entry."""
    numeric = _numeric(matrix, probe(spec).values)
    rtol, atol = tolerances(params)
    for variant in variants:
        if variant.numeric.shape != numeric.shape or not np.allclose(numeric, variant.numeric, rtol=rtol, atol=atol):
            continue
        if all(entries_equivalent([e for row in matrix for e in row], list(variant.symbolic))):
            return variant
    return None


def _numeric(matrix: Matrix, values: Mapping[Weight, float]) -> np.ndarray:
    return np.array([[entry.evaluate(values) for entry in row] for row in matrix], dtype=float)


def _variant_outcome(variant: Variant, params: Mapping[str, Any], praise: str) -> CheckOutcome:
    evidence = {"matched": sorted(variant.mistakes) or "reference", "checks": ["sympy", "numeric probe"]}
    return _mistakes_outcome(variant.mistakes, params, praise, evidence)


def _mistakes_outcome(
    mistakes: frozenset[str], params: Mapping[str, Any], praise: str, evidence: dict[str, Any]
) -> CheckOutcome:
    """Full credit without mistakes; else each mistake explained, credit from the rubric's partial table."""
    if not mistakes:
        return scored(1.0, praise, evidence, public=praise)
    # naming the mistake says what was wrong; it quotes nothing of the reference
    text = "; ".join(_MISTAKES[m] for m in sorted(mistakes))
    feedback = f"{text[0].upper()}{text[1:]}."
    return scored(partial_credit(params, mistakes), feedback, evidence, public=feedback)


def _wrong_entries(
    matrix: Matrix, reference: sympy.ImmutableMatrix, spec: Conv1dSpec, *, name: str, backward: bool
) -> CheckOutcome:
    rows, cols = reference.shape
    if (len(matrix), len(matrix[0])) != (rows, cols):
        what = (
            "one row per x_{i,s}, one column per y_{j,t}" if backward else "one row per y_{j,t}, one column per x_{i,s}"
        )
        feedback = f"{name} must be {rows}x{cols} ({what}); yours is {len(matrix)}x{len(matrix[0])}."
        return scored(0.0, feedback, public=feedback)
    same = entries_equivalent([e for row in matrix for e in row], list(reference))
    wrong = [divmod(index, cols) for index, ok in enumerate(same) if not ok]
    row_label, col_label = (_x_label, _y_label) if backward else (_y_label, _x_label)
    shown = ", ".join(f"({row_label(spec, r)}, {col_label(spec, c)})" for r, c in wrong[:6])
    more = f" and {len(wrong) - 6} more" if len(wrong) > 6 else ""
    feedback = f"{len(wrong)} of {rows * cols} entries of {name} are wrong (checked with sympy): at {shown}{more}."
    return scored(0.0, feedback, {"wrong_entries": [[r + 1, c + 1] for r, c in wrong]}, public=feedback)


def _y_label(spec: Conv1dSpec, index: int) -> str:
    return f"y{index // spec.output_length + 1}{index % spec.output_length + 1}"


def _x_label(spec: Conv1dSpec, index: int) -> str:
    return f"x{index // spec.length + 1}{index % spec.length + 1}"
