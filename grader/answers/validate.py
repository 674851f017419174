"""Format-only validation of an answer sheet (`grader check`): every present answer must parse; nothing is scored.

Uses the same parsers as the checkers (grader.answers.formats) and imports neither torch nor sympy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grader.answers.formats import Parse, get_format
from grader.answers.sheet import check_assignment
from grader.errors import AnswerSheetError, InvalidAnswer
from grader.rubric.model import PartSpec, Rubric
from grader.rubric.registry import MISSING, lookup


def validate_sheet(sheet: Mapping[str, Any], rubric: Rubric) -> list[tuple[str, str]]:
    """(part id or sheet field, message) for each answer that is present but in no accepted notation."""
    problems: list[tuple[str, str]] = []
    try:
        check_assignment(sheet, rubric.assignment)
    except AnswerSheetError as exc:
        problems.append(("assignment", exc.message))
    for part in rubric.parts:
        problems.extend(_part_problems(part, sheet))
    return problems


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
