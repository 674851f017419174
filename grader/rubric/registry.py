"""Checkers by name: a rubric names a checker, the registry finds the function.

A checker receives a `CheckContext` and returns a `CheckOutcome`; it raises `InvalidAnswer` when the answer
is present but unparsable. Checkers live in `grader/checks/`, which registers them on import; the rubric engine
imports that package, so this module depends on no checker (no import circle).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from grader.domain.results import CheckOutcome
from grader.errors import RubricError
from grader.rubric.model import PartSpec, Rubric


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""The sheet has no answer at the part's path."""


@dataclass(frozen=True, slots=True)
class CheckContext:
    part: PartSpec
    answer: Any
    """The sheet's value at `part.answer`, or MISSING."""
    sheet: Mapping[str, Any]
    rubric: Rubric
    evaluations: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Checkpoint evaluation results by label ("v1", "v2"), as produced by grader.evaluation."""

    @property
    def params(self) -> Mapping[str, Any]:
        return self.part.params

    def sibling(self, name: str) -> Any:
        """The sheet's value next to this part's answer (e.g. `standard_params_includes`), or MISSING."""
        if self.part.answer is None:
            return MISSING
        parent = self.part.answer.rsplit(".", 1)[0] if "." in self.part.answer else ""
        return lookup(self.sheet, f"{parent}.{name}" if parent else name)


Checker = Callable[[CheckContext], CheckOutcome]
_CHECKERS: dict[str, Checker] = {}


def register_checker(name: str) -> Callable[[Checker], Checker]:
    def decorate(function: Checker) -> Checker:
        if name in _CHECKERS and _CHECKERS[name] is not function:
            raise RubricError(f"checker {name!r} registered twice")
        _CHECKERS[name] = function
        return function

    return decorate


def get_checker(name: str) -> Checker:
    """A registered checker (the engine loads the built-in ones, grader/checks, before asking)."""
    try:
        return _CHECKERS[name]
    except KeyError:
        known = ", ".join(sorted(_CHECKERS))
        raise RubricError(f"unknown checker {name!r}; known checkers: {known}") from None


def lookup(sheet: Mapping[str, Any], dotted: str) -> Any:
    node: Any = sheet
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return MISSING
        node = node[key]
    return node
