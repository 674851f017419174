"""The rubric format: reading `rubrics/<assignment>.yaml` into typed, validated records."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from grader.errors import RubricError
from grader.rubric.policy import Policy, parse_policy


class Visibility(StrEnum):
    """What a student sees of a part's result before grades are released (after release: everything).

    full: status, points and feedback that says what was wrong without quoting the reference;
    score_only: status and points; hidden: only that the answer was received."""

    FULL = "full"
    SCORE_ONLY = "score_only"
    HIDDEN = "hidden"


@dataclass(frozen=True, slots=True)
class PartSpec:
    """One gradable part of an assignment."""

    id: str
    points: float
    checker: str
    title: str = ""
    answer: str | None = None
    """Dotted path of the answer in the sheet; None for parts graded from something else (checkpoints)."""
    params: Mapping[str, Any] = field(default_factory=dict)
    visibility: Visibility = Visibility.FULL


@dataclass(frozen=True, slots=True)
class Rubric:
    assignment: str
    title: str
    version: str
    parts: tuple[PartSpec, ...]
    sha256: str
    """Hash of the YAML text, so a result can be traced to the exact file that produced it."""
    release_at: datetime | None = None
    """When students start to see full feedback without an instructor releasing by hand (`release_at:`)."""
    gradebook_column: str = ""
    """The assignment's column title in the LMS gradebook export (`gradebook_column:`, e.g. "Homework 3 (12345)")."""
    policy: Policy = field(default_factory=Policy)
    """Due date, late penalty, which submission counts, attempt limits (`policy:`; grader/rubric/policy.py)."""

    @property
    def max_score(self) -> float:
        return sum(part.points for part in self.parts)

    def part(self, part_id: str) -> PartSpec:
        for part in self.parts:
            if part.id == part_id:
                return part
        raise KeyError(part_id)


def load_rubric(path: Path) -> Rubric:
    """Read and validate one rubric file.

    The file is read every time, so an edited rubric counts from the next request on; it is parsed once per content
    (every API request that shows a submission needs its rubric, and parsing the YAML took most of such a request)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RubricError(f"cannot read rubric {path}: {exc.strerror}") from exc
    return _parse_once(text, str(path))


@lru_cache(maxsize=64)
def _parse_once(text: str, source: str) -> Rubric:
    return parse_rubric(text, source=source)  # a Rubric is frozen: one object may serve every caller


def parse_rubric(text: str, *, source: str = "<rubric>") -> Rubric:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RubricError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise RubricError(f"{source}: expected a mapping at the top level")
    for key in ("assignment", "version", "parts"):
        if key not in data:
            raise RubricError(f"{source}: missing top-level key {key!r}")
    if not isinstance(data["parts"], list) or not data["parts"]:
        raise RubricError(f"{source}: 'parts' must be a non-empty list")
    parts = tuple(_parse_part(raw, source, index) for index, raw in enumerate(data["parts"]))
    ids = [part.id for part in parts]
    duplicated = sorted({part_id for part_id in ids if ids.count(part_id) > 1})
    if duplicated:
        raise RubricError(f"{source}: duplicate part ids {duplicated}")
    return Rubric(
        assignment=str(data["assignment"]),
        title=str(data.get("title", data["assignment"])),
        version=str(data["version"]),
        parts=parts,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        release_at=_moment(data.get("release_at"), f"{source}: release_at"),
        gradebook_column=str(data.get("gradebook_column") or data.get("title") or data["assignment"]),
        policy=parse_policy(data.get("policy"), source),
    )


def _moment(raw: Any, where: str) -> datetime | None:
    """An ISO 8601 date-time with its time zone (YAML may already have read it as one)."""
    if raw is None:
        return None
    try:
        moment = raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw))
    except ValueError as exc:
        raise RubricError(f"{where}: expected an ISO 8601 date-time like 2026-12-15T17:00:00-06:00") from exc
    if moment.tzinfo is None:
        raise RubricError(f"{where}: give the time zone, e.g. 2026-12-15T17:00:00-06:00")
    return moment


def _parse_part(raw: Any, source: str, index: int) -> PartSpec:
    where = f"{source}: parts[{index}]"
    if not isinstance(raw, dict):
        raise RubricError(f"{where}: expected a mapping")
    for key in ("id", "points", "checker"):
        if key not in raw:
            raise RubricError(f"{where}: missing {key!r}")
    points = raw["points"]
    if isinstance(points, bool) or not isinstance(points, int | float) or points < 0:
        raise RubricError(f"{where}: 'points' must be a non-negative number, got {points!r}")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise RubricError(f"{where}: 'params' must be a mapping")
    answer = raw.get("answer", raw["id"])
    try:
        visibility = Visibility(raw.get("visibility", Visibility.FULL))
    except ValueError as exc:
        allowed = ", ".join(v.value for v in Visibility)
        raise RubricError(f"{where}: 'visibility' must be one of {allowed}") from exc
    return PartSpec(
        id=str(raw["id"]),
        points=float(points),
        checker=str(raw["checker"]),
        title=str(raw.get("title", "")),
        answer=None if answer is None else str(answer),
        params=params,
        visibility=visibility,
    )


class RubricCatalog:
    """The rubrics in one folder, by assignment id."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, assignment: str) -> Path:
        path = self.folder / f"{assignment}.yaml"
        if not _is_safe_slug(assignment) or not path.is_file():
            raise RubricError(f"no rubric for assignment {assignment!r} in {self.folder}")
        return path

    def get(self, assignment: str) -> Rubric:
        return load_rubric(self.path(assignment))

    def all(self) -> list[Rubric]:
        return [load_rubric(path) for path in sorted(self.folder.glob("*.yaml"))]


def _is_safe_slug(value: str) -> bool:
    return bool(value) and len(value) <= 64 and all(c.isalnum() or c in "-_" for c in value)


def rubric_section(rubric: str | Path, key: str) -> Any:
    """One top-level section of a rubric file (a path) or YAML text, as written; None when the rubric has none.
    (The sandbox reads its own sections, `model_interface:` and `code_checks:`, this way and validates them itself.)"""
    is_path = isinstance(rubric, Path) or ("\n" not in rubric and rubric.endswith((".yaml", ".yml")))
    text = Path(rubric).read_text() if is_path else str(rubric)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RubricError(f"rubric is not valid YAML: {exc}") from exc
    return data.get(key) if isinstance(data, Mapping) else None
