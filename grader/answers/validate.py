"""Validation of an answer sheet without scoring: the strict checks a submission must pass (no unknown key, usable
declarations), and `grader check`'s format check of every present answer.

Uses the same parsers as the checkers (grader.answers.formats) and imports neither torch nor sympy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grader.answers.fields import checkpoint_labels, unknown_keys
from grader.answers.formats import Parse, get_format
from grader.answers.sheet import check_assignment
from grader.errors import AnswerSheetError, InvalidAnswer
from grader.evaluation.preprocessing import preprocessing_path, preprocessing_problem
from grader.rubric.model import PartSpec, Rubric
from grader.rubric.registry import MISSING, lookup


def validate_sheet(sheet: Mapping[str, Any], rubric: Rubric) -> list[tuple[str, str]]:
    """(part id or sheet field, message) for each problem `grader check` reports: the sheet's structural
    problems (see `sheet_problems`), then each answer that is present but in no accepted notation."""
    problems = sheet_problems(sheet, rubric)
    for part in rubric.parts:
        problems.extend(_part_problems(part, sheet))
    return problems


def sheet_problems(sheet: Mapping[str, Any], rubric: Rubric) -> list[tuple[str, str]]:
    """What makes a sheet unacceptable at submission (422) rather than a part scored `invalid`: another
    assignment, a key the sheet may not hold (with the nearest valid one), a declaration the grader cannot use
    (e.g. an unknown preprocessing kind, which grading would replace by the default, lowering the accuracy)."""
    problems: list[tuple[str, str]] = []
    try:
        check_assignment(sheet, rubric.assignment)
    except AnswerSheetError as exc:
        problems.append(("assignment", exc.message))
    problems += unknown_keys(sheet, rubric)
    for label in checkpoint_labels(rubric):
        problem = preprocessing_problem(sheet, label)
        if problem is not None:
            problems.append((preprocessing_path(label), problem))
    return problems


def require_valid_sheet(sheet: Mapping[str, Any], rubric: Rubric) -> None:
    """AnswerSheetError (422, naming the field) for the first of `sheet_problems`."""
    problems = sheet_problems(sheet, rubric)
    if problems:
        field, message = problems[0]
        more = f" ({len(problems) - 1} more problem(s); `grader check` lists them all)" if len(problems) > 1 else ""
        raise AnswerSheetError(f"{message}{more}", field=field)


def _part_problems(part: PartSpec, sheet: Mapping[str, Any]) -> list[tuple[str, str]]:
    answer_format = get_format(part.checker)
    if part.answer is None or answer_format is None:
        return []  # graded from a checkpoint, or a written answer: any text is fine
    problems = _problem(part.id, lookup(sheet, part.answer), answer_format.parse, part.params)
    for extra in answer_format.extras:
        field = part.answer + extra.suffix
        problems += _problem(field, lookup(sheet, field), extra.parse, part.params)
    return problems


def _problem(where: str, answer: Any, parse: Parse, params: Mapping[str, Any]) -> list[tuple[str, str]]:
    if answer is MISSING or answer is None or (isinstance(answer, str) and not answer.strip()):
        return []
    try:
        parse(answer, params)
    except InvalidAnswer as exc:
        return [(where, exc.message)]
    return []
